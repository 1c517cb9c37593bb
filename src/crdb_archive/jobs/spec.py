"""Archive job specs: one TOML file per job, validated completely before anything runs.

Every mistake is collected, each led by its key path (``destination.object_lock.days: must be
> 0``), so a user fixes a spec in one pass instead of one error per run. The keys and their
meaning are documented in ``archive-specs/README.md``.

Paths and URIs may name environment variables as ``${NAME}`` or ``${NAME:-default}``, so one
spec serves every host and a Kubernetes CronJob can fill them in; a relative local path is
taken from the spec file's directory, never from the working directory cron happens to use.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdb_archive.backup.keys import EncryptionKeys
from crdb_archive.backup.layout import normalize_subdir
from crdb_archive.errors import BadInput, CrdbArchiveError, InvalidJobSpec
from crdb_archive.jobs.spec_binaries import read_mirror, read_platforms, read_release
from crdb_archive.jobs.spec_model import (
    DEFAULT_BINARY_REMOVAL_DAYS,
    LOCK_MODES,
    REQUIRED_SECTIONS,
    SECTIONS,
    ExportSpec,
    IncrementalPolicy,
    JobSpec,
    ObjectLock,
    Retention,
)
from crdb_archive.jobs.spec_places import read_endpoint_url, read_location
from crdb_archive.jobs.spec_retention import read_object_lock, read_retention
from crdb_archive.jobs.spec_source import read_encryption_keys, read_export, read_incrementals
from crdb_archive.jobs.spec_table import SpecTable, kind_of, unknown
from crdb_archive.jobs.spec_trust import audit_spec, signing_key
from crdb_archive.sources import KIND_CHOICES, KindChoice
from crdb_archive.storage.places import is_remote, overlap_problem, storage_classes
from crdb_archive.storage.uri import parse_location, redact

__all__ = [
    "DEFAULT_BINARY_REMOVAL_DAYS", "LOCK_MODES", "SECTIONS", "ExportSpec", "IncrementalPolicy",
    "JobSpec", "ObjectLock", "Retention", "load_spec", "validate_spec",
]

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# Keys of [source] that only backups have.
_BACKUP_SOURCE_KEYS = ("backups", "incrementals", "with_incrementals",
                       "encryption_passphrase_file", "kms")


@dataclass(frozen=True)
class _Source:
    """What [source] says, as far as it could be read."""

    uri: str | None
    endpoint_url: str | None
    kind: KindChoice
    backups: str
    incrementals: IncrementalPolicy
    keys: EncryptionKeys
    export: ExportSpec | None


@dataclass(frozen=True)
class _Destination:
    """What [destination] says, as far as it could be read."""

    uri: str | None
    endpoint_url: str | None
    format: str | None
    storage_class: str | None
    object_lock: ObjectLock | None


def load_spec(path: Path, *, now: dt.datetime | None = None) -> JobSpec:
    """Read and validate the job spec at ``path``.

    Raises InvalidJobSpec (exit 2) listing every mistake, BadInput when the file cannot be read.
    """
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        raise InvalidJobSpec(str(path), [f"not valid TOML: {error}"]) from None
    except OSError as error:
        raise BadInput(f"cannot read job spec {path}: {error.strerror or error}") from None
    return validate_spec(data, path, now=now or dt.datetime.now(dt.UTC))


def validate_spec(data: dict[str, Any], path: Path, *, now: dt.datetime) -> JobSpec:
    """Validate parsed TOML; relative paths are taken from ``path``'s directory.

    Raises InvalidJobSpec listing every mistake.
    """
    problems = _section_problems(data)
    base = path.parent.absolute()
    tables = {name: SpecTable(data.get(name), name, SECTIONS[name], problems)
              for name in SECTIONS if "." not in name}
    name = _job_name(tables["job"])
    source = _source(tables["source"], base)
    if source.kind == "export":
        _refuse_backup_keys(data, tables["source"], problems)
    version = tables["version"]
    release = read_release(version)
    force = version.boolean("force", default=False)
    if force and version.values.get("release", "auto") == "auto":
        version.problem("force", "applies only with a pinned release, not with auto")
    binaries = tables["binaries"]
    platforms = read_platforms(binaries, release)
    mirror = read_mirror(binaries, base)
    cache = binaries.string("cache_dir", expand=True)
    destination = _destination(tables["destination"], base, now, source)
    sign_key = signing_key(tables["destination"], base)
    retention = read_retention(tables["retention"],
                               present=isinstance(data.get("retention"), dict))
    audit = audit_spec(tables["audit"], base, present=isinstance(data.get("audit"), dict))
    removal_days = tables["warnings"].integer(
        "binary_removal_days", minimum=0, default=DEFAULT_BINARY_REMOVAL_DAYS)

    # Every missing value has been reported as a problem; the None checks are for mypy.
    if problems or name is None or source.uri is None or destination.uri is None:
        raise InvalidJobSpec(str(path), problems)
    return JobSpec(
        path=path,
        name=name,
        source=source.uri,
        source_display=redact(source.uri),
        source_endpoint_url=source.endpoint_url,
        kind=source.kind,
        backups=source.backups,
        incrementals=source.incrementals,
        release=release,
        force_version=force,
        platforms=platforms,
        mirror=mirror,
        cache_dir=base / cache if cache is not None else None,
        destination=destination.uri,
        destination_display=redact(destination.uri),
        destination_endpoint_url=destination.endpoint_url,
        format="tar" if destination.format == "tar" else "dir",
        storage_class=destination.storage_class,
        object_lock=destination.object_lock,
        retention=retention,
        binary_removal_days=removal_days if removal_days is not None else 0,
        keys=source.keys,
        export=source.export,
        sign_key=sign_key,
        audit=audit,
    )


def _section_problems(data: dict[str, Any]) -> list[str]:
    """Unknown sections, sections that are not tables, and required ones missing."""
    problems: list[str] = []
    for key, value in data.items():
        if key not in SECTIONS or "." in key:
            problems.append(unknown(key, [s for s in SECTIONS if "." not in s], "section"))
        elif not isinstance(value, dict):
            problems.append(f"{key}: expected a table [{key}], got {kind_of(value)}")
    problems += [f"{section}: missing section [{section}]" for section in REQUIRED_SECTIONS
                 if section not in data]
    return problems


def _job_name(job: SpecTable) -> str | None:
    name = job.string("name", required=True)
    if name is not None and not _JOB_NAME.match(name):
        job.problem("name", "must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                    "letter or digit")
    return name


def _source(source: SpecTable, base: Path) -> _Source:
    uri = read_location(source, "uri", base)
    endpoint = read_endpoint_url(source, uri)
    backups = _backups(source)
    incrementals = read_incrementals(source)
    keys = read_encryption_keys(source, base)
    kind_text = source.choice("kind", KIND_CHOICES, default="auto") or "auto"
    kind: KindChoice = next((k for k in KIND_CHOICES if k == kind_text), "auto")
    return _Source(uri, endpoint, kind, backups, incrementals, keys,
                   read_export(source, kind, base))


def _backups(source: SpecTable) -> str:
    """source.backups: latest, all, or a full backup's subdirectory (normalized)."""
    backups = source.string("backups", default="latest") or "latest"
    if backups in ("latest", "all"):
        return backups
    try:
        return normalize_subdir(backups)
    except CrdbArchiveError:
        source.problem("backups", f"{backups!r} is neither latest, all, nor a full "
                       "backup's subdirectory like 2024/12/15-000000.00")
        return backups


def _refuse_backup_keys(data: dict[str, Any], source: SpecTable, problems: list[str]) -> None:
    """An export source has no release, binaries or backup keys: giving them is a mistake."""
    for section in ("version", "binaries"):
        if isinstance(data.get(section), dict) and data[section]:
            problems.append(f"{section}: applies to backups, not to source.kind = "
                            "\"export\"")
    for key in _BACKUP_SOURCE_KEYS:
        if key in source.values:
            source.problem(key, "applies to backups, not to source.kind = \"export\"")


def _destination(destination: SpecTable, base: Path, now: dt.datetime,
                 source: _Source) -> _Destination:
    uri = read_location(destination, "uri", base)
    endpoint = read_endpoint_url(destination, uri)
    remote = uri is not None and is_remote(parse_location(uri))
    fmt = destination.choice("format", ("dir", "tar"), default="tar" if remote else "dir")
    classes = storage_classes(parse_location(uri)) if uri is not None else ()
    storage_class = (destination.choice("storage_class", classes, default=None) if classes
                     else destination.string("storage_class"))
    object_lock = read_object_lock(destination, now)
    if uri is not None:
        _check_storage_options(destination, remote, storage_class, object_lock)
    if source.uri is not None and uri is not None:
        apart = overlap_problem(source.uri, uri, source_endpoint_url=source.endpoint_url,
                                dest_endpoint_url=endpoint, refuse_source_inside=True)
        if apart is not None:
            destination.problem("uri", apart)
    return _Destination(uri, endpoint, fmt, storage_class, object_lock)


def _check_storage_options(destination: SpecTable, remote: bool,
                           storage_class: str | None, object_lock: ObjectLock | None) -> None:
    """Storage class and Object Lock apply to object storage only (a class given there was
    read as one of the destination cloud's own)."""
    if remote:
        return
    for key, value in (("storage_class", storage_class), ("object_lock", object_lock)):
        if value is not None:
            destination.problem(key, "applies only to destinations in object storage "
                                "(s3://, gs://, azure-blob://)")

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
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from crdb_archive.backup.keys import NO_KEYS, PASSPHRASE_ENV, EncryptionKeys, load_keys
from crdb_archive.backup.layout import normalize_subdir
from crdb_archive.binaries import PLATFORMS, resolve_mirror
from crdb_archive.bundle.writer import BundleFormat
from crdb_archive.errors import BadInput, CrdbArchiveError, InvalidJobSpec
from crdb_archive.export.hlc import Hlc
from crdb_archive.jobs.spec_table import SpecTable, kind_of, unknown
from crdb_archive.jobs.spec_trust import AUDIT_KEYS, AuditSpec, audit_spec, signing_key
from crdb_archive.sources import KIND_CHOICES, KindChoice
from crdb_archive.storage.base import WriteOptions
from crdb_archive.storage.kms import KmsUri
from crdb_archive.storage.places import (
    check_options,
    is_remote,
    location_problem,
    overlap_problem,
    storage_classes,
)
from crdb_archive.storage.uri import parse_location, redact
from crdb_archive.versions import release_index

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import SigningKey

IncrementalPolicy = Literal["none", "growing", "closed"]

DEFAULT_BINARY_REMOVAL_DAYS = 180

LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# Every section and the keys it may hold; anything else is a mistake worth naming.
SECTIONS: dict[str, tuple[str, ...]] = {
    "job": ("name",),
    "source": ("uri", "endpoint_url", "kind", "backups", "incrementals", "with_incrementals",
               "encryption_passphrase_file", "kms", "schema", "as_of", "allow_gaps", "table"),
    "version": ("release", "force"),
    "binaries": ("platforms", "mirror", "cache_dir"),
    "destination": ("uri", "endpoint_url", "format", "storage_class", "object_lock",
                    "sign_key"),
    "destination.object_lock": ("mode", "days", "retain_until"),
    "retention": ("keep_last", "keep_days", "keep_monthly", "keep_yearly"),
    "warnings": ("binary_removal_days",),
    "audit": AUDIT_KEYS,
}
_REQUIREDSECTIONS = ("job", "source", "destination")


@dataclass(frozen=True)
class ObjectLock:
    """S3 Object Lock retention for every object of a bundle."""

    mode: Literal["COMPLIANCE", "GOVERNANCE"]
    days: int | None
    retain_until: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "days": self.days,
            "retain_until": self.retain_until.isoformat() if self.retain_until else None,
        }


@dataclass(frozen=True)
class Retention:
    """Which bundles of the job to keep; a rule left out does not keep anything."""

    keep_last: int | None = None
    keep_days: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {
            "keep_last": self.keep_last,
            "keep_days": self.keep_days,
            "keep_monthly": self.keep_monthly,
            "keep_yearly": self.keep_yearly,
        }


@dataclass(frozen=True)
class JobSpec:
    """A validated job. ``source`` and ``destination`` may carry credentials: show only the
    ``*_display`` forms."""

    path: Path
    name: str
    source: str
    source_display: str
    source_endpoint_url: str | None
    kind: KindChoice  # auto, backup, or export (changefeed or EXPORT output)
    backups: str  # "latest", "all", or a full backup's subdirectory
    # Which incremental backups go with a full one: none; the chain as it stands, a new bundle
    # each time it grows ("growing"); or the chain once it is closed by the next full backup,
    # one bundle for good ("closed": what a destination under Object Lock wants).
    incrementals: IncrementalPolicy
    release: str | None  # None: read it from each backup
    force_version: bool
    platforms: tuple[str, ...]
    mirror: str | None
    cache_dir: Path | None
    destination: str
    destination_display: str
    destination_endpoint_url: str | None
    format: BundleFormat
    storage_class: str | None
    object_lock: ObjectLock | None
    retention: Retention | None
    binary_removal_days: int
    use_cache: bool = True  # not a spec key: `run --no-cache` turns it off for one run
    # Opens encrypted backups: a passphrase (file or environment) or KMS URIs.
    keys: EncryptionKeys = field(default=NO_KEYS, repr=False)
    export: ExportSpec | None = None  # exports: the schema file and the snapshot wanted
    # Signs every bundle the job writes (destination.sign_key); loaded when the spec is read.
    sign_key: SigningKey | None = field(default=None, repr=False)
    audit: AuditSpec | None = None  # [audit]: audit the destination after retention

    @property
    def with_incrementals(self) -> bool:
        return self.incrementals != "none"

    @property
    def destination_scheme(self) -> str:
        return parse_location(self.destination).scheme

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.name,
            "spec": str(self.path),
            "source": self.source_display,
            "source_endpoint_url": self.source_endpoint_url,
            "kind": self.kind,
            "backups": self.backups,
            "incrementals": self.incrementals,
            "release": self.release or "auto",
            "platforms": list(self.platforms),
            "destination": self.destination_display,
            "destination_endpoint_url": self.destination_endpoint_url,
            "format": self.format,
            "storage_class": self.storage_class,
            "object_lock": self.object_lock.to_json() if self.object_lock else None,
            "retention": self.retention.to_json() if self.retention else None,
            "encryption": {
                "passphrase": self.keys.passphrase_source,
                "kms": [uri.display for uri in self.keys.kms],
            },
            "export": self.export.to_json() if self.export else None,
            "sign_key": self.sign_key.fingerprint if self.sign_key else None,
            "audit": self.audit.to_json() if self.audit else None,
        }


@dataclass(frozen=True)
class ExportSpec:
    """What archiving changefeed or EXPORT output needs: ``source.schema`` and the rest."""

    schema: Path
    as_of: str  # latest, or one RESOLVED timestamp
    allow_gaps: bool
    table: str | None

    def to_json(self) -> dict[str, Any]:
        return {"schema": str(self.schema), "as_of": self.as_of, "allow_gaps": self.allow_gaps,
                "table": self.table}


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
    problems: list[str] = []
    base = path.parent.absolute()
    for key, value in data.items():
        if key not in SECTIONS or "." in key:
            problems.append(unknown(key, [s for s in SECTIONS if "." not in s], "section"))
        elif not isinstance(value, dict):
            problems.append(f"{key}: expected a table [{key}], got {kind_of(value)}")
    for section in _REQUIREDSECTIONS:
        if section not in data:
            problems.append(f"{section}: missing section [{section}]")
    tables = {name: SpecTable(data.get(name), name, SECTIONS[name], problems)
              for name in SECTIONS if "." not in name}

    job = tables["job"]
    name = job.string("name", required=True)
    if name is not None and not _JOB_NAME.match(name):
        job.problem("name", "must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                    "letter or digit")

    source = tables["source"]
    source_uri = _location(source, "uri", base)
    source_endpoint = _endpoint_url(source, source_uri)
    backups = source.string("backups", default="latest") or "latest"
    if backups not in ("latest", "all"):
        try:
            backups = normalize_subdir(backups)
        except CrdbArchiveError:
            source.problem("backups", f"{backups!r} is neither latest, all, nor a full "
                           "backup's subdirectory like 2024/12/15-000000.00")
    incrementals = _incrementals(source)
    keys = _encryption_keys(source, base)
    kind_text = source.choice("kind", KIND_CHOICES, default="auto") or "auto"
    kind: KindChoice = next((k for k in KIND_CHOICES if k == kind_text), "auto")
    export = _export(source, kind, base)

    if kind == "export":
        for section in ("version", "binaries"):
            if isinstance(data.get(section), dict) and data[section]:
                problems.append(f"{section}: applies to backups, not to source.kind = "
                                "\"export\"")
        for key in ("backups", "incrementals", "with_incrementals",
                    "encryption_passphrase_file", "kms"):
            if key in source.values:
                source.problem(key, "applies to backups, not to source.kind = \"export\"")

    version = tables["version"]
    release = _release(version)
    force = version.boolean("force", default=False)
    if force and version.values.get("release", "auto") == "auto":
        version.problem("force", "applies only with a pinned release, not with auto")

    binaries = tables["binaries"]
    platforms = _platforms(binaries, release)
    mirror = _mirror(binaries, base)
    cache = binaries.string("cache_dir", expand=True)
    cache_dir = base / cache if cache is not None else None

    destination = tables["destination"]
    dest_uri = _location(destination, "uri", base)
    dest_endpoint = _endpoint_url(destination, dest_uri)
    dest_remote = dest_uri is not None and is_remote(parse_location(dest_uri))
    fmt = destination.choice("format", ("dir", "tar"), default="tar" if dest_remote else "dir")
    classes = storage_classes(parse_location(dest_uri)) if dest_uri is not None else ()
    storage_class = (destination.choice("storage_class", classes, default=None) if classes
                     else destination.string("storage_class"))
    object_lock = _object_lock(destination, now)
    if dest_uri is not None and not dest_remote:
        for key, value in (("storage_class", storage_class), ("object_lock", object_lock)):
            if value is not None:
                destination.problem(key, "applies only to destinations in object storage "
                                    "(s3://, gs://, azure-blob://)")
    elif dest_uri is not None and storage_class is not None:
        try:  # what else the destination's cloud needs of a storage class
            check_options(parse_location(dest_uri), WriteOptions(storage_class=storage_class))
        except BadInput as error:
            destination.problem("storage_class", str(error))
    if source_uri is not None and dest_uri is not None:
        apart = overlap_problem(source_uri, dest_uri, source_endpoint_url=source_endpoint,
                                dest_endpoint_url=dest_endpoint, refuse_source_inside=True)
        if apart is not None:
            destination.problem("uri", apart)

    sign_key = signing_key(destination, base)
    retention = _retention(tables["retention"],
                           present=isinstance(data.get("retention"), dict))
    audit = audit_spec(tables["audit"], base, present=isinstance(data.get("audit"), dict))
    removal_days = tables["warnings"].integer(
        "binary_removal_days", minimum=0, default=DEFAULT_BINARY_REMOVAL_DAYS)

    # Every missing value has been reported as a problem; the None checks are for mypy.
    if problems or name is None or source_uri is None or dest_uri is None:
        raise InvalidJobSpec(str(path), problems)
    return JobSpec(
        path=path,
        name=name,
        source=source_uri,
        source_display=redact(source_uri),
        source_endpoint_url=source_endpoint,
        kind=kind,
        backups=backups,
        incrementals=incrementals,
        release=release,
        force_version=force,
        platforms=platforms,
        mirror=mirror,
        cache_dir=cache_dir,
        destination=dest_uri,
        destination_display=redact(dest_uri),
        destination_endpoint_url=dest_endpoint,
        format="tar" if fmt == "tar" else "dir",
        storage_class=storage_class,
        object_lock=object_lock,
        retention=retention,
        binary_removal_days=removal_days if removal_days is not None else 0,
        keys=keys,
        export=export,
        sign_key=sign_key,
        audit=audit,
    )


# --- keys that need more than a type check ----------------------------------------------------


INCREMENTAL_POLICIES: tuple[IncrementalPolicy, ...] = ("none", "growing", "closed")


def _incrementals(source: SpecTable) -> IncrementalPolicy:
    """source.incrementals, or the older source.with_incrementals (true meaning "growing")."""
    if "incrementals" in source.values and "with_incrementals" in source.values:
        source.problem("with_incrementals", "give incrementals alone (with_incrementals = "
                       "true is the older spelling of incrementals = \"growing\")")
        return "none"
    if "with_incrementals" in source.values:
        return "growing" if source.boolean("with_incrementals", default=False) else "none"
    text = source.choice("incrementals", INCREMENTAL_POLICIES, default="none") or "none"
    return next((p for p in INCREMENTAL_POLICIES if p == text), "none")


def _location(table: SpecTable, key: str, base: Path) -> str | None:
    """A local directory (made absolute) or an object storage URI (s3://, gs://,
    azure-blob://); the text keeps its credentials."""
    text = table.string(key, required=True, expand=True)
    if text is None:
        return None
    location = parse_location(text)
    problem = location_problem(location)
    if problem is not None:
        table.problem(key, problem)
        return None
    if location.scheme == "file":
        return os.path.normpath(base / location.path)
    return text.strip()


def _export(source: SpecTable, kind: KindChoice, base: Path) -> ExportSpec | None:
    """The export keys of [source]: required schema for ``export``, refused for ``backup``."""
    keys = ("schema", "as_of", "allow_gaps", "table")
    if kind == "backup":
        for key in keys:
            if key in source.values:
                source.problem(key, "applies to changefeed and EXPORT output, not to "
                               "source.kind = \"backup\"")
        return None
    schema = source.string("schema", required=kind == "export", expand=True)
    as_of = source.string("as_of", default="latest") or "latest"
    if as_of != "latest":
        try:
            Hlc.parse_user(as_of)
        except ValueError:
            source.problem("as_of", f"{as_of!r} is neither latest nor an HLC timestamp "
                           "(<wall nanos>.<logical>, or the 33 digits of a RESOLVED file name)")
    allow_gaps = source.boolean("allow_gaps", default=False)
    table = source.string("table")
    if schema is None:
        if kind == "auto" and any(key in source.values for key in keys[1:]):
            source.problem("schema", "missing: as_of, allow_gaps and table are for changefeed "
                           "and EXPORT output, which needs its schema file")
        return None
    return ExportSpec(base / schema, as_of, allow_gaps, table)


def _encryption_keys(table: SpecTable, base: Path) -> EncryptionKeys:
    """The key of encrypted backups: a passphrase file (relative to the spec) or the
    environment's passphrase, or KMS URIs (one or a list), never both."""
    passphrase_file = table.string("encryption_passphrase_file", expand=True)
    value = table.typed("kms", (list, str), "a KMS URI or a list of KMS URIs")
    items = [value] if isinstance(value, str) else list(value or [])
    kms: list[KmsUri] = []
    for i, item in enumerate(items):
        where = f"kms[{i}]" if isinstance(value, list) else "kms"
        if not isinstance(item, str):
            table.problem(where, f"expected a KMS URI, got {kind_of(item)}")
            continue
        text = table._expand(where, item)  # the table's own ${NAME} rules
        if text is None:
            continue
        try:
            kms += load_keys(kms=[text], environ={}, command_line=False).kms
        except CrdbArchiveError as error:
            table.problem(where, str(error))
    try:
        keys = load_keys(passphrase_file=base / passphrase_file if passphrase_file else None)
    except CrdbArchiveError as error:
        table.problem("encryption_passphrase_file", str(error))
        keys = NO_KEYS
    if keys.passphrase is not None and kms:
        given = ("encryption_passphrase_file" if passphrase_file
                 else f"${PASSPHRASE_ENV} in the environment")
        table.problem("kms", f"both a passphrase ({given}) and KMS keys are given: a backup is "
                      "encrypted one way, so give one of them")
    return EncryptionKeys(keys.passphrase, keys.passphrase_source, tuple(kms))


def _endpoint_url(table: SpecTable, uri: str | None) -> str | None:
    """The endpoint of the location's store (an S3-compatible store, a Cloud Storage or Azure
    emulator, a sovereign cloud); empty means the default one."""
    text = table.string("endpoint_url", expand=True, allow_empty=True)
    if text is None:
        return None
    text = text.strip()
    if uri is not None and not is_remote(parse_location(uri)):
        table.problem("endpoint_url", "applies only to locations in object storage (s3://, "
                      "gs://, azure-blob://), not to a local path")
        return None
    try:
        parts = urlsplit(text)
    except ValueError:  # an unbalanced IPv6 bracket
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        table.problem("endpoint_url", f"{redact(text)} is not an http(s) URL")
        return None
    return text


def _release(table: SpecTable) -> str | None:
    text = table.string("release", default="auto")
    if text is None or text == "auto":
        return None
    try:
        spec = release_index().parse(text)
    except CrdbArchiveError as error:
        table.problem("release", str(error))
        return None
    if spec.release_name is None:
        table.problem("release", f"{text} is a major version; name the exact release that "
                      f"took the backups, such as {spec.major}.0, or auto")
        return None
    return spec.release_name


def _platforms(table: SpecTable, release: str | None) -> tuple[str, ...]:
    value: list[Any] | None = table.typed("platforms", (list,), "a list of platform names")
    if value is None:
        return ("linux-amd64",)
    if not value:
        table.problem("platforms", "must name at least one platform")
    known = release_index().parse(release).release if release else None
    published = known.platforms if known is not None else None
    chosen: list[str] = []
    for i, item in enumerate(value):
        where = f"platforms[{i}]"
        if not isinstance(item, str):
            table.problem(where, f"expected a platform name, got {kind_of(item)}")
        elif item not in PLATFORMS:
            table.problem(where, f"unknown platform {item!r}; expected one of "
                          f"{', '.join(PLATFORMS)}")
        elif item in chosen:
            table.problem(where, f"{item} is listed twice")
        elif published is not None and item not in published:
            table.problem(where, f"{release} was never published for {item}")
        else:
            chosen.append(item)
    return tuple(chosen)


def _mirror(table: SpecTable, base: Path) -> str | None:
    text = table.string("mirror", expand=True)
    if text is None:
        return None
    if "://" not in text:
        text = str(base / text)
    try:
        resolve_mirror(text)
    except CrdbArchiveError as error:
        table.problem("mirror", str(error))
        return None
    return text


def _object_lock(destination: SpecTable, now: dt.datetime) -> ObjectLock | None:
    if "object_lock" not in destination.values:
        return None
    if not isinstance(destination.values["object_lock"], dict):
        destination.problem("object_lock", "expected a table [destination.object_lock]")
        return None
    lock = SpecTable(destination.values["object_lock"], "destination.object_lock",
                     SECTIONS["destination.object_lock"], destination.problems)
    mode = lock.choice("mode", LOCK_MODES, default=None)
    if "mode" not in lock.values:
        lock.problem("mode", f"missing (required: {' or '.join(LOCK_MODES)})")
    days = lock.integer("days", minimum=1)
    until = _retain_until(lock, now)
    if "days" in lock.values and "retain_until" in lock.values:
        lock.problem("retain_until", "give either days or retain_until, not both")
    elif "days" not in lock.values and "retain_until" not in lock.values:
        lock.problem("days", "missing: give days or retain_until")
    if mode is None or (days is None and until is None):
        return None
    return ObjectLock("GOVERNANCE" if mode == "GOVERNANCE" else "COMPLIANCE", days, until)


def _retain_until(lock: SpecTable, now: dt.datetime) -> dt.datetime | None:
    value = lock.typed("retain_until", (dt.date,), "a date (2036-01-01) or a date-time with "
                      "an offset")
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            lock.problem("retain_until", "a date-time needs an offset, like "
                         "2036-01-01T00:00:00Z")
            return None
        until = value.astimezone(dt.UTC)
    else:
        until = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if until <= now:
        lock.problem("retain_until", f"{until.date()} is not in the future")
        return None
    return until


def _retention(table: SpecTable, *, present: bool) -> Retention | None:
    if not present:
        return None
    rules: dict[str, int | None] = {
        key: table.integer(key, minimum=1) for key in SECTIONS["retention"]
    }
    if not any(key in table.values for key in rules):
        # An empty [retention] would keep nothing: refuse it rather than delete everything.
        table.problems.append(
            "retention: give at least one of keep_last, keep_days, keep_monthly, keep_yearly "
            "(leave the section out to keep every bundle)")
    return Retention(**rules)


"""The ``crdb-archive`` command line: parse, call one core function, render.

Nothing here decides anything about backups, binaries or bundles. Errors raised by the core
are caught once, in :func:`main`, and mapped to their exit codes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from crdb_archive import __version__, ui
from crdb_archive.text import count

# Usage errors come from the click that typer runs on: its own copy in recent releases.
try:
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - typer releases that use the click package
    from click import exceptions as click_errors  # type: ignore[no-redef]
from crdb_archive.errors import BadInput, CrdbArchiveError, ExitCode, Interrupted, InvalidJobSpec
from crdb_archive.versions import compatibility, release_index, restore_plan

if TYPE_CHECKING:
    from crdb_archive.backup.keys import EncryptionKeys
    from crdb_archive.binaries import FetchResult
    from crdb_archive.bundle.signature import AllowedSigners, SigningKey
    from crdb_archive.bundle.verify import VerifyReport
    from crdb_archive.jobs import JobEvent

# Each command imports its core where it runs: the CLI starts in a fraction of the time when
# `verify` does not load boto3, requests and the job machinery it never uses.

app = typer.Typer(
    name="crdb-archive",
    help="Keep CockroachDB data restorable for decades: backups with the binaries that "
         "restore them, and copies that need no CockroachDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _State:
    json = False
    json_lines = False  # `run --json` prints JSON Lines: one compact object per line
    interrupted: str | None = None  # the signal that stopped the command, once one has
    reporting = False  # the outcome is being printed: a signal now changes nothing


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
PlatformsOption = Annotated[
    list[str] | None,
    typer.Option("--platform", help="Platform, repeatable: linux-amd64 (default), "
                 "linux-arm64, linux-amd64-fips, darwin-amd64, darwin-arm64, windows-amd64."),
]
MirrorOption = Annotated[
    str | None,
    typer.Option("--mirror", help="Mirror base URL (http, https, file://) or directory; "
                 "default $CRDB_ARCHIVE_MIRROR, else https://binaries.cockroachdb.com."),
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint-url", help="Endpoint of the location in object storage when its "
                 "URI names none: an S3-compatible store for s3:// (default $AWS_ENDPOINT_URL, "
                 "else AWS), a Cloud Storage endpoint for gs:// (default "
                 "$STORAGE_EMULATOR_HOST, else Google), an emulator or private endpoint for "
                 "azure-blob://. With two locations in different clouds, give each its "
                 "endpoint in its URI."),
]
PassphraseFileOption = Annotated[
    Path | None,
    typer.Option("--encryption-passphrase-file", help="File holding the passphrase the backup "
                 "was encrypted with (BACKUP ... WITH encryption_passphrase); read once, one "
                 "trailing newline removed. Default: $CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE. "
                 "Never give a passphrase on the command line."),
]
KmsOption = Annotated[
    list[str] | None,
    typer.Option("--kms", metavar="URI|@FILE",
                 help="KMS key the backup was encrypted with, as given to BACKUP ... WITH kms: "
                 "aws:///<key id or ARN>?AUTH=implicit&REGION=... (repeatable). A URI with "
                 "AWS_SECRET_ACCESS_KEY would show in the process list: put it in a file and "
                 "give --kms @FILE (one URI a line)."),
]
CacheDirOption = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Download cache; default $CRDB_ARCHIVE_CACHE, else "
                 "the user's cache directory. Entries answer only for the mirror they came "
                 "from."),
]
NoCacheFlag = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor fill the download cache.")
]
SignKeyOption = Annotated[
    Path | None,
    typer.Option("--sign-key", metavar="FILE",
                 help="Sign each new bundle with this unencrypted OpenSSH Ed25519 private key "
                 "(ssh-keygen -t ed25519 -N ''): tagmanifest-sha256.txt.sig, checkable with "
                 "`ssh-keygen -Y verify -n crdb-archive`. Default: the file "
                 "$CRDB_ARCHIVE_SIGN_KEY names."),
]
AllowedSignersOption = Annotated[
    Path | None,
    typer.Option("--allowed-signers", metavar="FILE",
                 help="OpenSSH allowed_signers file: require a valid signature "
                 "(tagmanifest-sha256.txt.sig) by a key it lists for namespace crdb-archive."),
]
ReplaceFlag = Annotated[
    bool,
    typer.Option("--replace", help="Replace an earlier extraction of the same archive (and, "
                 "for fetch-binary, a different file of the archive's name) in --to; nothing "
                 "else is ever replaced."),
]


def _json_mode(value: bool) -> bool:
    _State.json = value
    return value


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"crdb-archive {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    """Keep CockroachDB data restorable for decades: backups with the binaries that restore
    them, and copies that need no CockroachDB."""


def _emit(payload: dict[str, Any] | list[Any], text: list[str], json_output: bool) -> None:
    if json_output:
        ui.print_json(payload)
    else:
        for line in text:
            ui.line(line)


# The passphrase variable's name, repeated here so that commands that never read it can drop
# it without importing the backup machinery (crdb_archive.backup.keys.PASSPHRASE_ENV).
_PASSPHRASE_ENV = "CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE"  # noqa: S105 - a variable name


def _forget_passphrase() -> None:
    """Drop the passphrase from the environment, so that no process this one starts (such as
    ``cockroach version``) inherits it."""
    os.environ.pop(_PASSPHRASE_ENV, None)


def _keys(passphrase_file: Path | None, kms: list[str] | None) -> EncryptionKeys:
    """The keys given, read once; the passphrase then leaves the environment."""
    from crdb_archive.backup.keys import load_keys  # noqa: PLC0415

    try:
        return load_keys(passphrase_file=passphrase_file, kms=kms or ())
    finally:
        _forget_passphrase()


# A path, not the key: the environment of a process is readable by its user, and a key file
# keeps its own permissions.
SIGN_KEY_ENV = "CRDB_ARCHIVE_SIGN_KEY"


def _sign_key(path: Path | None) -> SigningKey | None:
    """The signing key given (``--sign-key``, else the file $CRDB_ARCHIVE_SIGN_KEY names),
    loaded and checked before anything is written; raises BadInput."""
    chosen = path if path is not None else (
        Path(os.environ[SIGN_KEY_ENV]) if os.environ.get(SIGN_KEY_ENV) else None)
    if chosen is None:
        return None
    from crdb_archive.bundle.signature import load_signing_key  # noqa: PLC0415

    return load_signing_key(chosen)


def _allowed_signers(path: Path | None) -> AllowedSigners | None:
    if path is None:
        return None
    from crdb_archive.bundle.signature import AllowedSigners  # noqa: PLC0415

    allowed = AllowedSigners.load(path)
    if not allowed.signers:
        raise BadInput(f"{path} lists no ssh-ed25519 key: no bundle signature could be "
                       "accepted")
    return allowed


def _warn_all(warnings: list[str], json_output: bool) -> None:
    if not json_output:
        for warning in warnings:
            ui.warning_line(warning)


# --- versions ----------------------------------------------------------------------------------


@app.command()
def compat(
    backup_version: Annotated[str, typer.Argument(help="Version that took the backup.")],
    target_version: Annotated[str, typer.Argument(help="Version of the cluster to restore into.")],
    json_output: JsonFlag = False,
) -> None:
    """Is restoring a backup from BACKUP_VERSION into a TARGET_VERSION cluster supported?

    Exit 0 supported, 1 not supported, 2 bad input.
    """
    _json_mode(json_output)
    answer = compatibility(backup_version, target_version)
    verdict = "supported" if answer.supported else "NOT supported"
    _warn_all(answer.warnings, json_output)
    _emit(answer.to_json(), [f"{verdict}: {answer.reason}"], json_output)
    if not answer.supported:
        raise typer.Exit(ExitCode.NO)


@app.command()
def plan(
    backup_version: Annotated[str, typer.Argument(help="Version that took the backup.")],
    target: Annotated[str, typer.Option("--target", help="Version of the target cluster.")],
    json_output: JsonFlag = False,
) -> None:
    """The steps to bring a backup from BACKUP_VERSION into a --target cluster."""
    _json_mode(json_output)
    result = restore_plan(backup_version, target)
    _warn_all(result.warnings, json_output)
    lines = [" -> ".join(m.name for m in result.majors)]
    lines += [f"{i}. {step}" for i, step in enumerate(result.steps, 1)]
    _emit(result.to_json(), lines, json_output)


@app.command()
def releases(
    major: Annotated[str | None, typer.Argument(help="A major version such as v23.1.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """List the major versions, or the releases of one MAJOR."""
    _json_mode(json_output)
    index = release_index()
    today = dt.datetime.now(dt.UTC).date()
    if major is None:
        rows: list[dict[str, Any]] = []
        for m in index.majors:
            removal = m.binary_removal_date
            end = m.support_end
            rows.append({
                "major": m.name,
                "type": m.type,
                "upcoming": m.upcoming,
                "release_date": _iso(m.release_date),
                "support_end": _iso(end),
                "binary_removal_date": _iso(removal),
                "days_until_binary_removal": (removal - today).days if removal else None,
            })
        text = [f"{'major':7} {'type':10} {'released':10}  {'support end':11}  "
                f"{'binaries removed':16}  days left"]
        for r in rows:
            left = r["days_until_binary_removal"]
            left_text = "" if left is None else ("removed" if left < 0 else str(left))
            text.append(
                f"{r['major']:7} {r['type']:10} {r['release_date'] or 'upcoming':10}  "
                f"{r['support_end'] or '-':11}  {r['binary_removal_date'] or '-':16}  "
                f"{left_text}"
            )
        _emit(rows, text, json_output)
        return
    spec = index.parse(major)
    rows = [
        {
            "release": r.name,
            "major": r.major,
            "date": r.date.isoformat(),
            "type": r.type,
            "withdrawn": r.withdrawn,
            "cloud_only": r.cloud_only,
            "sha256sum_published": r.has_sha256sum,
            "platforms": list(r.platforms),
        }
        for r in index.releases_of(spec.major)
    ]
    text = []
    for r in rows:
        flags = [f for f in ("withdrawn", "cloud_only") if r[f]]
        text.append(f"{r['release']:24} {r['date']}  {r['type']:10} {' '.join(flags)}".rstrip())
    _emit(rows, text, json_output)


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


# --- backups -------------------------------------------------------------------------------------


@app.command()
def inspect(
    path: Annotated[str, typer.Argument(help="A backup directory, a backup collection, or a "
                                              "bundle (directory or .tar); or s3://, gs:// or "
                                              "azure-blob:// bucket/prefix, as given to BACKUP "
                                              "INTO.")],
    subdir: Annotated[
        str | None,
        typer.Option("--subdir", help="In a collection, the full backup to inspect "
                     "(default: the one LATEST names)."),
    ] = None,
    endpoint_url: EndpointOption = None,
    encryption_passphrase_file: PassphraseFileOption = None,
    kms: KmsOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Which CockroachDB version took the backup at PATH, and where it can be restored.

    For a bundle: what it holds (without re-hashing it; use `verify` for that).
    An encrypted backup tells its version only with its key (passphrase or KMS).
    Exit 0 read, 1 damaged manifest or bundle, 2 not a backup, unreadable manifest or wrong
    key, 3 storage or KMS error (also: objects waiting in GLACIER / DEEP_ARCHIVE).
    """
    from crdb_archive.backup import inspect_backup  # noqa: PLC0415
    from crdb_archive.bundle.summary import looks_like_bundle, summarize_bundle  # noqa: PLC0415
    from crdb_archive.sources import shows_export  # noqa: PLC0415

    _json_mode(json_output)
    if looks_like_bundle(path, endpoint_url=endpoint_url):
        summary = summarize_bundle(path, endpoint_url=endpoint_url)
        _emit(summary, _bundle_summary(summary), json_output)
        return
    if subdir is None and shows_export(path, endpoint_url=endpoint_url):
        from crdb_archive.export.source_summary import summarize_export_source  # noqa: PLC0415

        found = summarize_export_source(path, endpoint_url=endpoint_url)
        _emit(found, _export_source_summary(found), json_output)
        return
    keys = _keys(encryption_passphrase_file, kms)
    with ui.progress_reporter(quiet=json_output or not ui.stderr_is_terminal()) as progress:
        info = inspect_backup(path, subdir=subdir, endpoint_url=endpoint_url,
                              progress=progress, keys=keys)
    info.close()
    payload = info.to_json()
    _warn_all(info.warnings, json_output)
    _emit(payload, _backup_summary(payload), json_output)


def _export_source_summary(p: dict[str, Any]) -> list[str]:
    what = "changefeed output" if p["kind"] == "changefeed" else "EXPORT output"
    resolved = p["resolved"]
    lines = [
        f"source:           {p['source']}",
        f"kind:             {what}, format {p['format']}"
        + (f", {p['partitioning']} partitions" if p["partitioning"] else ""),
        f"files:            {p['files']} ({p['bytes']} bytes), {p['data_files']} data file(s)"
        + (f" from {p['sessions']} session(s)" if p["kind"] == "changefeed" else ""),
    ]
    if p["kind"] == "changefeed":
        lines.append(f"topics:           {', '.join(p['topics'])}")
        lines.append(f"resolved:         {len(resolved)} timestamp(s)"
                     + (f", newest {resolved[-1]['hlc']} ({resolved[-1]['time']})"
                        if resolved else ": the output can only be taken as a whole"))
        lines.append("complete:         " + ("yes, no file id is missing" if p["complete"]
                                             else f"NO, {len(p['gaps'])} gap(s)"))
        lines += [f"  gap: {gap}" for gap in p["gaps"]]
    return lines


def _backup_summary(p: dict[str, Any]) -> list[str]:
    where = "single backup" if p["kind"] == "backup" else (
        f"collection, full backup {p['subdir']}"
        + (" (LATEST)" if p["subdir"] == p["latest"] else "")
    )
    encryption = p["encryption"]
    if p["encrypted"] and not encryption["decrypted"]:
        version = ("unknown: encrypted backup; give its key (--encryption-passphrase-file or "
                   "--kms), or the version with --version when archiving")
    else:
        version = f"{p['build_tag'] or 'unknown'} (build tag), major {p['major_version'] or '?'}"
    lines = [
        f"backup:           {where}",
        f"version:          {version}",
        f"encryption:       {_encryption_text(encryption)}",
        f"cluster version:  {p['cluster_version'] or '-'}",
        f"end time:         {p['end_time'] or '-'}",
        f"cluster id:       {p['cluster_id'] or '-'}",
        f"files:            {p['files']} ({p['bytes']} bytes), "
        f"{len(p['incrementals'])} incremental backup(s)",
        f"restorable into:  {', '.join(p['restorable_into']) or '-'}",
    ]
    if p["kind"] == "collection":
        lines.append(f"full backups:     {len(p['backups'])}")
        lines += [
            f"  {b['subdir']}  {b['end_time'] or '-'}{'  LATEST' if b['latest'] else ''}"
            for b in p["backups"]
        ]
    return lines


def _encryption_text(e: dict[str, Any]) -> str:
    if e["mode"] == "none":
        return "none"
    how = {"passphrase": "a passphrase", "kms": "KMS", "unknown": "an unknown key"}[e["mode"]]
    if not e["decrypted"]:
        return f"encrypted with {how}, not decrypted"
    return f"encrypted with {how}, decrypted" + (f" with {e['kms'][0]}" if e["kms"] else "")


# --- binaries ------------------------------------------------------------------------------------


@app.command("fetch-binary")
def fetch_binary(
    version: Annotated[str, typer.Argument(help="The release, such as v23.1.11.")],
    to: Annotated[
        Path, typer.Option("--to", help="Directory for the archives (created if missing).")
    ],
    platform: PlatformsOption = None,
    mirror: MirrorOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheFlag = False,
    extract: Annotated[
        bool,
        typer.Option("--extract", help="Also extract each archive into --to; run `cockroach "
                     "version` only when its checksum came from https://binaries.cockroachdb.com "
                     "and the binary runs on this host (else print how to run it by hand)."),
    ] = False,
    replace: ReplaceFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Download (or take from the cache), verify and check the official archives of VERSION.

    Exit 0 ok, 1 checksum mismatch, not a release archive or wrong version, 2 bad input (an
    existing file or folder in --to included), 3 network or storage failure.
    """
    from crdb_archive.binaries import DEFAULT_PLATFORM, fetch_binaries  # noqa: PLC0415

    _json_mode(json_output)
    _forget_passphrase()
    with ui.progress_reporter() as progress:
        result = fetch_binaries(
            version, platform or [DEFAULT_PLATFORM], to, mirror=mirror, cache_dir=cache_dir,
            use_cache=not no_cache, extract=extract, replace=replace, progress=progress,
        )
    _warn_all(result.warnings, json_output)
    _emit(result.to_json(), _fetch_summary(result), json_output)
    if result.version_mismatch:
        raise typer.Exit(ExitCode.NO)


def _fetch_summary(result: FetchResult) -> list[str]:
    lines = []
    for f in result.files:
        a = f.archive
        verdict = (
            f"verified against published SHA-256 from {a.published.url}" if a.published
            else f"NOT verified: no published checksum for {a.release}"
        )
        cached = " (from cache)" if a.from_cache else ""
        lines.append(f"{a.path}  sha256 {a.sha256}  {verdict}{cached}")
        if f.extracted is not None and f.version_check is not None:
            lines.append(f"  extracted {f.extracted.root}: {f.version_check.detail}")
    return lines


# --- bundles -------------------------------------------------------------------------------------


@app.command("archive")
def archive_command(
    source: Annotated[str, typer.Argument(help="A backup (directory, collection), or a "
                                                "changefeed's cloud-storage sink or EXPORT "
                                                "output; a path, file://, s3://, gs:// or "
                                                "azure-blob:// URI.")],
    dest: Annotated[str, typer.Option("--dest", help="Directory, s3://bucket/prefix, "
                                      "gs://bucket/prefix or azure-blob://container/prefix "
                                      "that receives the bundle.")],
    kind: Annotated[
        str, typer.Option("--kind", help="auto (tell by the file names), backup, or export "
                          "(changefeed or EXPORT output).")
    ] = "auto",
    schema: Annotated[
        Path | None, typer.Option("--schema", help="Exports: the SHOW CREATE ALL TABLES "
                                  "output of the exported tables (required).")
    ] = None,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Exports: the snapshot time, latest (the newest "
                          "RESOLVED timestamp) or one RESOLVED timestamp (wall.logical or its "
                          "33 digits).")
    ] = "latest",
    allow_gaps: Annotated[
        bool, typer.Option("--allow-gaps", help="Exports: archive a changefeed with lost "
                           "files anyway, recording the gaps.")
    ] = False,
    table: Annotated[
        str | None, typer.Option("--table", help="Exports: the table an EXPORT is of, when "
                                 "the schema file has several.")
    ] = None,
    subdir: Annotated[
        str | None,
        typer.Option("--subdir", help="In a collection, the full backup to archive "
                     "(default: the one LATEST names)."),
    ] = None,
    version: Annotated[
        str, typer.Option("--version", help="auto (read it from the backup) or the exact "
                          "release that took the backup, such as v23.1.11."),
    ] = "auto",
    force_version: Annotated[
        bool, typer.Option("--force-version", help="Archive --version even though the backup "
                           "records another one."),
    ] = False,
    platform: PlatformsOption = None,
    mirror: MirrorOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheFlag = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Bundle name (default: derived from the "
                                 "cluster, the backup's end time and the version)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="dir (a directory) or tar (one uncompressed tar).")
    ] = "dir",
    with_incrementals: Annotated[
        bool, typer.Option("--with-incrementals", help="Include the full backup's incremental "
                           "backups."),
    ] = False,
    endpoint_url: EndpointOption = None,
    storage_class: Annotated[
        str | None, typer.Option("--storage-class", help="Storage class of the payload: for "
                                 "s3:// STANDARD, STANDARD_IA, GLACIER_IR, GLACIER, "
                                 "DEEP_ARCHIVE, ...; for gs:// STANDARD, NEARLINE, COLDLINE, "
                                 "ARCHIVE; for azure-blob:// the access tiers Hot, Cool, Cold, "
                                 "Archive."),
    ] = None,
    object_lock_mode: Annotated[
        str | None, typer.Option("--object-lock-mode", help="Retention lock: GOVERNANCE or "
                                 "COMPLIANCE. s3://: Object Lock (the bucket must have it); "
                                 "gs://: object retention, Unlocked or Locked (or a bucket "
                                 "retention policy that keeps objects as long); azure-blob://: "
                                 "an unlocked or locked immutability policy, on a container "
                                 "with version-level immutability."),
    ] = None,
    object_lock_days: Annotated[
        int | None, typer.Option("--object-lock-days", help="Keep the bundle locked N days.")
    ] = None,
    retain_until: Annotated[
        dt.datetime | None, typer.Option("--retain-until", help="Keep the bundle locked until "
                                         "this date (UTC).", formats=["%Y-%m-%d"]),
    ] = None,
    encryption_passphrase_file: PassphraseFileOption = None,
    kms: KmsOption = None,
    sign_key: SignKeyOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Archive the backup, changefeed output or EXPORT output at SOURCE into a verifiable
    bundle in --dest; with --sign-key, signed.

    An encrypted backup's version is read with its key (passphrase or KMS); the bundle
    records how it is encrypted, never a key.

    Exit 0 written (or already there and sound), 1 checksum mismatch, a damaged bundle of that
    name, or changefeed output that is incomplete or damaged, 2 bad input (a wrong key, an
    unusable signing key, a source that is neither kind or both), 3 network, storage or KMS
    failure.
    """
    from crdb_archive.archive import ArchiveRequest, ArchiveResult, archive_source  # noqa: PLC0415
    from crdb_archive.binaries import DEFAULT_PLATFORM  # noqa: PLC0415
    from crdb_archive.export.archive import ExportOptions  # noqa: PLC0415
    from crdb_archive.sources import KIND_CHOICES  # noqa: PLC0415
    from crdb_archive.storage.places import endpoints_for  # noqa: PLC0415

    _json_mode(json_output)
    chosen = next((k for k in KIND_CHOICES if k == kind), None)
    if chosen is None:
        raise BadInput(f"--kind {kind!r}: expected auto, backup or export")
    if fmt not in ("dir", "tar"):
        raise BadInput(f"--format {fmt!r}: expected dir or tar")
    if object_lock_mode not in (None, "GOVERNANCE", "COMPLIANCE"):
        raise BadInput(f"--object-lock-mode {object_lock_mode!r}: expected GOVERNANCE or "
                       "COMPLIANCE")
    source_endpoint, dest_endpoint = endpoints_for(endpoint_url, source, dest)
    signing = _sign_key(sign_key)
    request = ArchiveRequest(
        source=source, dest=dest, subdir=subdir, version=version,
        force_version=force_version, platforms=tuple(platform or [DEFAULT_PLATFORM]),
        mirror=mirror, name=name, format="tar" if fmt == "tar" else "dir",
        with_incrementals=with_incrementals, cache_dir=cache_dir, use_cache=not no_cache,
        source_endpoint_url=source_endpoint, dest_endpoint_url=dest_endpoint,
        storage_class=storage_class,
        object_lock_mode="COMPLIANCE" if object_lock_mode == "COMPLIANCE" else (
            "GOVERNANCE" if object_lock_mode == "GOVERNANCE" else None),
        object_lock_days=object_lock_days,
        retain_until=retain_until.replace(tzinfo=dt.UTC) if retain_until else None,
        keys=_keys(encryption_passphrase_file, kms),
        sign_key=signing,
    )
    export = ExportOptions(schema=schema, as_of=as_of, allow_gaps=allow_gaps, table=table)
    with ui.progress_reporter() as progress:
        result = archive_source(request, kind=chosen, export=export, progress=progress)
    _warn_all(result.warnings, json_output)
    state = "written" if result.created else "already archived, verified, unchanged"
    if isinstance(result, ArchiveResult):
        what = f"  CockroachDB {result.version}, binaries for {', '.join(result.platforms)}"
        lines = [what]
    else:
        when = f"as of {result.as_of.iso()}" if result.as_of else "taken as a whole"
        lines = [f"  {result.source_kind} output ({result.format}), snapshot {when}"]
        lines += [f"  {name}: {rows} rows" for name, rows in result.tables.items()]
    _emit(result.to_json(), [
        f"{result.bundle}: {state}", *lines,
        f"  {result.files} payload files, {result.bytes} bytes, {result.seconds:.1f} s",
    ], json_output)


@app.command()
def verify(
    bundles: Annotated[list[str], typer.Argument(
        help="One or more bundles: directory or .tar, local, s3:// or gs://.")],
    fast: Annotated[
        bool, typer.Option("--fast", help="Presence, sizes and Payload-Oxum only: no digests.")
    ] = False,
    all_digests: Annotated[
        bool, typer.Option("--all-digests", help="Check SHA-256 as well as BLAKE3.")
    ] = False,
    decrypt_check: Annotated[
        bool, typer.Option("--decrypt-check", help="Also authenticate every encrypted backup "
                           "file with the backup's key (each AES-GCM tag): proves the files are "
                           "as CockroachDB wrote them."),
    ] = False,
    allowed_signers: AllowedSignersOption = None,
    endpoint_url: EndpointOption = None,
    encryption_passphrase_file: PassphraseFileOption = None,
    kms: KmsOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Check bundles: complete, every digest right, binaries as published; with
    --allowed-signers, signed by a key it lists.

    With several bundles each is checked and reported, and --json prints
    {"ok", "bundles": [...]} (one bundle: its report alone).
    Exit 0 valid, 1 damaged, incomplete or (with --allowed-signers) not validly signed, 2 not a
    bundle or a wrong key, 3 storage or KMS error; with several, the most severe (1, 3, 2).
    """
    from crdb_archive.bundle.verify import verify_bundle  # noqa: PLC0415
    from crdb_archive.bundle.verify_many import verify_bundles  # noqa: PLC0415

    _json_mode(json_output)
    keys = None
    if decrypt_check:
        keys = _keys(encryption_passphrase_file, kms)
    elif encryption_passphrase_file is not None or kms:
        raise BadInput("--encryption-passphrase-file and --kms are for --decrypt-check")
    allowed = _allowed_signers(allowed_signers)
    with ui.progress_reporter() as progress:
        if len(bundles) == 1:
            report = verify_bundle(bundles[0], fast=fast, all_digests=all_digests,
                                   endpoint_url=endpoint_url, progress=progress,
                                   decrypt_check=decrypt_check, keys=keys, allowed=allowed)
        else:
            many = verify_bundles(bundles, fast=fast, all_digests=all_digests,
                                  endpoint_url=endpoint_url, progress=progress,
                                  decrypt_check=decrypt_check, keys=keys, allowed=allowed)
    if len(bundles) == 1:
        _emit(report.to_json(), _verify_lines(report), json_output)
        if not report.ok:
            raise typer.Exit(ExitCode.NO)
        return
    lines: list[str] = []
    for outcome in many.outcomes:
        if outcome.report is not None:
            lines += _verify_lines(outcome.report)
        else:
            lines.append(f"{outcome.to_json()['bundle']}: NOT CHECKED: {outcome.error}")
    summary = many.to_json()
    lines.append(f"{len(many.outcomes)} bundles: {summary['checked'] - summary['damaged']} "
                 f"OK, {summary['damaged']} damaged, {summary['unchecked']} not checked")
    _emit(summary, lines, json_output)
    if many.exit_code:
        raise typer.Exit(many.exit_code)


def _verify_lines(report: VerifyReport) -> list[str]:
    decrypted = ("" if report.decrypted is None
                 else f", {report.decrypted} encrypted file(s) authenticated")
    # A bundle sound in every other respect whose signature fails is not damaged: it is not
    # vouched for by a key the auditor trusts.
    verdict = ("OK" if report.ok else "NOT TRUSTED"
               if all(p.kind == "signature" for p in report.problems) else "DAMAGED")
    lines = [f"{report.bundle}: {verdict} ({report.files} files, "
             f"{report.bytes} bytes, {report.mode} check{decrypted})"]
    if report.signature is not None and (report.signature.present or report.signature.checked):
        lines.append(f"  signature: {report.signature.detail}")
    lines += [f"  {problem}" for problem in report.problems]
    return lines


@app.command()
def binary(
    bundle: Annotated[str, typer.Argument(help="A bundle: directory or .tar, local, s3:// "
                                               "or gs://.")],
    to: Annotated[Path, typer.Option("--to", help="Directory to unpack the binary into.")],
    platform: Annotated[
        str, typer.Option("--platform", help="auto (this host) or a platform such as "
                          "linux-amd64."),
    ] = "auto",
    replace: ReplaceFlag = False,
    allowed_signers: AllowedSignersOption = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Unpack the bundle's CockroachDB binary for restoring, checked against the bundle.

    Without --allowed-signers the binary is not run: the bundle's own records cannot vouch for
    its code, and the output says how to run `cockroach version` by hand. With it, the bundle
    must be signed by a key the file lists; the signer vouches for the archive, and
    `cockroach version` is run to confirm the release (where it runs on this host).

    Exit 0 ok, 1 the bundle lacks the platform, its archive is damaged, it is not validly
    signed (--allowed-signers) or the binary reports another release, 2 not a bundle or bad
    input (an existing folder in --to included), 3 storage error.
    """
    from crdb_archive.bundle.retrieve import retrieve_binary  # noqa: PLC0415

    _json_mode(json_output)
    _forget_passphrase()
    allowed = _allowed_signers(allowed_signers)
    with ui.progress_reporter() as progress:
        result = retrieve_binary(bundle, to, platform=platform, replace=replace,
                                 endpoint_url=endpoint_url, progress=progress,
                                 allowed=allowed)
    check = result.version_check
    lines = [
        f"cockroach {result.version} ({result.platform}): {result.cockroach}",
        f"  version check: {check.detail}",
    ]
    if result.lib_dir is not None:
        lines.append(f"  spatial libraries: {result.lib_dir} "
                     f"(cockroach start ... --spatial-libs={result.lib_dir})")
    if result.signature is not None:
        lines.append(f"  signature: {result.signature.detail}")
    if not result.verified:
        lines.append("  note: no published SHA-256 existed for this release; the archive "
                     "matches the bundle's own digests")
    _emit(result.to_json(), lines, json_output)
    if check.matches is False:
        raise typer.Exit(ExitCode.NO)


def _bundle_summary(p: dict[str, Any]) -> list[str]:
    if p["bundle_kind"] == "export":
        as_of = p["as_of"]
        lines = [
            f"bundle:           {p['bundle']} ({p['form']}), export",
            f"source:           {p['source']} ({p['source_kind']} output, {p['format']})",
            "as of:            " + (f"{as_of['time']} (HLC {as_of['hlc']})" if as_of
                                    else "the output as a whole"),
            f"tables:           {len(p['tables'])}",
        ]
        lines += [f"  {name}: {rows} rows" for name, rows in p["tables"].items()]
        lines += [f"lost file:        {gap}" for gap in p["gaps"]]
        lines.append(f"payload:          {p['payload_oxum']} (bytes.files), bagged "
                     f"{p['bagging_date']}")
        lines += [f"note: {note}" for note in p["notes"]]
        return lines + [f"archived with warning: {warning}" for warning in p["warnings"]]
    backup = p["backup"]
    return [
        f"bundle:           {p['bundle']} ({p['form']})",
        f"version:          {p['version']} (major {p['major_version']})",
        f"restorable into:  {', '.join(p['restorable_into'])}",
        f"binaries:         {', '.join(p['platforms'])}",
        f"backup:           {backup['kind']}"
        + (f", full backup {backup['subdir']}" if backup["subdir"] else "")
        + f", {len(backup['incrementals'])} incremental(s)"
        + (f", encrypted ({backup['encryption']})" if backup["encrypted"] else ""),
        f"end time:         {backup['end_time'] or '-'}",
        f"cluster id:       {backup['cluster_id'] or '-'}",
        f"payload:          {p['payload_oxum']} (bytes.files), bagged {p['bagging_date']}",
    ] + [f"archived with warning: {warning}" for warning in p["warnings"]]


@app.command("load")
def load_command(
    bundle: Annotated[str, typer.Argument(help="An export bundle: directory or .tar, local, "
                                               "s3:// or gs://.")],
    into: Annotated[str, typer.Option("--into", help="The PostgreSQL database: a libpq "
                                      "connection string (postgresql://user@host:5432/db). "
                                      "The password goes in PGPASSWORD or ~/.pgpass: one "
                                      "given here is refused, as the process list shows "
                                      "it.")],
    schema_name: Annotated[
        str | None, typer.Option("--schema-name", help="Create every table in this schema "
                                 "instead of the schemas the tables had.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop and reload tables (and enum types) of the "
                           "bundle that already exist.")
    ] = False,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Load an export bundle into PostgreSQL: create its tables, COPY every snapshot in, add
    the constraints and indexes, and check every table's row count against the bundle; all in
    one transaction.

    Exit 0 loaded, 1 the bundle is damaged or a count differs, 2 not an export bundle, a table
    already there (without --replace) or refused by PostgreSQL, 3 database or storage failure.
    """
    from crdb_archive.bundle.reader import open_bundle  # noqa: PLC0415
    from crdb_archive.export.load import load_export  # noqa: PLC0415
    from crdb_archive.export.pg import Server  # noqa: PLC0415

    _json_mode(json_output)
    if Server(into).params.get("password"):
        # Already in the process list by now: refusing keeps it from becoming a habit.
        raise BadInput("--into carries a password, which every user of this machine can read "
                       "in the process list; give it in PGPASSWORD, ~/.pgpass or a "
                       "service file instead")
    reader = open_bundle(bundle, endpoint_url=endpoint_url)
    with ui.progress_reporter() as progress:
        result = load_export(reader, into, schema_name=schema_name, replace=replace,
                             progress=progress)
    rows = sum(result.tables.values())
    lines = [f"{reader.display} -> {result.database}: {len(result.tables)} table(s), "
             f"{rows} rows, every count as the bundle records"]
    lines += [f"  {name}: {count} rows" for name, count in result.tables.items()]
    lines += [f"  note: {note}" for note in result.notes]
    _emit({"bundle": reader.display, **result.to_json()}, lines, json_output)


# --- the catalog and audits -----------------------------------------------------------------------


@app.command("list")
def list_command(
    dest: Annotated[str, typer.Argument(help="A destination: the directory, s3://bucket/"
                                            "prefix or gs://bucket/prefix, that holds "
                                            "bundles.")],
    restorable_into: Annotated[
        str | None, typer.Option("--restorable-into", metavar="VERSION",
                                 help="For each bundle: does it restore into a cluster on "
                                 "VERSION (such as v24.3) directly, through which chain of "
                                 "majors, or not at all.")
    ] = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Every bundle in DEST: kind, version, backup time, size, form, storage class, lock,
    signing key and last verification. Reads tag files only, never a payload.

    Exit 0 listed, 2 bad input, 3 storage error.
    """
    from crdb_archive.cli_tables import catalog_lines  # noqa: PLC0415
    from crdb_archive.jobs.catalog import build_catalog, restore_route  # noqa: PLC0415
    from crdb_archive.jobs.destination import open_destination  # noqa: PLC0415

    _json_mode(json_output)
    _forget_passphrase()
    target = release_index().parse(restorable_into) if restorable_into is not None else None
    destination = open_destination(dest, endpoint_url=endpoint_url)
    try:
        catalog = build_catalog(destination)
    finally:
        destination.close()
    routes = None if target is None else {
        entry.key: restore_route(entry, target) for entry in catalog.entries}
    bundles = []
    for entry in catalog.entries:
        item = entry.to_json()
        if routes is not None:
            route = routes[entry.key]
            item["restore"] = route.to_json() if route is not None else None
        bundles.append(item)
    payload: dict[str, Any] = {"destination": destination.display, "bundles": bundles,
                               "incomplete": catalog.incomplete,
                               "stale_records": catalog.stale}
    if target is not None:
        payload["restorable_into"] = target.release_name or target.major.name
    _emit(payload, catalog_lines(catalog, routes, restorable_into), json_output)


@app.command()
def audit(
    dest: Annotated[str, typer.Argument(help="A destination: the directory, s3://bucket/"
                                            "prefix or gs://bucket/prefix, that holds "
                                            "bundles.")],
    max_bundles: Annotated[
        int | None, typer.Option("--max-bundles", min=1, help="Verify at most N bundles.")
    ] = None,
    max_bytes: Annotated[
        str | None, typer.Option("--max-bytes", metavar="SIZE",
                                 help="Read at most about SIZE (such as 50GiB); a bundle larger "
                                 "than that is still verified when it is first in line.")
    ] = None,
    allowed_signers: AllowedSignersOption = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option("--metrics-file", help="Write the audit's metrics in Prometheus text "
                     "format to PATH, atomically (for node_exporter's textfile collector)."),
    ] = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Verify in full the bundles of DEST that are due: never verified first, then the least
    recently verified, within the budget. Each result is a new record under
    DEST/.crdb-archive/fixity/; no bundle is touched.

    Exit 0 all sound, 1 a bundle is damaged (or, with --allowed-signers, not validly signed),
    2 bad input, 3 storage error (a bundle left unchecked), 130 interrupted.
    """
    from crdb_archive.cli_tables import audit_lines  # noqa: PLC0415
    from crdb_archive.jobs.audit import Budget, parse_size, run_audit  # noqa: PLC0415
    from crdb_archive.jobs.destination import open_destination  # noqa: PLC0415

    _json_mode(json_output)
    _forget_passphrase()
    budget = Budget(max_bundles, parse_size(max_bytes, "--max-bytes") if max_bytes is not None
                    else None)
    allowed = _allowed_signers(allowed_signers)
    destination = open_destination(dest, endpoint_url=endpoint_url)
    quiet = not json_output and not ui.stderr_is_terminal()  # cron mail wants lines, not bars
    try:
        with ui.progress_reporter(quiet=quiet) as progress:
            report = run_audit(destination, budget, allowed=allowed, progress=progress,
                               metrics_file=metrics_file)
    finally:
        destination.close()
    _emit(report.to_json(), audit_lines(report), json_output)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


# --- scheduled jobs ------------------------------------------------------------------------------


@app.command("run")
def run_command(
    spec: Annotated[Path, typer.Argument(help="The job spec (TOML); see archive-specs/.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and what retention would delete; "
                           "change nothing.")
    ] = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option("--metrics-file", help="Write the run's metrics in Prometheus text format "
                     "to PATH, atomically (for node_exporter's textfile collector)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor fill the download cache in "
                           "this run, whatever the spec's cache_dir says.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON event per line on stdout.")
    ] = False,
) -> None:
    """Run the archive job SPEC: archive new backups, verify them, apply retention.

    Exit 0 all good, 1 a bundle failed verification, 2 invalid spec or bad input, 3 storage,
    network or another run holding the lock, 130 interrupted; the most severe when several
    steps failed (1, then 3, then 2).
    """
    from crdb_archive.jobs import JobEvent, load_spec, run_job  # noqa: PLC0415

    _json_mode(json_output)
    _State.json_lines = json_output
    try:
        job = load_spec(spec)
    except CrdbArchiveError as error:
        # One line per mistake, and with --json one event per line, as the run itself reports.
        shown = ([(f"{spec}: {p}", p) for p in error.problems]
                 if isinstance(error, InvalidJobSpec) else [(str(error), str(error))])
        for line, message in shown:
            ui.error_line(line)
            if json_output:
                _job_event(JobEvent("error", "", {"step": "spec", "spec": str(spec),
                                                  "message": message,
                                                  "exit_code": int(error.exit_code)}), True)
        raise typer.Exit(error.exit_code) from None
    finally:
        _forget_passphrase()  # the spec has read it
    if no_cache:
        job = dataclasses.replace(job, use_cache=False)
    quiet = not json_output and not ui.stderr_is_terminal()  # cron mail wants lines, not bars
    with ui.progress_reporter(quiet=quiet) as progress:
        report = run_job(job, dry_run=dry_run, metrics_file=metrics_file, progress=progress,
                         on_event=lambda event: _job_event(event, json_output))
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _job_event(event: JobEvent, json_output: bool) -> None:
    if json_output:
        sys.stdout.write(event.to_line() + "\n")
        sys.stdout.flush()
        return
    e = event.fields
    if event.event == "warning":
        ui.warning_line(e["message"])
    elif event.event == "error":
        ui.error_line(e["message"])
    else:
        text = _job_text(event.event, e)
        if text:
            ui.line(text)


def _job_text(kind: str, e: dict[str, Any]) -> str | None:
    if kind == "plan":
        verb = "would archive" if e["dry_run"] else "to archive"
        text = (f"plan: {len(e['to_archive'])} {verb}, {len(e['archived'])} already archived, "
                f"{len(e['skipped']) + len(e.get('open_chains', []))} skipped; {e['source']} -> "
                f"{e['destination']}")
        lock = e.get("object_lock")
        if lock and lock["bundles"]:
            lock_verb = "would lock" if e["dry_run"] else "locks"
            text += (f"\nplan: {lock_verb} {count(lock['bundles'], 'new bundle')} in "
                     f"{lock['mode']} mode until {lock['retain_until']}")
        return text
    if kind == "skip":
        return f"skip {e['bundle'] or e['backup']}: {e['reason']}"
    if kind == "archive":
        if not e["created"]:
            return f"already archived: {e['bundle']}"
        if e.get("kind") == "export":
            rows = sum(e["tables"].values())
            return (f"archived {e['bundle']}: {len(e['tables'])} table(s), {rows} rows as of "
                    f"{e['as_of'] or 'the whole output'}, {e['files']} files, {e['bytes']} "
                    f"bytes, {e['seconds']:.1f} s")
        return (f"archived {e['bundle']}: CockroachDB {e['version']}, {e['files']} files, "
                f"{e['bytes']} bytes, {e['seconds']:.1f} s")
    if kind == "verify":
        verdict = "OK" if e["ok"] else f"DAMAGED: {e['problems'][0]}"
        return f"verified {e['bundle']} ({e['mode']}): {verdict}"
    if kind == "retention":
        if "reason" in e:
            return f"retention: {e['reason']}"
        plan = "" if e["applied"] else " (dry run)"
        return f"retention: keep {e['keep']}, delete {e['delete']} of {e['considered']}{plan}"
    if kind == "keep":
        return f"keep {e['bundle']}: {', '.join(e['reasons'])}"
    if kind == "delete":
        if e.get("resumed"):
            return f"finished deleting {e['bundle']} (a delete an earlier run started)"
        return f"{'would delete' if e['dry_run'] else 'deleted'} {e['bundle']}"
    if kind == "audit":
        verdict = "OK" if e["ok"] else f"DAMAGED: {e['problems'][0]}"
        return f"audited {e['bundle']}: {verdict}"
    if kind == "audit_skip":
        return f"audit passed by {e['bundle']}: {e['reason']}"
    if kind == "audited":
        return (f"audit: {e['checked']} checked, {e['damaged']} damaged, {e['skipped']} "
                f"skipped, {e['remaining']} left for later runs, {e['never_verified']} never "
                "verified")
    if kind == "done":
        return (f"done: exit {e['exit_code']}; {e['bundles_written']} bundle(s) written "
                f"({e['bytes_written']} bytes), {e['bundles_deleted']} deleted, "
                f"{e['failures']} failure(s), {e['warnings']} warning(s), "
                f"{e['seconds']:.1f} s")
    return None


# --- cold storage --------------------------------------------------------------------------------


@app.command("restore-request")
def restore_request(
    bundle: Annotated[str, typer.Argument(help="A bundle in object storage: "
                                               "s3://bucket/prefix/name or "
                                               "azure-blob://container/prefix/name (a bundle "
                                               "directory), or .../name.tar; gs:// too.")],
    days: Annotated[int, typer.Option("--days", help="How long the restored copies stay "
                                      "readable (S3; Azure rehydrates for good).")],
    tier: Annotated[
        str, typer.Option("--tier", help="Standard, Bulk (cheapest, slowest) or Expedited "
                          "(GLACIER only); on Azure, Expedited is High priority and the "
                          "others Standard.")
    ] = "Standard",
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Ask the store to make a bundle's archived objects readable (S3: restore from GLACIER /
    DEEP_ARCHIVE; Azure: rehydrate from the Archive tier to Hot), so it can be verified or
    its binary retrieved; run it again to see what is still pending. Cloud Storage reads every
    storage class as it is: nothing there needs a restore.

    Exit 0 every object readable, 1 restores still pending, 2 bad input, 3 storage failure.
    """
    from crdb_archive.storage.restore import request_bundle_restore  # noqa: PLC0415

    _json_mode(json_output)
    with ui.progress_reporter() as progress:
        report = request_bundle_restore(bundle, days, tier, endpoint_url, progress=progress)
    lines = [
        f"{report.bundle}: {len(report.requested)} restore(s) requested, "
        f"{len(report.in_progress)} in progress, {report.available} restored, "
        f"{report.not_needed} need no restore",
    ]
    if not report.cold_storage:
        lines = [f"{report.bundle}: no restore needed: this store reads every storage class "
                 f"as it is ({report.not_needed} objects)"]
    elif report.pending:
        lines.append(f"still pending ({len(report.pending)}), not readable yet:")
        lines += [f"  {key}" for key in report.pending]
    else:
        lines.append("every object is readable now")
    _emit(report.to_json(), lines, json_output)
    if report.pending:
        raise typer.Exit(ExitCode.NO)


# --- entry point ---------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Raised as our own exception, not KeyboardInterrupt, so that the CLI framework does not
    # turn it into a generic abort, and every ``finally`` on the way out still removes staging
    # files. Only the first signal stops: a second one (an impatient Ctrl-C, a supervisor that
    # repeats SIGTERM) must not cut that cleanup short; SIGKILL remains for that.
    if _State.interrupted or _State.reporting:
        return
    _State.interrupted = f"interrupted by {signal.Signals(signum).name}"
    raise Interrupted(_State.interrupted)


def _unraisable(event: sys.UnraisableHookArgs) -> None:
    # An interrupt raised while a worker thread is being started can leave CPython's thread
    # bookkeeping to complain from that thread as it exits; after an interrupt that is noise
    # on top of the one-line message, not news. So is a ResourceWarning about the socket of a
    # connection that broke mid-body, which a cloud SDK drops without closing (Python hides
    # those unless warnings are turned on): the read that used it was resumed or reported.
    if _State.interrupted or isinstance(event.exc_value, ResourceWarning):
        return
    sys.__unraisablehook__(event)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the one place where errors become messages and exit codes."""
    # main may run more than once in a process (tests do)
    _State.json = _State.json_lines = _State.reporting = False
    _State.interrupted = None
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _unraisable
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Not standalone: click hands usage errors to us instead of printing its usage text,
        # so that they are one line too, and a JSON object with --json.
        code = app(args=args, prog_name="crdb-archive", standalone_mode=False)
    except Interrupted as stop:  # not a CrdbArchiveError: nothing below may treat it as data
        _fail(str(stop), stop.exit_code)
    except Exception as error:
        # A library that polls for signals itself (DuckDB does, mid-query) answers our
        # interrupt with an error of its own: the interrupt is still the outcome.
        if _State.interrupted:
            _fail(_State.interrupted, Interrupted.exit_code)
        if isinstance(error, CrdbArchiveError):
            _fail(str(error), error.exit_code)
        if not isinstance(error, click_errors.ClickException):
            raise
        if isinstance(error, click_errors.NoArgsIsHelpError):
            _State.reporting = True
            sys.stderr.write(error.format_message() + "\n")
            sys.exit(int(ExitCode.BAD_INPUT))
        # usage errors, bad values: bad input
        _State.json = _State.json or "--json" in args
        _State.json_lines = _State.json_lines or (_State.json and args[:1] == ["run"])
        _fail(_usage_message(error), ExitCode.BAD_INPUT)
    except SystemExit:  # the command's own outcome
        _State.reporting = True
        raise
    _State.reporting = True
    sys.exit(code if isinstance(code, int) else 0)


def _usage_message(error: click_errors.ClickException) -> str:
    """Click's complaint as one line, and where to read the command's usage."""
    ctx = getattr(error, "ctx", None)  # usage errors know their command; others do not
    where = ctx.command_path if ctx is not None else "crdb-archive"
    return f"{' '.join(error.format_message().split())} (see `{where} --help`)"


def _fail(message: str, code: ExitCode) -> NoReturn:
    _State.reporting = True
    ui.error_line(message)
    if _State.json:
        payload = {"error": message, "exit_code": int(code)}
        if _State.json_lines:
            sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        else:
            ui.print_json(payload)
    sys.exit(int(code))


if __name__ == "__main__":
    main()

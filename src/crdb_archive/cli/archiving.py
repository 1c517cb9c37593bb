"""Commands that read a source and make a bundle of it: inspect, archive."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from crdb_archive.cli import options as opt
from crdb_archive.cli.render import (
    backup_lines,
    bundle_lines,
    emit,
    export_source_lines,
    warn_all,
)
from crdb_archive.text import count, files

if TYPE_CHECKING:
    from crdb_archive.archive import ArchiveRequest, ArchiveResult
    from crdb_archive.export.archive import ExportArchiveResult

SOURCE_HELP = ("A backup directory, a backup collection, or a bundle (directory or .tar); or "
               "an s3://, gs:// or azure-blob:// bucket/prefix, as given to BACKUP INTO.")


def _configure_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="SOURCE", help=SOURCE_HELP)
    parser.add_argument("--subdir", metavar="SUBDIR",
                        help="In a collection, the full backup to inspect (default: the one "
                             "LATEST names).")
    opt.add_endpoint(parser)
    opt.add_keys(parser)
    opt.add_json(parser)


def _inspect(args: argparse.Namespace) -> int:
    from crdb_archive import ui  # noqa: PLC0415
    from crdb_archive.backup import inspect_backup  # noqa: PLC0415
    from crdb_archive.bundle.summary import looks_like_bundle, summarize_bundle  # noqa: PLC0415
    from crdb_archive.sources import shows_export  # noqa: PLC0415

    path, endpoint_url = args.path, args.endpoint_url
    if looks_like_bundle(path, endpoint_url=endpoint_url):
        summary = summarize_bundle(path, endpoint_url=endpoint_url)
        emit(summary, bundle_lines(summary), args.json)
        return 0
    if args.subdir is None and shows_export(path, endpoint_url=endpoint_url):
        from crdb_archive.export.source_summary import summarize_export_source  # noqa: PLC0415

        found = summarize_export_source(path, endpoint_url=endpoint_url)
        emit(found, export_source_lines(found), args.json)
        return 0
    keys = opt.load_keys(args.encryption_passphrase_file, args.kms)
    with ui.progress_reporter(quiet=args.json or not ui.stderr_is_terminal()) as progress:
        info = inspect_backup(path, subdir=args.subdir, endpoint_url=endpoint_url,
                              progress=progress, keys=keys, with_left_out=True)
    info.close()
    payload = info.to_json()
    warn_all(info.warnings, args.json)
    emit(payload, backup_lines(payload), args.json)
    return 0


def _configure_archive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="A backup (directory, collection), or a changefeed's "
                             "cloud-storage sink or EXPORT output; a path, file://, s3://, "
                             "gs:// or azure-blob:// URI.")
    parser.add_argument("--dest", required=True, metavar="DIR|URI",
                        help="Directory, s3://bucket/prefix, gs://bucket/prefix or "
                             "azure-blob://container/prefix that receives the bundle "
                             "(required).")
    parser.add_argument("--kind", default="auto", type=opt.choice("auto", "backup", "export"),
                        metavar="auto|backup|export",
                        help="auto (tell by the file names; the default), backup, or export "
                             "(changefeed or EXPORT output).")
    _configure_backup_options(parser.add_argument_group("backups"))
    _configure_export_options(parser.add_argument_group("changefeed and EXPORT output"))
    opt.add_platforms(parser)
    opt.add_mirror(parser)
    opt.add_cache(parser)
    parser.add_argument("--name", metavar="NAME",
                        help="Bundle name (default: derived from the cluster, the backup's end "
                             "time and the version).")
    parser.add_argument("--format", dest="fmt", default="dir", type=opt.choice("dir", "tar"),
                        metavar="dir|tar",
                        help="dir (a directory; the default) or tar (one uncompressed tar).")
    opt.add_endpoint(parser)
    _configure_retention(parser.add_argument_group("object storage"))
    opt.add_keys(parser.add_argument_group("encrypted backups"))
    opt.add_sign_key(parser)
    opt.add_json(parser)


def _configure_backup_options(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--subdir", metavar="SUBDIR",
                        help="In a collection, the full backup to archive (default: the one "
                             "LATEST names).")
    parser.add_argument("--version", default="auto", metavar="auto|RELEASE",
                        help="auto (read it from the backup; the default) or the exact release "
                             "that took the backup, such as v23.1.11.")
    parser.add_argument("--force-version", action="store_true",
                        help="Archive --version even though the backup records another one.")
    parser.add_argument("--with-incrementals", action="store_true",
                        help="Include the full backup's incremental backups.")


def _configure_export_options(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--schema", type=Path, metavar="FILE",
                        help="The SHOW CREATE ALL TABLES output of the exported tables "
                             "(required for exports).")
    parser.add_argument("--as-of", default="latest", metavar="latest|TIMESTAMP",
                        help="The snapshot time, latest (the newest RESOLVED "
                             "timestamp; the default) or one RESOLVED timestamp (wall.logical "
                             "or its 33 digits).")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="Archive a changefeed with lost files anyway, recording "
                             "the gaps.")
    parser.add_argument("--table", metavar="TABLE",
                        help="The table an EXPORT is of, when the schema file has "
                             "several.")


def _configure_retention(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--storage-class", metavar="CLASS",
        help="Storage class of the payload: for s3:// STANDARD, STANDARD_IA, GLACIER_IR, "
             "GLACIER, DEEP_ARCHIVE, ...; for gs:// STANDARD, NEARLINE, COLDLINE, ARCHIVE; for "
             "azure-blob:// the access tiers Hot, Cool, Cold, Archive.")
    parser.add_argument(
        "--object-lock-mode", type=opt.choice("GOVERNANCE", "COMPLIANCE"),
        metavar="GOVERNANCE|COMPLIANCE",
        help="Retention lock. s3://: Object Lock (the bucket must have it); gs://: object "
             "retention, Unlocked or Locked (or a bucket retention policy that keeps objects "
             "as long); azure-blob://: an unlocked or locked immutability policy, on a "
             "container with version-level immutability. Needs --object-lock-days or "
             "--retain-until.")
    parser.add_argument("--object-lock-days", type=opt.whole_number, metavar="N",
                        help="Keep the bundle locked N days.")
    parser.add_argument("--retain-until", type=opt.utc_date, metavar="DATE",
                        help="Keep the bundle locked until this date, YYYY-MM-DD (UTC).")


def _refuse_contradictions(args: argparse.Namespace) -> None:
    opt.refuse_together(args, "--no-cache", "--cache-dir", "--no-cache uses no cache")
    opt.refuse_together(args, "--object-lock-days", "--retain-until",
                        "give the lock's length one way")
    if args.force_version and args.version == "auto":
        raise opt.UsageError("--force-version needs --version RELEASE: with auto there is no "
                             "other version to force", "crdb-archive archive")


def _archive(args: argparse.Namespace) -> int:
    _refuse_contradictions(args)
    from crdb_archive import ui  # noqa: PLC0415
    from crdb_archive.archive import archive_source  # noqa: PLC0415
    from crdb_archive.export.options import ExportOptions  # noqa: PLC0415

    request = _request(args)
    export = ExportOptions(schema=args.schema, as_of=args.as_of, allow_gaps=args.allow_gaps,
                           table=args.table)
    with ui.progress_reporter() as progress:
        result = archive_source(request, kind=args.kind, export=export, progress=progress)
    warn_all(result.warnings, args.json)
    emit(result.to_json(), _archive_lines(result), args.json)
    return 0


def _request(args: argparse.Namespace) -> ArchiveRequest:
    """The archive request the options describe; raises BadInput for a signing key or keys
    that do not load."""
    from crdb_archive.archive import ArchiveRequest  # noqa: PLC0415
    from crdb_archive.binaries import DEFAULT_PLATFORM  # noqa: PLC0415
    from crdb_archive.storage.places import endpoints_for  # noqa: PLC0415

    source_endpoint, dest_endpoint = endpoints_for(args.endpoint_url, args.source, args.dest)
    signing = opt.load_sign_key(args.sign_key)
    return ArchiveRequest(
        source=args.source, dest=args.dest, subdir=args.subdir, version=args.version,
        force_version=args.force_version, platforms=tuple(args.platform or [DEFAULT_PLATFORM]),
        mirror=args.mirror, name=args.name, format=args.fmt,
        with_incrementals=args.with_incrementals, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, source_endpoint_url=source_endpoint,
        dest_endpoint_url=dest_endpoint, storage_class=args.storage_class,
        object_lock_mode=args.object_lock_mode, object_lock_days=args.object_lock_days,
        retain_until=args.retain_until,
        keys=opt.load_keys(args.encryption_passphrase_file, args.kms),
        sign_key=signing,
    )


def _archive_lines(result: ArchiveResult | ExportArchiveResult) -> list[str]:
    from crdb_archive.archive import ArchiveResult  # noqa: PLC0415

    state = "written" if result.created else "already archived, verified, unchanged"
    if isinstance(result, ArchiveResult):
        lines = [f"  CockroachDB {result.version}, binaries for {', '.join(result.platforms)}"]
    else:
        when = f"as of {result.as_of.iso()}" if result.as_of else "taken as a whole"
        lines = [f"  {result.source_kind} output ({result.format}), snapshot {when}"]
        lines += [f"  {name}: {count(rows, 'row')}" for name, rows in result.tables.items()]
    return [f"{result.bundle}: {state}", *lines,
            f"  payload: {files(result.files, result.bytes)}, "
            f"{result.seconds:.1f} s"]


COMMANDS = {
    "inspect": opt.Command(
        "inspect",
        "What SOURCE holds: a backup's version and restore targets, an export, a bundle.",
        "For a backup: which CockroachDB version took it, and into which versions it can be "
        "restored. For changefeed or EXPORT output: its files, tables and RESOLVED timestamps. "
        "For a bundle: what it holds, without re-hashing it (use `verify` for that). An "
        "encrypted backup tells its version only with its key (passphrase or KMS).",
        [(0, "read"), (1, "a damaged manifest or bundle"),
         (2, "not a backup, an unreadable manifest, or a wrong key"),
         (3, "storage or KMS error (also: objects waiting in GLACIER / DEEP_ARCHIVE)")],
        _configure_inspect, _inspect),
    "archive": opt.Command(
        "archive",
        "Archive a backup, changefeed or EXPORT output into a verifiable (signed) bundle.",
        "The bundle of SOURCE is written in --dest; with --sign-key, signed. An encrypted "
        "backup's version is read with its key (passphrase or KMS); the bundle records how it "
        "is encrypted, never a key. The options of one kind of source are refused for the "
        "other.",
        [(0, "written (or already there and sound)"),
         (1, "checksum mismatch, a damaged bundle of that name, or changefeed output that is "
             "incomplete or damaged"),
         (2, "bad input: contradictory options, a wrong key, an unusable signing key, a "
             "source that is neither kind or both"),
         (3, "network, storage or KMS failure")],
        _configure_archive, _archive),
}

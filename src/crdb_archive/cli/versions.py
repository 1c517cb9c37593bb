"""Commands about CockroachDB versions and their binaries: compat, plan, releases,
fetch-binary."""

from __future__ import annotations

import argparse
from pathlib import Path

from crdb_archive.cli import options as opt
from crdb_archive.cli.render import emit, fetch_lines, majors_lines, releases_lines, warn_all
from crdb_archive.errors import ExitCode

BAD_VERSION = (2, "bad input: a version that is not one, or one the release index does not "
                  "know")


def _configure_compat(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backup_version", metavar="BACKUP_VERSION",
                        help="Version that took the backup, such as v23.1.11 or v23.1.")
    parser.add_argument("target_version", metavar="TARGET_VERSION",
                        help="Version of the cluster to restore into.")
    opt.add_json(parser)


def _compat(args: argparse.Namespace) -> int:
    from crdb_archive.versions import compatibility  # noqa: PLC0415

    answer = compatibility(args.backup_version, args.target_version)
    verdict = "supported" if answer.supported else "NOT supported"
    warn_all(answer.warnings, args.json)
    emit(answer.to_json(), [f"{verdict}: {answer.reason}"], args.json)
    return 0 if answer.supported else int(ExitCode.NO)


def _configure_plan(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backup_version", metavar="BACKUP_VERSION",
                        help="Version that took the backup.")
    parser.add_argument("--target", required=True, metavar="VERSION",
                        help="Version of the target cluster (required).")
    opt.add_json(parser)


def _plan(args: argparse.Namespace) -> int:
    from crdb_archive.versions import restore_plan  # noqa: PLC0415

    result = restore_plan(args.backup_version, args.target)
    warn_all(result.warnings, args.json)
    lines = [" -> ".join(m.name for m in result.majors)]
    lines += [f"{i}. {step}" for i, step in enumerate(result.steps, 1)]
    emit(result.to_json(), lines, args.json)
    return 0


def _configure_releases(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("major", nargs="?", metavar="MAJOR",
                        help="A major version such as v23.1: list its releases.")
    opt.add_json(parser, 'Print one JSON object on stdout: {"releases": [...]}.')


def _releases(args: argparse.Namespace) -> int:
    from crdb_archive.versions import release_index, releases_listing  # noqa: PLC0415

    listing = releases_listing(release_index(), args.major)
    rows = listing["releases"]
    emit(listing, majors_lines(rows) if args.major is None else releases_lines(rows), args.json)
    return 0


def _configure_fetch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", metavar="VERSION", help="The release, such as v23.1.11.")
    parser.add_argument("--to", required=True, type=Path, metavar="DIR",
                        help="Directory for the archives, created if missing (required).")
    opt.add_platforms(parser)
    opt.add_mirror(parser)
    opt.add_cache(parser)
    parser.add_argument(
        "--extract", action="store_true",
        help="Also extract each archive into --to; run `cockroach version` only when its "
             "checksum came from https://binaries.cockroachdb.com and the binary runs on this "
             "host (else print how to run it by hand).")
    opt.add_replace(parser)
    opt.add_json(parser)


def _fetch(args: argparse.Namespace) -> int:
    opt.refuse_together(args, "--no-cache", "--cache-dir", "--no-cache uses no cache")
    from crdb_archive import ui  # noqa: PLC0415
    from crdb_archive.binaries import DEFAULT_PLATFORM, fetch_binaries  # noqa: PLC0415

    opt.forget_passphrase()
    with ui.progress_reporter() as progress:
        result = fetch_binaries(
            args.version, args.platform or [DEFAULT_PLATFORM], args.to, mirror=args.mirror,
            cache_dir=args.cache_dir, use_cache=not args.no_cache, extract=args.extract,
            replace=args.replace, progress=progress,
        )
    warn_all(result.warnings, args.json)
    emit(result.to_json(), fetch_lines(result), args.json)
    return int(ExitCode.NO) if result.version_mismatch else 0


COMMANDS = {
    "compat": opt.Command(
        "compat",
        "Can a backup taken by BACKUP_VERSION be restored into a TARGET_VERSION cluster?",
        "Answers from the release index embedded in this release of crdb-archive, which "
        "follows CockroachDB's documented upgrade and restore rules.",
        [(0, "supported"), (1, "not supported"), BAD_VERSION],
        _configure_compat, _compat),
    "plan": opt.Command(
        "plan",
        "The steps to bring a backup taken by BACKUP_VERSION into a --target cluster.",
        "When the target is too far ahead for a direct restore, the plan restores into an "
        "intermediate major, upgrades the cluster, and backs up again.",
        [(0, "a plan printed"), (1, "no way there: the target is older than the backup"),
         BAD_VERSION],
        _configure_plan, _plan),
    "releases": opt.Command(
        "releases",
        "Major versions with support and binary-removal dates, or the releases of MAJOR.",
        "",
        [(0, "listed"), BAD_VERSION],
        _configure_releases, _releases),
    "fetch-binary": opt.Command(
        "fetch-binary",
        "Download, verify and check the official CockroachDB archives of VERSION.",
        "Each archive comes from the mirror, or from the download cache when it holds it for "
        "that mirror, and is checked against its published SHA-256.",
        [(0, "fetched and verified"),
         (1, "checksum mismatch, not a release archive, or the binary reports another "
             "version"),
         (2, "bad input (an existing file or folder in --to included)"),
         (3, "network or storage failure")],
        _configure_fetch, _fetch),
}

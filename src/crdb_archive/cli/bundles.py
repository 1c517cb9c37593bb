"""Commands on one bundle or a few: verify, binary, load."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crdb_archive.cli import options as opt
from crdb_archive.cli.render import emit, verify_lines
from crdb_archive.errors import BadInput, ExitCode
from crdb_archive.text import count

BUNDLE_HELP = "A bundle: directory or .tar, local, s3://, gs:// or azure-blob://."


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundles", nargs="+", metavar="BUNDLE",
                        help="One or more bundles: directory or .tar, local, s3://, gs:// or "
                             "azure-blob://.")
    parser.add_argument("--fast", action="store_true",
                        help="Presence, sizes and Payload-Oxum only: no digests.")
    parser.add_argument("--all-digests", action="store_true",
                        help="Check SHA-256 as well as BLAKE3.")
    parser.add_argument("--decrypt-check", action="store_true",
                        help="Also authenticate every encrypted backup file with the backup's "
                             "key (each AES-GCM tag): proves the files are as CockroachDB "
                             "wrote them.")
    opt.add_allowed_signers(parser)
    opt.add_endpoint(parser)
    opt.add_keys(parser)
    opt.add_json(parser)


def _verify(args: argparse.Namespace) -> int:
    opt.refuse_together(args, "--fast", "--all-digests",
                        "--fast checks no digest at all")
    opt.refuse_together(args, "--fast", "--decrypt-check",
                        "--decrypt-check reads every encrypted file")
    if not args.decrypt_check and (args.encryption_passphrase_file is not None or args.kms):
        raise opt.UsageError("--encryption-passphrase-file and --kms are for --decrypt-check",
                             "crdb-archive verify")
    from crdb_archive import ui  # noqa: PLC0415

    keys = opt.load_keys(args.encryption_passphrase_file, args.kms) if args.decrypt_check \
        else None
    allowed = opt.load_allowed_signers(args.allowed_signers)
    checks: dict[str, Any] = {"fast": args.fast, "all_digests": args.all_digests,
              "endpoint_url": args.endpoint_url, "decrypt_check": args.decrypt_check,
              "keys": keys, "allowed": allowed}
    if len(args.bundles) == 1:
        from crdb_archive.bundle.verify import verify_bundle  # noqa: PLC0415

        with ui.progress_reporter() as progress:
            report = verify_bundle(args.bundles[0], progress=progress, **checks)
        emit(report.to_json(), verify_lines(report), args.json)
        return 0 if report.ok else int(ExitCode.NO)
    from crdb_archive.bundle.verify_many import verify_bundles  # noqa: PLC0415

    with ui.progress_reporter() as progress:
        many = verify_bundles(args.bundles, progress=progress, **checks)
    lines: list[str] = []
    for outcome in many.outcomes:
        if outcome.report is not None:
            lines += verify_lines(outcome.report)
        else:
            lines.append(f"{outcome.to_json()['bundle']}: NOT CHECKED: {outcome.error}")
    summary = many.to_json()
    lines.append(f"{count(len(many.outcomes), 'bundle')}: "
                 f"{summary['checked'] - summary['damaged']} OK, {summary['damaged']} damaged, "
                 f"{summary['unchecked']} not checked")
    emit(summary, lines, args.json)
    return int(many.exit_code)


def _configure_binary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help=BUNDLE_HELP)
    parser.add_argument("--to", required=True, type=Path, metavar="DIR",
                        help="Directory to unpack the binary into (required).")
    parser.add_argument("--platform", default="auto", metavar="auto|PLATFORM",
                        help="auto (this host; the default) or a platform such as "
                             "linux-amd64.")
    opt.add_replace(parser)
    opt.add_allowed_signers(parser)
    opt.add_endpoint(parser)
    opt.add_json(parser)


def _binary(args: argparse.Namespace) -> int:
    from crdb_archive import ui  # noqa: PLC0415
    from crdb_archive.bundle.retrieve import retrieve_binary  # noqa: PLC0415

    opt.forget_passphrase()
    allowed = opt.load_allowed_signers(args.allowed_signers)
    with ui.progress_reporter() as progress:
        result = retrieve_binary(args.bundle, args.to, platform=args.platform,
                                 replace=args.replace, endpoint_url=args.endpoint_url,
                                 progress=progress, allowed=allowed)
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
    emit(result.to_json(), lines, args.json)
    return int(ExitCode.NO) if check.matches is False else 0


def _configure_load(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE",
                        help="An export bundle: directory or .tar, local, s3://, gs:// or "
                             "azure-blob://.")
    parser.add_argument("--into", required=True, metavar="CONNINFO",
                        help="The PostgreSQL database, as a libpq connection string "
                             "(postgresql://user@host:5432/db; required). The password goes in "
                             "PGPASSWORD or ~/.pgpass: one given here is refused, as the "
                             "process list shows it.")
    parser.add_argument("--schema-name", metavar="SCHEMA",
                        help="Create every table in this schema instead of the schemas the "
                             "tables had.")
    parser.add_argument("--replace", action="store_true",
                        help="Drop and reload tables (and enum types) of the bundle that "
                             "already exist.")
    opt.add_endpoint(parser)
    opt.add_json(parser)


def _load(args: argparse.Namespace) -> int:
    from crdb_archive import ui  # noqa: PLC0415
    from crdb_archive.bundle.reader import open_bundle  # noqa: PLC0415
    from crdb_archive.export.load import load_export  # noqa: PLC0415
    from crdb_archive.export.pg import Server  # noqa: PLC0415

    if Server(args.into).params.get("password"):
        # Already in the process list by now: refusing keeps it from becoming a habit.
        raise BadInput("--into carries a password, which every user of this machine can read "
                       "in the process list; give it in PGPASSWORD, ~/.pgpass or a "
                       "service file instead")
    reader = open_bundle(args.bundle, endpoint_url=args.endpoint_url)
    with ui.progress_reporter() as progress:
        result = load_export(reader, args.into, schema_name=args.schema_name,
                             replace=args.replace, progress=progress)
    rows = sum(result.tables.values())
    lines = [f"{reader.display} -> {result.database}: {count(len(result.tables), 'table')}, "
             f"{count(rows, 'row')}, every count as the bundle records"]
    lines += [f"  {name}: {count(n, 'row')}" for name, n in result.tables.items()]
    lines += [f"  note: {note}" for note in result.notes]
    emit(result.to_json(), lines, args.json)
    return 0


COMMANDS = {
    "verify": opt.Command(
        "verify",
        "Check bundles: complete, every digest right, binaries as published, signed.",
        "Every file is checked against the manifests, the binaries against their published "
        "checksums; with --allowed-signers, the bundle must be signed by a key it lists. "
        "With several bundles each is checked and reported, and --json prints "
        '{"ok", "bundles": [...]} (one bundle: its report alone); the exit code is the most '
        "severe of theirs, in the order 1, 3, 2. --fast cannot go with "
        "--all-digests or --decrypt-check; the key options need --decrypt-check.",
        [(0, "valid"),
         (1, "damaged, incomplete or (with --allowed-signers) not validly signed"),
         (2, "not a bundle, a wrong key, or contradictory options"),
         (3, "storage or KMS error")],
        _configure_verify, _verify),
    "binary": opt.Command(
        "binary",
        "Unpack the bundle's CockroachDB binary for restoring, checked against the bundle.",
        "Without --allowed-signers the binary is not run: the bundle's own records cannot "
        "vouch for its code, and the output says how to run `cockroach version` by hand. With "
        "it, the bundle must be signed by a key the file lists; the signer vouches for the "
        "archive, and `cockroach version` is run to confirm the release (where it runs on "
        "this host).",
        [(0, "unpacked"),
         (1, "the bundle lacks the platform, its archive is damaged, it is not validly signed "
             "(--allowed-signers) or the binary reports another release"),
         (2, "not a bundle, or bad input (an existing folder in --to included)"),
         (3, "storage error")],
        _configure_binary, _binary),
    "load": opt.Command(
        "load",
        "Load an export bundle into PostgreSQL and check every table's row count.",
        "Creates the bundle's tables, COPYs every snapshot in, adds the constraints and "
        "indexes, and checks every table's row count against the bundle; all in one "
        "transaction.",
        [(0, "loaded"), (1, "the bundle is damaged or a count differs"),
         (2, "not an export bundle, a table already there (without --replace), or refused by "
             "PostgreSQL"),
         (3, "database or storage failure")],
        _configure_load, _load),
}

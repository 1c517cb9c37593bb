"""Commands over a whole destination: list, audit."""

from __future__ import annotations

import argparse

from crdb_archive.cli import options as opt
from crdb_archive.cli.render import emit

DEST_HELP = ("A destination that holds bundles: a directory, s3://bucket/prefix, "
             "gs://bucket/prefix or azure-blob://container/prefix.")


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", metavar="DEST", help=DEST_HELP)
    parser.add_argument("--restorable-into", metavar="VERSION",
                        help="For each bundle: does it restore into a cluster on VERSION (such "
                             "as v24.3) directly, through which chain of majors, or not at "
                             "all.")
    opt.add_endpoint(parser)
    opt.add_json(parser)


def _list(args: argparse.Namespace) -> int:
    from crdb_archive.cli_tables import catalog_lines  # noqa: PLC0415
    from crdb_archive.jobs.catalog import build_catalog, restore_route  # noqa: PLC0415
    from crdb_archive.jobs.destination import open_destination  # noqa: PLC0415
    from crdb_archive.versions import release_index  # noqa: PLC0415

    opt.forget_passphrase()
    target = (release_index().parse(args.restorable_into) if args.restorable_into is not None
              else None)
    destination = open_destination(args.dest, endpoint_url=args.endpoint_url)
    try:
        catalog = build_catalog(destination)
    finally:
        destination.close()
    routes = None if target is None else {
        entry.key: restore_route(entry, target) for entry in catalog.entries}
    payload = catalog.to_json(destination.display, routes, target)
    emit(payload, catalog_lines(catalog, routes, args.restorable_into), args.json)
    return 0


def _configure_audit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", metavar="DEST", help=DEST_HELP)
    parser.add_argument("--max-bundles", type=opt.positive_number, metavar="N",
                        help="Verify at most N bundles.")
    parser.add_argument("--max-bytes", metavar="SIZE",
                        help="Read at most about SIZE (such as 50GiB); a bundle larger than "
                             "that is still verified when it is first in line.")
    opt.add_allowed_signers(parser)
    opt.add_metrics_file(parser, "audit")
    opt.add_endpoint(parser)
    opt.add_json(parser)


def _audit(args: argparse.Namespace) -> int:
    from crdb_archive import ui  # noqa: PLC0415
    from crdb_archive.cli_tables import audit_lines  # noqa: PLC0415
    from crdb_archive.jobs.audit import Budget, parse_size, run_audit  # noqa: PLC0415
    from crdb_archive.jobs.destination import open_destination  # noqa: PLC0415

    opt.forget_passphrase()
    budget = Budget(args.max_bundles, parse_size(args.max_bytes, "--max-bytes")
                    if args.max_bytes is not None else None)
    allowed = opt.load_allowed_signers(args.allowed_signers)
    destination = open_destination(args.dest, endpoint_url=args.endpoint_url)
    quiet = not args.json and not ui.stderr_is_terminal()  # cron mail wants lines, not bars
    try:
        with ui.progress_reporter(quiet=quiet) as progress:
            report = run_audit(destination, budget, allowed=allowed, progress=progress,
                               metrics_file=args.metrics_file)
    finally:
        destination.close()
    emit(report.to_json(), audit_lines(report), args.json)
    return int(report.exit_code)


COMMANDS = {
    "list": opt.Command(
        "list",
        "Every bundle in DEST: kind, version, time, size, class, lock, last verification.",
        "For each bundle: kind, version, backup time, size, form, storage class, lock, signing "
        "key and last verification. Reads tag files only, never a payload.",
        [(0, "listed"), (2, "bad input"), (3, "storage error")],
        _configure_list, _list),
    "audit": opt.Command(
        "audit",
        "Verify in full the bundles of DEST that are due, within a budget; record results.",
        "Bundles never verified come first, then the least recently verified. Each result is "
        "a new record under DEST/.crdb-archive/fixity/; no bundle is touched.",
        [(0, "all sound"),
         (1, "a bundle is damaged (or, with --allowed-signers, not validly signed)"),
         (2, "bad input"), (3, "storage error (a bundle left unchecked)")],
        _configure_audit, _audit),
}

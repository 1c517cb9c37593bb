"""Cold storage: restore-request."""

from __future__ import annotations

import argparse

from crdb_archive.cli import options as opt
from crdb_archive.cli.render import emit
from crdb_archive.errors import ExitCode
from crdb_archive.text import count


def _configure_restore_request(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE",
                        help="A bundle in object storage: s3://bucket/prefix/name or "
                             "azure-blob://container/prefix/name (a bundle directory), or "
                             ".../name.tar; gs:// too.")
    parser.add_argument("--days", required=True, type=opt.whole_number, metavar="N",
                        help="How long the restored copies stay readable (S3; Azure "
                             "rehydrates for good; required).")
    parser.add_argument("--tier", default="Standard", metavar="Standard|Bulk|Expedited",
                        help="Standard (the default), Bulk (cheapest, slowest) or Expedited "
                             "(GLACIER only); on Azure, Expedited is High priority and the "
                             "others Standard.")
    opt.add_endpoint(parser)
    opt.add_json(parser)


def _restore_request(args: argparse.Namespace) -> int:
    from crdb_archive import ui  # noqa: PLC0415
    from crdb_archive.storage.restore import request_bundle_restore  # noqa: PLC0415

    with ui.progress_reporter() as progress:
        report = request_bundle_restore(args.bundle, args.days, args.tier, args.endpoint_url,
                                        progress=progress)
    lines = [
        f"{report.bundle}: {count(len(report.requested), 'restore')} requested, "
        f"{len(report.in_progress)} in progress, {report.available} restored, "
        f"{report.not_needed} need no restore",
    ]
    if not report.cold_storage:
        lines = [f"{report.bundle}: no restore needed: this store reads every storage class "
                 f"as it is ({count(report.not_needed, 'object')})"]
    elif report.pending:
        lines.append(f"still pending, not readable yet ({count(len(report.pending), 'object')}):")
        lines += [f"  {key}" for key in report.pending]
    else:
        lines.append("every object is readable now")
    emit(report.to_json(), lines, args.json)
    return int(ExitCode.NO) if report.pending else 0


COMMANDS = {
    "restore-request": opt.Command(
        "restore-request",
        "Make a bundle's archived objects readable (S3 Glacier restore, Azure rehydrate).",
        "Asks the store to make them readable, so that the bundle can be verified or its "
        "binary retrieved. S3: restore from GLACIER / DEEP_ARCHIVE; Azure: rehydrate from "
        "the Archive tier to Hot. Run it again to see what is still pending. Cloud Storage "
        "reads every storage class as it is: nothing there needs a restore.",
        [(0, "every object readable"), (1, "restores still pending"), (2, "bad input"),
         (3, "storage failure")],
        _configure_restore_request, _restore_request),
}

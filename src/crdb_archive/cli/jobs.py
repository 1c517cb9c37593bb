"""The scheduled job: run."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from crdb_archive import ui
from crdb_archive.cli import options as opt
from crdb_archive.cli.render import job_text
from crdb_archive.errors import CrdbArchiveError, InvalidJobSpec

if TYPE_CHECKING:
    from crdb_archive.jobs import JobEvent


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, metavar="SPEC",
                        help="The job spec (TOML); see archive-specs/.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Print the plan and what retention would delete; change nothing.")
    opt.add_metrics_file(parser, "run")
    parser.add_argument("--no-cache", action="store_true",
                        help="Neither read nor fill the download cache in this run, whatever "
                             "the spec's cache_dir says.")
    opt.add_json(parser, "One JSON event per line on stdout (JSON Lines).")


def _run(args: argparse.Namespace) -> int:
    from crdb_archive.jobs import JobEvent, load_spec, run_job  # noqa: PLC0415

    try:
        job = load_spec(args.spec)
    except CrdbArchiveError as error:
        # One line per mistake, and with --json one event per line, as the run itself reports.
        shown = ([(f"{args.spec}: {p}", p) for p in error.problems]
                 if isinstance(error, InvalidJobSpec) else [(str(error), str(error))])
        for line, message in shown:
            ui.error_line(line)
            if args.json:
                _job_event(JobEvent("error", "", {"step": "spec", "spec": str(args.spec),
                                                  "message": message,
                                                  "exit_code": int(error.exit_code)}), True)
        return int(error.exit_code)
    finally:
        opt.forget_passphrase()  # the spec has read it
    if args.no_cache:
        job = dataclasses.replace(job, use_cache=False)
    quiet = not args.json and not ui.stderr_is_terminal()  # cron mail wants lines, not bars
    with ui.progress_reporter(quiet=quiet) as progress:
        report = run_job(job, dry_run=args.dry_run, metrics_file=args.metrics_file,
                         progress=progress,
                         on_event=lambda event: _job_event(event, args.json))
    return int(report.exit_code)


def _job_event(event: JobEvent, json_output: bool) -> None:
    if json_output:
        ui.line(event.to_line())
        return
    e = event.fields
    if event.event == "warning":
        ui.warning_line(e["message"])
    elif event.event == "error":
        ui.error_line(e["message"])
    else:
        text = job_text(event.event, e)
        if text:
            ui.line(text)


COMMANDS = {
    "run": opt.Command(
        "run",
        "Run the archive job SPEC: archive new backups, verify them, apply retention.",
        "Made for cron, systemd timers and Kubernetes CronJobs: one run at a time per "
        "destination (a lock in the destination), a line or a JSON event per step, and an "
        "exit code for the run as a whole: when several steps failed, the most severe (1, then "
        "3, then 2).",
        [(0, "all good"), (1, "a bundle failed verification"),
         (2, "invalid spec or bad input"),
         (3, "storage, network, or another run holding the lock")],
        _configure_run, _run, json_lines=True),
}

"""Scheduled archive jobs: a TOML spec per job, and runs that are safe to repeat.

A job is declared once (``archive-specs/README.md`` documents the spec) and run unattended:
:func:`load_spec` validates a spec completely, :func:`run_job` archives every selected backup
that has no bundle yet, verifies what it wrote, applies retention, and reports each step as a
:class:`JobEvent` and the whole run as a :class:`JobReport`.
"""

from crdb_archive.jobs.destination import (
    Checked,
    Destination,
    StoredBundle,
    open_destination,
)
from crdb_archive.jobs.lock import JobLock, LockHolder
from crdb_archive.jobs.metrics import RunMetrics, render_metrics, write_metrics
from crdb_archive.jobs.retention import Decision, RetentionItem, decide
from crdb_archive.jobs.run import EventCallback, Failure, JobEvent, JobReport, run_job
from crdb_archive.jobs.spec import JobSpec, ObjectLock, Retention, load_spec, validate_spec

__all__ = [
    "Checked",
    "Decision",
    "Destination",
    "EventCallback",
    "Failure",
    "JobEvent",
    "JobLock",
    "JobReport",
    "JobSpec",
    "LockHolder",
    "ObjectLock",
    "Retention",
    "RetentionItem",
    "RunMetrics",
    "StoredBundle",
    "decide",
    "load_spec",
    "open_destination",
    "render_metrics",
    "run_job",
    "validate_spec",
    "write_metrics",
]

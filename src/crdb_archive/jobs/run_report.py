"""What a run says: its events, one JSON object each, and its report with the failures.

A failure in one step does not stop the run; it is recorded here, and the run ends with the
most severe exit code of its failures (1 damaged, then 3 world, then 2 bad input).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crdb_archive.errors import CrdbArchiveError, ExitCode, most_severe

if TYPE_CHECKING:
    from crdb_archive.jobs.audit import AuditReport


@dataclass(frozen=True)
class JobEvent:
    """One step of a run, as one JSON object: ``{"event": ..., "job": ..., ...}``."""

    # plan, skip, archive, verify, retention, keep, delete, audit, audit_skip, audited, warning,
    # error, done
    event: str
    job: str
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "job": self.job, **self.fields}

    def to_line(self) -> str:
        """The event as one line of JSON (JSON Lines), without the newline."""
        return json.dumps(self.to_json(), separators=(",", ":"))


EventCallback = Callable[[JobEvent], None]


def ignore_events(event: JobEvent) -> None:
    """An event callback that drops every event."""


@dataclass(frozen=True)
class Failure:
    step: str
    message: str
    exit_code: ExitCode


@dataclass
class JobReport:
    job: str
    dry_run: bool
    seconds: float = 0.0
    written: list[str] = field(default_factory=list)
    bytes_written: int = 0
    deleted: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: int = 0
    audit: AuditReport | None = None

    @property
    def exit_code(self) -> ExitCode:
        return most_severe([f.exit_code for f in self.failures])

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.exit_code),
            "dry_run": self.dry_run,
            "bundles_written": len(self.written),
            "bytes_written": self.bytes_written,
            "bundles_deleted": len(self.deleted),
            "failures": len(self.failures),
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            **({} if self.audit is None else {
                "bundles_audited": len(self.audit.checked),
                "bundles_damaged": self.audit.damaged,
            }),
        }


class Reporter:
    """The events and the report of one run of job ``job``."""

    def __init__(self, job: str, dry_run: bool, on_event: EventCallback) -> None:
        self.job = job
        self.on_event = on_event
        self.report = JobReport(job, dry_run)

    def emit(self, event: str, **fields: Any) -> None:
        self.on_event(JobEvent(event, self.job, fields))

    def warn(self, code: str, message: str, **fields: Any) -> None:
        self.report.warnings += 1
        self.emit("warning", code=code, message=message, **fields)

    def fail(self, step: str, error: CrdbArchiveError, **fields: Any) -> None:
        self.report.failures.append(Failure(step, str(error), error.exit_code))
        self.emit("error", step=step, message=str(error), exit_code=int(error.exit_code),
                  **fields)

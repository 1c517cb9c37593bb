"""The audit step of a run: the destination's bundles verified within [audit]'s budget."""

from __future__ import annotations

from crdb_archive.bundle.writer import Guard
from crdb_archive.errors import CrdbArchiveError, DamagedBundle, JobLockLost, StorageError
from crdb_archive.jobs.audit import Audited, NotAudited, audit_destination
from crdb_archive.jobs.destination import Destination
from crdb_archive.jobs.run_report import Reporter
from crdb_archive.jobs.spec import JobSpec
from crdb_archive.progress import ProgressCallback
from crdb_archive.text import count


def audit_step(out: Reporter, destination: Destination, spec: JobSpec,
               progress: ProgressCallback, guard: Guard) -> None:
    """Audit as [audit] says (nothing without it), reporting each bundle through ``out`` and
    the audit's report in ``out.report``. Raises JobLockLost (the whole run must stop)."""
    audit = spec.audit
    if audit is None:
        return
    try:
        report = audit_destination(destination, audit.budget, allowed=audit.allowed_signers,
                                   progress=progress,
                                   on_outcome=lambda outcome: _on_outcome(out, outcome),
                                   guard=guard)
    except JobLockLost:
        raise
    except CrdbArchiveError as error:
        out.fail("audit", error)
        return
    out.report.audit = report
    summary = report.to_json()
    out.emit("audited", checked=len(report.checked), damaged=report.damaged,
             skipped=len(report.skipped), unchecked=len(report.unchecked),
             remaining=report.remaining, bytes_read=report.bytes_read,
             never_verified=report.never_verified,
             oldest_verification=summary["oldest_verification"], stale_records=report.stale)


def _on_outcome(out: Reporter, outcome: Audited | NotAudited) -> None:
    if isinstance(outcome, Audited):
        out.emit("audit", bundle=outcome.name, location=outcome.location, ok=outcome.ok,
                 mode=outcome.mode, problems=outcome.problems, bytes=outcome.bytes_read,
                 record=outcome.record)
        if not outcome.ok:
            out.fail("audit", DamagedBundle(
                f"bundle {outcome.location} failed its audit "
                f"({count(len(outcome.problems), 'problem')}, first: {outcome.problems[0]})"),
                bundle=outcome.name)
        if outcome.record_error:
            out.fail("audit", StorageError(outcome.record_error), bundle=outcome.name)
    elif outcome.kind == "skipped":
        out.emit("audit_skip", bundle=outcome.name, location=outcome.location,
                 reason=outcome.reason)
    else:
        out.fail("audit", StorageError(f"{outcome.location} was not audited: "
                                       f"{outcome.reason}"), bundle=outcome.name)

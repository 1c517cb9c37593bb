"""Run an archive job: plan, archive what has no bundle yet, verify it, apply retention, audit.

A run is safe to repeat: a backup whose bundle exists is not archived again, a run killed
midway leaves only hidden staging that the next run clears, and deletes go through a hidden
name. A failure in one backup does not stop the others; the run reports every failure and
ends with the most severe exit code (1 damaged, then 3 world, then 2 bad input). Nothing is
deleted by a run that had any failure.

Two things stop a run at once instead of being reported as a step that failed: an interrupt
(``Interrupted`` propagates to the CLI, which alone reports it, after the lock is released and
staging removed), and a lost job lock (checked before every delete and every publish: another
run may be working in the same destination now).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crdb_archive.archive import ArchiveRequest, archive_backup
from crdb_archive.bundle.writer import Guard, unguarded
from crdb_archive.errors import (
    CrdbArchiveError,
    DamagedBundle,
    ExitCode,
    Interrupted,
    JobAlreadyRunning,
    JobLockLost,
    StorageError,
    most_severe,
)
from crdb_archive.export.archive import ExportOptions, archive_export
from crdb_archive.jobs.audit import (
    Audited,
    AuditReport,
    NotAudited,
    audit_destination,
    render_audit_metrics,
)
from crdb_archive.jobs.destination import Destination, StoredBundle, open_destination
from crdb_archive.jobs.fixity import record_of, write_record
from crdb_archive.jobs.metrics import RunMetrics, write_metrics
from crdb_archive.jobs.plan import Candidate, advisories, select_backups
from crdb_archive.jobs.retention import Decision, RetentionItem, decide
from crdb_archive.jobs.spec import JobSpec
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.sources import SourceKind, source_key
from crdb_archive.storage.base import WriteOptions
from crdb_archive.text import count
from crdb_archive.times import utc_iso

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners
    from crdb_archive.bundle.verify import VerifyReport

# Retention items of backups not archived yet; stored bundles are keyed by their location.
_PLANNED = "planned:"
_NO_RULES = "no [retention] section: every bundle is kept"



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


def run_job(
    spec: JobSpec,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    on_event: EventCallback = ignore_events,
    progress: ProgressCallback = no_progress,
    metrics_file: Path | None = None,
    destination: Destination | None = None,
) -> JobReport:
    """Run the job ``spec`` once and report how it went; every step is also an event.

    Failures are reported in the result, not raised: its ``exit_code`` is the most severe.
    ``now`` fixes the clock retention counts from. ``metrics_file`` is written unless this is
    a dry run or another run holds the lock. Raises Interrupted when stopped by a signal,
    with the lock released and (``metrics_file``) exit code 130 recorded for monitoring.
    """
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    run = _Run(spec, dry_run, now, on_event, progress)
    locked_out = False
    opened: Destination | None = None
    try:
        target = destination or (opened := open_destination(
            spec.destination, endpoint_url=spec.destination_endpoint_url))
        if dry_run:
            run.execute(target)
        else:
            with target.lock(spec.name) as lock:
                if lock.taken_over is not None:
                    run.warn("lock", f"the previous run ({lock.taken_over.describe()}) ended "
                             "without releasing the job lock; taking it over")
                run.guard = lock.ensure_held
                run.execute(target)
    except JobAlreadyRunning as error:
        locked_out = True
        run.fail("lock", error)
    except JobLockLost as error:
        run.fail("lock", error)
    except CrdbArchiveError as error:
        run.fail("run", error)
    except Interrupted:
        # Not a failure of a step, and reported by the CLI alone; a stopped run is still news
        # for monitoring (a supervisor that keeps killing the job at its time limit).
        if metrics_file is not None and not dry_run:
            run.report.seconds = time.monotonic() - started
            with contextlib.suppress(StorageError):  # the interrupt is what gets reported
                _write_metrics(metrics_file, run.report, ExitCode.INTERRUPTED)
        raise
    finally:
        if opened is not None:
            opened.close()
    report = run.report
    report.seconds = time.monotonic() - started
    if metrics_file is not None and not dry_run and not locked_out:
        try:
            _write_metrics(metrics_file, report, report.exit_code)
        except CrdbArchiveError as error:
            run.fail("metrics", error)
    run.emit("done", **report.to_json())
    return report


def _write_metrics(path: Path, report: JobReport, code: ExitCode) -> None:
    # The audit's own gauges follow the run's, when this run audited.
    extra = ("" if report.audit is None
             else render_audit_metrics(report.audit, ("job", report.job)))
    write_metrics(path, RunMetrics(
        job=report.job, finished=time.time(), exit_code=int(code),
        bundles_written=len(report.written), bytes_written=report.bytes_written,
        bundles_deleted=len(report.deleted), duration_seconds=report.seconds,
        failures=len(report.failures), warnings=report.warnings,
    ), extra=extra)



class _Run:
    def __init__(self, spec: JobSpec, dry_run: bool, now: dt.datetime,
                 on_event: EventCallback, progress: ProgressCallback) -> None:
        self.spec = spec
        self.dry_run = dry_run
        self.now = now
        self.on_event = on_event
        self.progress = progress
        self.report = JobReport(spec.name, dry_run)
        self.damaged: set[str] = set()
        self.source = spec.source_display  # until a backup tells how archive names it
        self.kind: SourceKind = "backup"
        # Called before every delete and publish with what is about to change; raises
        # JobLockLost when the job lock is no longer this run's.
        self.guard: Guard = unguarded

    # --- events ---------------------------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        self.on_event(JobEvent(event, self.spec.name, fields))

    def warn(self, code: str, message: str, **fields: Any) -> None:
        self.report.warnings += 1
        self.emit("warning", code=code, message=message, **fields)

    def fail(self, step: str, error: CrdbArchiveError, **fields: Any) -> None:
        self.report.failures.append(Failure(step, str(error), error.exit_code))
        self.emit("error", step=step, message=str(error), exit_code=int(error.exit_code),
                  **fields)

    # --- the run --------------------------------------------------------------------------

    def execute(self, destination: Destination) -> None:
        # Before anything is written or deleted: a lock on a bucket without Object Lock is a
        # mistake in the spec, and a dry run must say so too.
        destination.check_write_options(self.write_options())
        if not self.dry_run:
            for name in destination.clear_leftovers(guard=self.guard):
                self.emit("delete", bundle=name, resumed=True, dry_run=False)
        selection = select_backups(self.spec)
        self.kind = selection.kind
        self.source = selection.source or self.spec.source_display
        for unreadable in selection.unreadable:
            self.fail("inspect", unreadable.error, backup=unreadable.label)
        existing = destination.bundles()
        for bundle in existing:
            if bundle.problem is not None:
                self.warn("unreadable_bundle", f"{bundle.location}: {bundle.problem}; it is "
                          "kept, and no retention rule applies to it", bundle=bundle.name)
        candidates = selection.candidates
        releases = [c.release for c in candidates if c.release is not None]
        for advisory in advisories(releases, removal_days=self.spec.binary_removal_days,
                                   today=self.now.date()):
            self.warn(advisory.code, advisory.message, release=advisory.release)

        names = {b.name: b for b in existing}
        for name in destination.incomplete():
            if name not in {c.name for c in candidates}:  # those are rewritten below
                self.warn("incomplete_bundle", f"{name} in {destination.display} is "
                          "incomplete (an interrupted upload, or one in progress): it is left "
                          "alone; delete it once no upload is running", bundle=name)
        # A bundle found under any of a candidate's names (this version's, or the one an
        # earlier version gave it) is that backup's: it is never archived a second time.
        archived: list[tuple[Candidate, StoredBundle]] = []
        pending: list[Candidate] = []
        for candidate in candidates:
            found = next((names[n] for n in candidate.names if n in names), None)
            if found is None:
                pending.append(candidate)
            else:
                archived.append((candidate, found))
        planned = self._planned_retention(self._mine(existing), pending)
        # With backups = "all", a backup the rules would not keep would be archived and
        # deleted again on every run: it is not archived at all.
        skipped = {int(d.item.key.removeprefix(_PLANNED)) for d in planned
                   if not d.keep and d.item.key.startswith(_PLANNED)}
        to_archive = [c for i, c in enumerate(pending) if i not in skipped]
        stored = [d for d in planned if not d.item.key.startswith(_PLANNED)]
        self.emit(
            "plan", dry_run=self.dry_run, source=self.spec.source_display,
            destination=destination.display,
            selected=len(candidates) + len(selection.unreadable),
            to_archive=[c.name or c.label for c in to_archive],
            archived=[b.name for _, b in archived],
            skipped=[c.name or c.label for i, c in enumerate(pending) if i in skipped],
            open_chains=selection.open_chains,
            to_delete=[d.item.name for d in stored if not d.keep],
            **self._locks(len(to_archive)),
        )
        for subdir in selection.open_chains:
            reason = ("its incremental chain is still open: it is archived once the next full "
                      "backup closes it (incrementals = \"closed\")")
            self.emit("skip", backup=subdir, bundle=None, reason=reason)
            if self.spec.backups not in ("all", "latest"):
                self.warn("skipped", f"backup {subdir} is not archived yet: {reason}",
                          backup=subdir)
        for i in sorted(skipped):
            reason = "the retention rules would delete its bundle at once"
            self.emit("skip", backup=pending[i].label, bundle=pending[i].name, reason=reason)
            if self.spec.backups != "all":
                # The spec names this very backup: that it is left out must not go unnoticed.
                self.warn("skipped", f"backup {pending[i].label} is not archived: {reason} "
                          "(its backup is older than the rules keep)", backup=pending[i].label)
        if self.dry_run:
            if self.spec.retention is None:
                self.emit("retention", applied=False, reason=_NO_RULES)
            else:
                self._report_decisions(stored, {b.location: b for b in existing}, None)
            return
        for candidate, bundle in archived:
            self._check_existing(destination, bundle, candidate)
        for candidate in to_archive:
            self._archive(destination, candidate)
        self._retention(destination)
        self._audit(destination)

    def _locks(self, bundles: int) -> dict[str, Any]:
        """What the plan locks: how many new bundles, in which mode, until when."""
        options = self.write_options()
        if options is None or options.lock_mode is None or options.retain_until is None:
            return {}
        return {"object_lock": {"mode": options.lock_mode, "bundles": bundles,
                                "retain_until": utc_iso(options.retain_until,
                                                        timespec="seconds")}}

    def _mine(self, bundles: list[StoredBundle]) -> list[StoredBundle]:
        """This job's bundles: those whose description names this job's source."""
        # Compared by source_key: the host that recorded a local source, or the way an earlier
        # version wrote it down, does not make it another source.
        ours = source_key(self.source)
        return [b for b in bundles
                if b.problem is None and b.source is not None and source_key(b.source) == ours]

    def _planned_retention(
        self, mine: list[StoredBundle], pending: list[Candidate]
    ) -> list[Decision]:
        items = [RetentionItem(b.location, b.name, b.time, b.retain_until) for b in mine]
        items += [RetentionItem(f"{_PLANNED}{i}", c.name or c.label, c.time)
                  for i, c in enumerate(pending)]
        return decide(items, self.spec.retention, self.now)

    def write_options(self) -> WriteOptions | None:
        """The storage class and Object Lock the spec asks for, as of this run."""
        lock = self.spec.object_lock
        retain = None
        if lock is not None:
            # Real time, not the retention clock: S3 counts the retention from the upload.
            retain = lock.retain_until or (
                dt.datetime.now(dt.UTC) + dt.timedelta(days=lock.days or 0))
        options = WriteOptions(self.spec.storage_class, lock.mode if lock else None, retain)
        return None if options.is_default else options

    def _check_existing(self, destination: Destination, bundle: StoredBundle,
                        candidate: Candidate) -> None:
        self.emit("archive", backup=candidate.label, bundle=bundle.name,
                  location=bundle.location, created=False)
        sound = self._verify(destination, bundle.name, bundle.location, full=False)
        if sound and bundle.problem is not None:
            # Its name is derived from this job's backup: a run that died before recording
            # what it wrote left it so.
            self._remember(destination, candidate, bundle.name, bundle.location,
                           bundle.form, bundle.version or candidate.release, self.kind)

    def _remember(self, destination: Destination, candidate: Candidate, name: str,
                  location: str, form: Literal["dir", "tar"], version: str | None,
                  kind: Literal["backup", "export"], signing_key: str | None = None) -> None:
        self.guard(f"recording {name}")
        try:
            destination.remember(StoredBundle(
                name=name, location=location, form=form, time=candidate.time,
                source=self.source, version=version, created=self.now, kind=kind,
                signing_key=signing_key))
        except CrdbArchiveError as error:
            self.fail("record", error, bundle=name)

    def _archive(self, destination: Destination, candidate: Candidate) -> None:
        if self.kind == "export":
            self._archive_export(destination, candidate)
            return
        spec = self.spec
        lock = spec.object_lock
        request = ArchiveRequest(
            source=spec.source, dest=destination.archive_target, subdir=candidate.subdir,
            version=spec.release, force_version=spec.force_version, platforms=spec.platforms,
            mirror=spec.mirror, format=spec.format, with_incrementals=spec.with_incrementals,
            cache_dir=spec.cache_dir, use_cache=spec.use_cache,
            source_endpoint_url=spec.source_endpoint_url,
            dest_endpoint_url=spec.destination_endpoint_url,
            storage_class=spec.storage_class,
            object_lock_mode=lock.mode if lock else None,
            object_lock_days=lock.days if lock else None,
            retain_until=lock.retain_until if lock else None,
            keys=spec.keys,
            sign_key=spec.sign_key,
        )
        try:
            result = archive_backup(request, progress=self.progress, guard=self.guard)
        except JobLockLost:
            raise  # not this backup's failure: the whole run must stop
        except CrdbArchiveError as error:
            self.fail("archive", error, backup=candidate.label, bundle=candidate.name)
            return
        location = str(result.bundle)
        self.emit("archive", backup=candidate.label, bundle=result.name, location=location,
                  created=result.created, version=result.version, files=result.files,
                  bytes=result.bytes, seconds=round(result.seconds, 3),
                  warnings=result.warnings)
        if result.created:
            self.report.written.append(result.name)
            self.report.bytes_written += result.bytes
        self._remember(destination, candidate, result.name, location, spec.format,
                       result.version, "backup", self._signing_key(result.created))
        self._verify(destination, result.name, location, full=True)

    def _archive_export(self, destination: Destination, candidate: Candidate) -> None:
        spec = self.spec
        lock = spec.object_lock
        options = spec.export
        if options is None:  # select_backups names no candidate then
            raise RuntimeError("an export candidate without source.schema")
        request = ArchiveRequest(
            source=spec.source, dest=destination.archive_target, format=spec.format,
            source_endpoint_url=spec.source_endpoint_url,
            dest_endpoint_url=spec.destination_endpoint_url,
            storage_class=spec.storage_class,
            object_lock_mode=lock.mode if lock else None,
            object_lock_days=lock.days if lock else None,
            retain_until=lock.retain_until if lock else None,
            sign_key=spec.sign_key,
        )
        try:
            result = archive_export(
                request, ExportOptions(schema=options.schema, as_of=options.as_of,
                                       allow_gaps=options.allow_gaps, table=options.table),
                progress=self.progress, guard=self.guard)
        except JobLockLost:
            raise  # not this output's failure: the whole run must stop
        except CrdbArchiveError as error:
            self.fail("archive", error, backup=candidate.label, bundle=candidate.name)
            return
        location = str(result.bundle)
        self.emit("archive", backup=candidate.label, bundle=result.name, location=location,
                  created=result.created, kind="export",
                  as_of=result.as_of.decimal() if result.as_of else None,
                  tables=result.tables, files=result.files, bytes=result.bytes,
                  seconds=round(result.seconds, 3), warnings=result.warnings)
        if result.created:
            self.report.written.append(result.name)
            self.report.bytes_written += result.bytes
        self._remember(destination, candidate, result.name, location, spec.format, None,
                       "export", self._signing_key(result.created))
        self._verify(destination, result.name, location, full=True)

    def _signing_key(self, created: bool) -> str | None:
        """The key a bundle this run archived is signed with (one found already there keeps
        whatever it had, which its job record does not claim)."""
        return self.spec.sign_key.fingerprint if created and self.spec.sign_key else None

    def _verify(self, destination: Destination, name: str, location: str, *,
                full: bool) -> bool:
        """A full check of what this run wrote, presence and sizes of what it found; whether
        the bundle is sound."""
        try:
            checked = destination.check(location, full=full, progress=self.progress,
                                        allowed=self._allowed() if full else None)
        except CrdbArchiveError as error:
            self.damaged.add(name)
            self.fail("verify", error, bundle=name)
            return False
        report = checked.report
        if full:
            # The check of what this run wrote counts as the bundle's first verification.
            self._record(destination, name, location, report, checked.limited)
        problems = [str(p) for p in report.problems]
        extra = {"limited": checked.limited} if checked.limited else {}
        self.emit("verify", bundle=name, location=location, ok=report.ok, mode=report.mode,
                  problems=problems, **extra)
        if full and checked.limited:
            self.warn("cold_storage", checked.limited, bundle=name)
        if not report.ok:
            self.damaged.add(name)
            self.fail("verify", DamagedBundle(
                f"bundle {location} failed verification ({count(len(problems), 'problem')}, first: "
                f"{problems[0]}); move it aside and run again"), bundle=name)
        return report.ok

    def _allowed(self) -> AllowedSigners | None:
        """The keys a bundle must be signed by: [audit]'s allowed signers, else this job's own
        key (so a signature that does not verify is caught as it is written)."""
        if self.spec.audit is not None and self.spec.audit.allowed_signers is not None:
            return self.spec.audit.allowed_signers
        if self.spec.sign_key is None:
            return None
        from crdb_archive.bundle.signature import AllowedSigners, Signer  # noqa: PLC0415

        own = Signer((self.spec.name,), self.spec.sign_key.public_blob, None, None, None)
        return AllowedSigners((own,), f"the key of job {self.spec.name}")

    def _record(self, destination: Destination, name: str, location: str,
                report: VerifyReport, limited: str | None) -> None:
        try:
            key = destination.key_of(location)
            write_record(destination.storage, record_of(key, report, "run", limited=limited))
        except CrdbArchiveError as error:
            self.fail("fixity", error, bundle=name)

    def _audit(self, destination: Destination) -> None:
        audit = self.spec.audit
        if audit is None:
            return

        def on_outcome(outcome: Audited | NotAudited) -> None:
            if isinstance(outcome, Audited):
                self.emit("audit", bundle=outcome.name, location=outcome.location,
                          ok=outcome.ok, mode=outcome.mode, problems=outcome.problems,
                          bytes=outcome.bytes_read, record=outcome.record)
                if not outcome.ok:
                    self.fail("audit", DamagedBundle(
                        f"bundle {outcome.location} failed its audit "
                        f"({count(len(outcome.problems), 'problem')}, first: "
                        f"{outcome.problems[0]})"), bundle=outcome.name)
                if outcome.record_error:
                    self.fail("audit", StorageError(outcome.record_error), bundle=outcome.name)
            elif outcome.kind == "skipped":
                self.emit("audit_skip", bundle=outcome.name, location=outcome.location,
                          reason=outcome.reason)
            else:
                self.fail("audit", StorageError(f"{outcome.location} was not audited: "
                                                f"{outcome.reason}"), bundle=outcome.name)

        try:
            report = audit_destination(destination, audit.budget,
                                       allowed=audit.allowed_signers, progress=self.progress,
                                       on_outcome=on_outcome, guard=self.guard)
        except JobLockLost:
            raise
        except CrdbArchiveError as error:
            self.fail("audit", error)
            return
        self.report.audit = report
        summary = report.to_json()
        self.emit("audited", checked=len(report.checked), damaged=report.damaged,
                  skipped=len(report.skipped), unchecked=len(report.unchecked),
                  remaining=report.remaining, bytes_read=report.bytes_read,
                  never_verified=report.never_verified,
                  oldest_verification=summary["oldest_verification"],
                  stale_records=report.stale)

    def _retention(self, destination: Destination) -> None:
        rules = self.spec.retention
        if rules is None:
            self.emit("retention", applied=False, reason=_NO_RULES)
            return
        if self.report.failures:
            failures = count(len(self.report.failures), "failure")
            self.emit("retention", applied=False,
                      reason=f"{failures} in this run: nothing is deleted")
            return
        bundles = self._mine(destination.bundles())
        written = set(self.report.written)
        items = [
            RetentionItem(
                b.location, b.name, b.time, b.retain_until,
                protected="written by this run" if b.name in written else (
                    "failed verification in this run" if b.name in self.damaged else None),
            )
            for b in bundles
        ]
        decisions = decide(items, rules, self.now)
        self._report_decisions(decisions, {b.location: b for b in bundles}, destination)

    def _report_decisions(self, decisions: list[Decision], bundles: dict[str, StoredBundle],
                          destination: Destination | None) -> None:
        """Keep and delete events; ``destination`` None only plans (a dry run)."""
        doomed = [d for d in decisions if not d.keep]
        self.emit("retention", applied=destination is not None,
                  rules=self.spec.retention.to_json() if self.spec.retention else None,
                  considered=len(decisions), keep=len(decisions) - len(doomed),
                  delete=len(doomed))
        for decision in decisions:
            bundle = bundles[decision.item.key]
            if decision.keep:
                self.emit("keep", bundle=bundle.name, location=bundle.location,
                          time=utc_iso(bundle.time), reasons=list(decision.reasons))
                continue
            if bundle.locked(self.now):  # decide() keeps these; a second guard costs nothing
                continue
            if destination is not None:
                self.guard(f"deleting {bundle.name}")
                try:
                    destination.delete(bundle)
                except CrdbArchiveError as error:
                    self.fail("delete", error, bundle=bundle.name)
                    continue
                self.report.deleted.append(bundle.name)
            self.emit("delete", bundle=bundle.name, location=bundle.location,
                      time=utc_iso(bundle.time), dry_run=destination is None)


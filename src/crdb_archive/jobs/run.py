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
import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crdb_archive.archive import ArchiveRequest, archive_backup
from crdb_archive.bundle.writer import Guard, unguarded
from crdb_archive.errors import (
    CrdbArchiveError,
    ExitCode,
    Interrupted,
    JobAlreadyRunning,
    JobLockLost,
    StorageError,
)
from crdb_archive.export.options import ExportOptions
from crdb_archive.jobs.audit import (
    render_audit_metrics,
)
from crdb_archive.jobs.destination import Destination, StoredBundle, open_destination
from crdb_archive.jobs.metrics import RunMetrics, write_metrics
from crdb_archive.jobs.plan import Candidate, advisories, select_backups
from crdb_archive.jobs.retention import Decision, RetentionItem, decide
from crdb_archive.jobs.run_audit import audit_step
from crdb_archive.jobs.run_check import BundleCheck, Uploaded
from crdb_archive.jobs.run_report import (
    EventCallback,
    Failure,
    JobEvent,
    JobReport,
    Reporter,
    ignore_events,
)
from crdb_archive.jobs.spec import JobSpec
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.sources import SourceKind, source_key
from crdb_archive.storage.base import WriteOptions
from crdb_archive.text import count
from crdb_archive.times import utc_iso

__all__ = ["EventCallback", "Failure", "JobEvent", "JobReport", "ignore_events", "run_job"]
# Retention items of backups not archived yet; stored bundles are keyed by their location.
_PLANNED = "planned:"
_NO_RULES = "no [retention] section: every bundle is kept"



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
    try:
        locked_out = _run_locked(run, spec, dry_run, destination)
    except Interrupted:
        # Not a failure of a step, and reported by the CLI alone; a stopped run is still news
        # for monitoring (a supervisor that keeps killing the job at its time limit).
        if metrics_file is not None and not dry_run:
            run.report.seconds = time.monotonic() - started
            with contextlib.suppress(StorageError):  # the interrupt is what gets reported
                _write_metrics(metrics_file, run.report, ExitCode.INTERRUPTED)
        raise
    report = run.report
    report.seconds = time.monotonic() - started
    if metrics_file is not None and not dry_run and not locked_out:
        try:
            _write_metrics(metrics_file, report, report.exit_code)
        except CrdbArchiveError as error:
            run.fail("metrics", error)
    run.emit("done", **report.to_json())
    return report


def _run_locked(run: _Run, spec: JobSpec, dry_run: bool,
                destination: Destination | None) -> bool:
    """Execute the run under the job's lock (none for a dry run); whether another run held
    it. Failures are the run's; raises Interrupted."""
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
        run.fail("lock", error)
        return True
    except JobLockLost as error:
        run.fail("lock", error)
    except CrdbArchiveError as error:
        run.fail("run", error)
    finally:
        if opened is not None:
            opened.close()
    return False


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



@dataclass
class _Plan:
    """What a run does with its candidates: check those archived, archive the others (but
    those skipped), and what retention would do with the stored bundles."""

    archived: list[tuple[Candidate, StoredBundle]] = field(default_factory=list)
    to_archive: list[Candidate] = field(default_factory=list)
    skipped: list[Candidate] = field(default_factory=list)
    stored: list[Decision] = field(default_factory=list)


class _Run(Reporter):
    def __init__(self, spec: JobSpec, dry_run: bool, now: dt.datetime,
                 on_event: EventCallback, progress: ProgressCallback) -> None:
        super().__init__(spec.name, dry_run, on_event)
        self.spec = spec
        self.dry_run = dry_run
        self.now = now
        self.progress = progress
        self.checks = BundleCheck(self, spec, progress)
        self.damaged: set[str] = set()
        self.source = spec.source_display  # until a backup tells how archive names it
        self.kind: SourceKind = "backup"
        # Called before every delete and publish with what is about to change; raises
        # JobLockLost when the job lock is no longer this run's.
        self.guard: Guard = unguarded

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
        existing = self._existing(destination)
        self._advise(selection.candidates)
        self._warn_incomplete(destination, selection.candidates)
        plan = self._plan(selection.candidates, existing)
        self.emit(
            "plan", dry_run=self.dry_run, source=self.spec.source_display,
            destination=destination.display,
            selected=len(selection.candidates) + len(selection.unreadable),
            to_archive=[c.name or c.label for c in plan.to_archive],
            archived=[b.name for _, b in plan.archived],
            skipped=[c.name or c.label for c in plan.skipped],
            open_chains=selection.open_chains,
            to_delete=[d.item.name for d in plan.stored if not d.keep],
            **self._locks(len(plan.to_archive)),
        )
        self._report_skips(selection.open_chains, plan.skipped)
        if self.dry_run:
            if self.spec.retention is None:
                self.emit("retention", applied=False, reason=_NO_RULES)
            else:
                self._report_decisions(plan.stored, {b.location: b for b in existing}, None)
            return
        for candidate, bundle in plan.archived:
            self._check_existing(destination, bundle, candidate)
        for candidate in plan.to_archive:
            self._archive(destination, candidate)
        self._retention(destination)
        audit_step(self, destination, self.spec, self.progress, self.guard)

    def _existing(self, destination: Destination) -> list[StoredBundle]:
        """The bundles already there, with a warning for each that cannot be read."""
        existing = destination.bundles()
        for bundle in existing:
            if bundle.problem is not None:
                self.warn("unreadable_bundle", f"{bundle.location}: {bundle.problem}; it is "
                          "kept, and no retention rule applies to it", bundle=bundle.name)
        return existing

    def _advise(self, candidates: list[Candidate]) -> None:
        releases = [c.release for c in candidates if c.release is not None]
        for advisory in advisories(releases, removal_days=self.spec.binary_removal_days,
                                   today=self.now.date()):
            self.warn(advisory.code, advisory.message, release=advisory.release)

    def _warn_incomplete(self, destination: Destination, candidates: list[Candidate]) -> None:
        rewritten = {c.name for c in candidates}  # those are written again by this run
        for name in destination.incomplete():
            if name not in rewritten:
                self.warn("incomplete_bundle", f"{name} in {destination.display} is "
                          "incomplete (an interrupted upload, or one in progress): it is left "
                          "alone; delete it once no upload is running", bundle=name)

    def _plan(self, candidates: list[Candidate], existing: list[StoredBundle]) -> _Plan:
        # A bundle found under any of a candidate's names (this version's, or the one an
        # earlier version gave it) is that backup's: it is never archived a second time.
        names = {b.name: b for b in existing}
        plan = _Plan()
        pending: list[Candidate] = []
        for candidate in candidates:
            found = next((names[n] for n in candidate.names if n in names), None)
            if found is None:
                pending.append(candidate)
            else:
                plan.archived.append((candidate, found))
        planned = self._planned_retention(self._mine(existing), pending)
        # With backups = "all", a backup the rules would not keep would be archived and
        # deleted again on every run: it is not archived at all.
        skipped = {int(d.item.key.removeprefix(_PLANNED)) for d in planned
                   if not d.keep and d.item.key.startswith(_PLANNED)}
        plan.to_archive = [c for i, c in enumerate(pending) if i not in skipped]
        plan.skipped = [pending[i] for i in sorted(skipped)]
        plan.stored = [d for d in planned if not d.item.key.startswith(_PLANNED)]
        return plan

    def _report_skips(self, open_chains: list[str], skipped: list[Candidate]) -> None:
        for subdir in open_chains:
            reason = ("its incremental chain is still open: it is archived once the next full "
                      "backup closes it (incrementals = \"closed\")")
            self.emit("skip", backup=subdir, bundle=None, reason=reason)
            if self.spec.backups not in ("all", "latest"):
                self.warn("skipped", f"backup {subdir} is not archived yet: {reason}",
                          backup=subdir)
        for candidate in skipped:
            reason = "the retention rules would delete its bundle at once"
            self.emit("skip", backup=candidate.label, bundle=candidate.name, reason=reason)
            if self.spec.backups != "all":
                # The spec names this very backup: that it is left out must not go unnoticed.
                self.warn("skipped", f"backup {candidate.label} is not archived: {reason} "
                          "(its backup is older than the rules keep)", backup=candidate.label)

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
        sound = self._checked(bundle.name, self.checks.verify(
            destination, bundle.name, bundle.location, full=False))
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
        request = dataclasses.replace(
            self._request(destination), subdir=candidate.subdir, version=spec.release,
            force_version=spec.force_version, platforms=spec.platforms, mirror=spec.mirror,
            with_incrementals=spec.with_incrementals, cache_dir=spec.cache_dir,
            use_cache=spec.use_cache, keys=spec.keys)
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
        self._check_written(destination, result.name, location, Uploaded(
            result.receipts, result.tags_at, result.files, result.bytes))

    def _archive_export(self, destination: Destination, candidate: Candidate) -> None:
        spec = self.spec
        options = spec.export
        if options is None:  # select_backups names no candidate then
            raise RuntimeError("an export candidate without source.schema")
        request = self._request(destination)
        # Imported here: DuckDB and sqlglot are for jobs that archive exports.
        from crdb_archive.export.archive import archive_export  # noqa: PLC0415

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
        self._check_written(destination, result.name, location, Uploaded(
            result.receipts, result.tags_at, result.files, result.bytes))

    def _request(self, destination: Destination) -> ArchiveRequest:
        """What every archiving of this job asks for: source, destination, storage class,
        Object Lock and signing key."""
        spec = self.spec
        lock = spec.object_lock
        return ArchiveRequest(
            source=spec.source, dest=destination.archive_target, format=spec.format,
            source_endpoint_url=spec.source_endpoint_url,
            dest_endpoint_url=spec.destination_endpoint_url, storage_class=spec.storage_class,
            object_lock_mode=lock.mode if lock else None,
            object_lock_days=lock.days if lock else None,
            retain_until=lock.retain_until if lock else None, sign_key=spec.sign_key)

    def _signing_key(self, created: bool) -> str | None:
        """The key a bundle this run archived is signed with (one found already there keeps
        whatever it had, which its job record does not claim)."""
        return self.spec.sign_key.fingerprint if created and self.spec.sign_key else None

    def _check_written(self, destination: Destination, name: str, location: str,
                       upload: Uploaded) -> None:
        """The full check of what this run wrote (or found written by an earlier one): by the
        store's checksums of the upload where there are receipts, else read back."""
        self._checked(name, self.checks.written(destination, name, location, upload))

    def _checked(self, name: str, sound: bool) -> bool:
        if not sound:
            self.damaged.add(name)
        return sound

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


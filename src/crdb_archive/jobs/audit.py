"""Scheduled fixity audits: verify a budgeted share of a destination's bundles in full.

Bundles never checked come first (oldest first), then those checked least recently, so that an
audit run every night walks a large archive over days and starts over: every bundle is checked
once before any is checked twice. The budget (a number of bundles, a number of bytes) stops the
walk; a bundle larger than the byte budget is still checked when it is first in line, so that
nothing is starved. Bundles whose payload waits in an archive storage class cannot be read:
they are reported as skipped (not damaged), with how to restore them, and take nothing from
the budget. Each check leaves a new fixity record (jobs/fixity.py); nothing else is written,
and no bundle is touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crdb_archive.bundle.description import from_json
from crdb_archive.bundle.reader import open_bundle_in
from crdb_archive.bundle.verify import VerifyReport, verify_reader
from crdb_archive.bundle.writer import Guard, unguarded
from crdb_archive.errors import (
    BadInput,
    CrdbArchiveError,
    DamagedBundle,
    ExitCode,
    Interrupted,
    NeedsRestoreFromColdStorage,
    StorageError,
    most_severe,
)
from crdb_archive.jobs.catalog import CatalogEntry, build_catalog
from crdb_archive.jobs.destination import Destination, StoredBundle, described
from crdb_archive.jobs.fixity import Origin, failure_record, record_of, write_record
from crdb_archive.jobs.metrics import render_gauges, write_text_atomically
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.times import utc_iso

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners

AUDIT_PREFIX = "crdb_archive_audit_"

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)\s*", re.IGNORECASE)


def parse_size(text: str, what: str = "") -> int:
    """A size in bytes: ``500000``, ``50GiB``, ``1.5T`` (binary: 1024-based), ``50GB``
    (decimal: 1000-based); ``what`` names it in messages. Raises BadInput."""
    match = _SIZE.fullmatch(text)
    named = f"{what} " if what else ""
    if match is None or (match[3].lower() == "i"):
        raise BadInput(f"{named}{text!r} is not a size: give bytes, or a number with a unit "
                       "such as 500MiB, 50GiB, 2TiB (1024-based) or 50GB (1000-based)")
    number, prefix, suffix = match[1], match[2].upper(), match[3].lower()
    power = "KMGTP".index(prefix) + 1 if prefix else 0
    base = 1000 if suffix == "b" and prefix else 1024
    value = int(float(number) * base ** power) if "." in number else int(number) * base ** power
    if value <= 0:
        raise BadInput(f"{named}{text!r}: a byte budget must be more than 0")
    return value


@dataclass(frozen=True)
class Budget:
    """How much one audit may check; None is no limit."""

    max_bundles: int | None = None
    max_bytes: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {"max_bundles": self.max_bundles, "max_bytes": self.max_bytes}


@dataclass(frozen=True)
class Audited:
    """One bundle checked, and the record of it (None when it could not be written)."""

    name: str
    key: str
    location: str
    ok: bool
    problems: list[str]
    bytes_read: int
    mode: str
    record: str | None
    record_error: str | None = None  # why the record could not be written (exit 3)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "problems": self.problems,
                "location": self.location, "bytes_read": self.bytes_read, "mode": self.mode,
                "record": self.record, "record_error": self.record_error}


@dataclass(frozen=True)
class NotAudited:
    """A bundle passed by (``skipped``: cold storage) or left ``unchecked`` (the storage
    failed)."""

    name: str
    location: str
    reason: str
    kind: Literal["skipped", "unchecked"]

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "location": self.location, "reason": self.reason}


@dataclass
class AuditReport:
    destination: str
    budget: Budget
    total: int = 0  # bundles in the destination
    checked: list[Audited] = field(default_factory=list)
    skipped: list[NotAudited] = field(default_factory=list)  # cold: exit 0
    unchecked: list[NotAudited] = field(default_factory=list)  # the world failed: exit 3
    remaining: int = 0  # readable bundles left for later runs by the budget
    stale: list[str] = field(default_factory=list)
    never_verified: int = 0  # after this audit
    oldest_verification: dt.datetime | None = None  # after this audit, among those verified
    finished: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    seconds: float = 0.0
    interrupted: bool = False  # stopped by a signal: what is here is what was done

    @property
    def damaged(self) -> int:
        return sum(not item.ok for item in self.checked)

    @property
    def bytes_read(self) -> int:
        return sum(item.bytes_read for item in self.checked)

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        world = bool(self.unchecked) or any(item.record_error for item in self.checked)
        return most_severe([ExitCode.NO] * bool(self.damaged) + [ExitCode.WORLD] * world)

    @property
    def oldest_age_seconds(self) -> float | None:
        if self.oldest_verification is None:
            return None
        return max(0.0, (self.finished - self.oldest_verification).total_seconds())

    def to_json(self) -> dict[str, Any]:
        age = self.oldest_age_seconds
        return {
            "destination": self.destination,
            "ok": self.exit_code == ExitCode.OK,
            "exit_code": int(self.exit_code),
            "budget": self.budget.to_json(),
            "bundles": self.total,
            "checked": [item.to_json() for item in self.checked],
            "damaged": self.damaged,
            "skipped": [item.to_json() for item in self.skipped],
            "unchecked": [item.to_json() for item in self.unchecked],
            "remaining": self.remaining,
            "bytes_read": self.bytes_read,
            "never_verified": self.never_verified,
            "oldest_verification": utc_iso(self.oldest_verification),
            "oldest_verification_age_seconds": round(age, 3) if age is not None else None,
            "stale_records": self.stale,
            "seconds": round(self.seconds, 3),
        }


# Called with each outcome as it happens.
AuditCallback = Callable[["Audited | NotAudited"], None]


def ignore_outcomes(outcome: Audited | NotAudited) -> None:
    """An audit callback that drops every outcome."""


def audit_order(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    """Never checked first (the oldest bundles first), then the least recently checked."""
    far_past = dt.datetime.min.replace(tzinfo=dt.UTC)

    def key(entry: CatalogEntry) -> tuple[int, dt.datetime, dt.datetime, str]:
        made = entry.time or entry.created or far_past
        if entry.last is None:
            return (0, made, far_past, entry.key)
        return (1, entry.last.time, made, entry.key)

    return sorted(entries, key=key)


def audit_destination(
    destination: Destination,
    budget: Budget,
    *,
    allowed: AllowedSigners | None = None,
    origin: Origin = "audit",
    progress: ProgressCallback = no_progress,
    on_outcome: AuditCallback = ignore_outcomes,
    guard: Guard = unguarded,
    report: AuditReport | None = None,
) -> AuditReport:
    """Verify in full the bundles of ``destination`` that are due, within ``budget``; with
    ``allowed``, each must be validly signed by a key it lists. ``report`` is filled as the
    audit goes (so that a caller stopped by an interrupt has what was done), else a new one.

    Damage is reported, not raised. Raises StorageError when the destination cannot be listed,
    and what ``guard`` raises (a job whose lock is lost); Interrupted when stopped, with every
    record written so far complete and none half-written.
    """
    started = time.monotonic()
    report = report or AuditReport(destination.display, budget)
    catalog = build_catalog(destination)
    report.total = len(catalog.entries)
    report.stale = catalog.stale
    queue = audit_order(catalog.entries)
    count = used = 0
    checked_at: dict[str, dt.datetime] = {}
    for position, entry in enumerate(queue):
        if not entry.readable:
            skipped = NotAudited(entry.name, entry.location, _cold_reason(entry), "skipped")
            report.skipped.append(skipped)
            on_outcome(skipped)
            continue
        over_count = budget.max_bundles is not None and count >= budget.max_bundles
        over_bytes = (budget.max_bytes is not None and count > 0
                      and used + entry.size > budget.max_bytes)
        if over_count or over_bytes:
            report.remaining = sum(e.readable for e in queue[position:])
            break
        guard(f"auditing {entry.name}")
        outcome = _check(destination, entry, allowed, origin, progress)
        on_outcome(outcome)
        if isinstance(outcome, NotAudited) and outcome.kind == "skipped":
            report.skipped.append(outcome)  # found cold only now: takes nothing either
            continue
        count += 1
        used += entry.size
        if isinstance(outcome, Audited):
            report.checked.append(outcome)
            checked_at[entry.key] = dt.datetime.now(dt.UTC)
        else:
            report.unchecked.append(outcome)
    report.finished = dt.datetime.now(dt.UTC)
    _ages(report, catalog.entries, checked_at)
    report.seconds = time.monotonic() - started
    return report


def _ages(report: AuditReport, entries: list[CatalogEntry],
          checked_at: dict[str, dt.datetime]) -> None:
    latest = [checked_at.get(e.key) or (e.last.time if e.last else None) for e in entries]
    report.never_verified = sum(t is None for t in latest)
    known = [t for t in latest if t is not None]
    report.oldest_verification = min(known) if known else None


def _cold_reason(entry: CatalogEntry) -> str:
    return (f"its payload is in {entry.storage_class or 'an archive storage class'} and not "
            f"restored; request a restore (crdb-archive restore-request {entry.location} "
            "--days 7) and it is audited once readable")


def _check(destination: Destination, entry: CatalogEntry, allowed: AllowedSigners | None,
           origin: Origin, progress: ProgressCallback) -> Audited | NotAudited:
    storage = destination.storage
    try:
        reader = open_bundle_in(storage, entry.key)
        report: VerifyReport | None = verify_reader(reader, allowed=allowed, progress=progress)
    except NeedsRestoreFromColdStorage as error:
        return NotAudited(entry.name, entry.location, str(error), "skipped")
    except StorageError as error:
        return NotAudited(entry.name, entry.location, str(error), "unchecked")
    except CrdbArchiveError as error:
        # Listed as a complete bundle, and no longer readable as one: damage.
        report = None
        record = failure_record(entry.key, str(error), "missing", origin)
        problems = [f"missing: {entry.key}: {error}"]
    if report is not None:
        record = record_of(entry.key, report, origin)
        problems = [str(p) for p in report.problems]
    record_key: str | None = None
    record_error: str | None = None
    try:
        record_key = write_record(storage, record)
    except StorageError as error:
        record_error = f"its fixity record could not be written: {error}"
    if report is not None and report.ok and report.description is not None:
        _remember_tar(destination, entry, report)
    return Audited(entry.name, entry.key, entry.location, record.result != "damaged",
                   problems, entry.size if report is not None else 0,
                   record.mode, record_key, record_error)


def _remember_tar(destination: Destination, entry: CatalogEntry, report: VerifyReport) -> None:
    """A tar in object storage read whole for the first time: record what it holds, so that
    listing it needs no read of it again."""
    if entry.form != "tar" or entry.kind is not None or report.description is None:
        return
    if destination.storage.local_paths() is not None:
        return
    try:
        description = from_json(report.description)
    except DamagedBundle:  # schema-valid yet inconsistent: listing it will say so
        return
    stored = described(entry.name, entry.location, "tar", description, entry.lock_until)
    fingerprint = report.signature.fingerprint if report.signature else None
    # Should it fail, the audit's verdict stands, and the next audit records it.
    with contextlib.suppress(StorageError):
        destination.remember(_with_signing_key(stored, fingerprint))


def _with_signing_key(stored: StoredBundle, fingerprint: str | None) -> StoredBundle:
    return dataclasses.replace(stored, signing_key=fingerprint)


# --- metrics ---------------------------------------------------------------------------------


# (metric name, help text); every metric is a gauge describing the latest audit.
AUDIT_METRICS: tuple[tuple[str, str], ...] = (
    ("last_run_timestamp_seconds", "Unix time at which the latest audit ended."),
    ("exit_code", "Exit code of the latest audit (1: a bundle is damaged)."),
    ("bundles", "Bundles in the destination."),
    ("bundles_audited", "Bundles the latest audit verified in full."),
    ("bundles_damaged", "Bundles the latest audit found damaged."),
    ("bundles_skipped", "Bundles the latest audit passed by: payload in cold storage."),
    ("bundles_unchecked", "Bundles the latest audit could not check (storage failure)."),
    ("bundles_remaining", "Bundles the budget left for later audits."),
    ("bytes_read", "Bytes the latest audit read."),
    ("bundles_never_verified", "Bundles with no fixity record at all."),
    ("oldest_verification_age_seconds",
     "Age of the least recent verification of any bundle (+Inf: one was never verified)."),
    ("duration_seconds", "How long the latest audit took."),
)


def audit_gauges(report: AuditReport) -> list[tuple[str, str, float | int]]:
    """The audit's metrics, for the Prometheus text format."""
    age = report.oldest_age_seconds
    values: dict[str, float | int] = {
        "last_run_timestamp_seconds": report.finished.timestamp(),
        "exit_code": int(report.exit_code),
        "bundles": report.total,
        "bundles_audited": len(report.checked),
        "bundles_damaged": report.damaged,
        "bundles_skipped": len(report.skipped),
        "bundles_unchecked": len(report.unchecked),
        "bundles_remaining": report.remaining,
        "bytes_read": report.bytes_read,
        "bundles_never_verified": report.never_verified,
        "oldest_verification_age_seconds": (
            math.inf if report.never_verified else float(age if age is not None else 0.0)),
        "duration_seconds": float(report.seconds),
    }
    return [(name, help_text, values[name]) for name, help_text in AUDIT_METRICS]


def render_audit_metrics(report: AuditReport, label: tuple[str, str]) -> str:
    """The audit's metrics in the exposition format, labelled ``job`` or ``destination``."""
    return render_gauges(AUDIT_PREFIX, label, audit_gauges(report))


def run_audit(
    destination: Destination,
    budget: Budget,
    *,
    allowed: AllowedSigners | None = None,
    progress: ProgressCallback = no_progress,
    metrics_file: Path | None = None,
) -> AuditReport:
    """An audit on its own (``crdb-archive audit``): :func:`audit_destination`, then its
    metrics written to ``metrics_file`` (labelled with the destination), also when it was
    stopped by a signal (exit code 130, what was done so far). Raises as
    :func:`audit_destination`, and StorageError when the metrics cannot be written.
    """
    started = time.monotonic()
    report = AuditReport(destination.display, budget)
    try:
        audit_destination(destination, budget, allowed=allowed, progress=progress,
                          report=report)
    except Interrupted:
        if metrics_file is not None:
            report.interrupted = True
            report.finished = dt.datetime.now(dt.UTC)
            report.seconds = time.monotonic() - started
            with contextlib.suppress(StorageError):  # the interrupt is what gets reported
                write_text_atomically(metrics_file, render_audit_metrics(
                    report, ("destination", destination.display)))
        raise
    if metrics_file is not None:
        write_text_atomically(metrics_file, render_audit_metrics(
            report, ("destination", destination.display)))
    return report

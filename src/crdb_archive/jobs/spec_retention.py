"""The [destination] Object Lock and [retention] sections of a job spec."""

from __future__ import annotations

import datetime as dt

from crdb_archive.jobs.spec_model import LOCK_MODES, SECTIONS, ObjectLock, Retention
from crdb_archive.jobs.spec_table import SpecTable


def read_object_lock(destination: SpecTable, now: dt.datetime) -> ObjectLock | None:
    if "object_lock" not in destination.values:
        return None
    if not isinstance(destination.values["object_lock"], dict):
        destination.problem("object_lock", "expected a table [destination.object_lock]")
        return None
    lock = SpecTable(destination.values["object_lock"], "destination.object_lock",
                     SECTIONS["destination.object_lock"], destination.problems)
    mode = lock.choice("mode", LOCK_MODES, default=None)
    if "mode" not in lock.values:
        lock.problem("mode", f"missing (required: {' or '.join(LOCK_MODES)})")
    days = lock.integer("days", minimum=1)
    until = _retain_until(lock, now)
    if "days" in lock.values and "retain_until" in lock.values:
        lock.problem("retain_until", "give either days or retain_until, not both")
    elif "days" not in lock.values and "retain_until" not in lock.values:
        lock.problem("days", "missing: give days or retain_until")
    if mode is None or (days is None and until is None):
        return None
    return ObjectLock("GOVERNANCE" if mode == "GOVERNANCE" else "COMPLIANCE", days, until)


def _retain_until(lock: SpecTable, now: dt.datetime) -> dt.datetime | None:
    value = lock.typed("retain_until", (dt.date,), "a date (2036-01-01) or a date-time with "
                      "an offset")
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            lock.problem("retain_until", "a date-time needs an offset, like "
                         "2036-01-01T00:00:00Z")
            return None
        until = value.astimezone(dt.UTC)
    else:
        until = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if until <= now:
        lock.problem("retain_until", f"{until.date()} is not in the future")
        return None
    return until


def read_retention(table: SpecTable, *, present: bool) -> Retention | None:
    if not present:
        return None
    rules: dict[str, int | None] = {
        key: table.integer(key, minimum=1) for key in SECTIONS["retention"]
    }
    if not any(key in table.values for key in rules):
        # An empty [retention] would keep nothing: refuse it rather than delete everything.
        table.problems.append(
            "retention: give at least one of keep_last, keep_days, keep_monthly, keep_yearly "
            "(leave the section out to keep every bundle)")
    return Retention(**rules)

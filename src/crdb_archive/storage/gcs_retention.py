"""Retention in Cloud Storage, mapped onto the Object Lock terms of the storage interface.

A bucket keeps objects from deletion in two ways: object retention (a bucket created with it
enabled; each object carries a mode and a retain-until time, ``Locked`` can never be shortened,
``Unlocked`` can by whoever may override it) and a retention policy (every object is kept a
fixed period from its creation; a locked policy can never be shortened). The interface's
COMPLIANCE is ``Locked`` and GOVERNANCE ``Unlocked``. A lock is written as object retention
where the bucket has it; else a bucket policy that keeps every object at least as long (and is
locked, for COMPLIANCE) satisfies it; else it is refused before anything is written.
Holds (temporary and event-based) are reported as a legal hold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from google.cloud.storage import Blob, Bucket

from crdb_archive.errors import BadInput
from crdb_archive.storage.base import LockMode, WriteOptions
from crdb_archive.storage.lock_options import check_lock
from crdb_archive.text import count

MODES: dict[LockMode, str] = {"COMPLIANCE": "Locked", "GOVERNANCE": "Unlocked"}
_LOCK_MODES = {value: key for key, value in MODES.items()}

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")


@dataclass(frozen=True)
class BucketRetention:
    """What a bucket's metadata says about retention."""

    object_retention: bool
    policy_seconds: int | None = None
    policy_locked: bool = False

    @classmethod
    def of(cls, bucket: Bucket) -> BucketRetention:
        """From a bucket's metadata, as the SDK read it."""
        period = bucket.retention_period
        return cls(bucket.object_retention_mode == "Enabled",
                   int(period) if isinstance(period, int) and period > 0 else None,
                   bucket.retention_policy_locked is True)

    @property
    def any(self) -> bool:
        return self.object_retention or bool(self.policy_seconds)


@dataclass(frozen=True)
class Placement:
    """How one object is written: its storage class and its object retention, if any."""

    storage_class: str | None = None
    retention_mode: str | None = None  # "Locked" or "Unlocked"
    retain_until: dt.datetime | None = None


def check_static(options: WriteOptions, bucket: str) -> None:
    """Checks that need no request: a storage class Cloud Storage has, a lock mode and date
    given together and in the future. Raises BadInput naming the bucket."""
    if options.storage_class is not None and options.storage_class not in STORAGE_CLASSES:
        raise BadInput(f"bucket {bucket}: Cloud Storage has no storage class "
                       f"{options.storage_class!r} (it has {', '.join(STORAGE_CLASSES)}); "
                       "nothing was uploaded")
    check_lock(options, f"bucket {bucket}", lock="retention", mode="retention mode")


def placement(options: WriteOptions | None, bucket: str, retention: BucketRetention | None,
              now: dt.datetime) -> Placement:
    """How objects written with ``options`` are stored in ``bucket``.

    ``retention`` is the bucket's (needed only when a lock is asked for). Raises BadInput,
    naming the bucket and what it lacks, when the lock cannot be honoured.
    """
    if options is None:
        return Placement()
    check_static(options, bucket)
    if options.lock_mode is None or options.retain_until is None:
        return Placement(options.storage_class)
    if retention is None:  # pragma: no cover - the caller reads the bucket for a lock
        raise BadInput(f"bucket {bucket}: its retention settings are unknown")
    if retention.object_retention:
        return Placement(options.storage_class, MODES[options.lock_mode], options.retain_until)
    period = retention.policy_seconds
    days = -(-int((options.retain_until - now).total_seconds()) // 86_400)
    if period:
        policy = (f"its {'locked' if retention.policy_locked else 'unlocked'} retention policy "
                  f"keeps objects {count(period // 86_400, 'day')}")
        if now + dt.timedelta(seconds=period) < options.retain_until:
            raise BadInput(f"bucket {bucket} has no object retention, and {policy}, short of "
                           f"{options.retain_until.date()}; nothing was uploaded")
        if options.lock_mode == "COMPLIANCE" and not retention.policy_locked:
            raise BadInput(f"bucket {bucket} has no object retention, and {policy}: "
                           "COMPLIANCE needs a locked policy (or GOVERNANCE); nothing was "
                           "uploaded")
        return Placement(options.storage_class)  # the bucket's policy keeps every object
    raise BadInput(
        f"bucket {bucket} has no object retention: {options.lock_mode} retention needs a "
        "bucket created with object retention enabled (or a retention policy of at least "
        f"{count(days, 'day')}{', locked' if options.lock_mode == 'COMPLIANCE' else ''}); nothing "
        "was uploaded")


def lock_of(blob: Blob) -> tuple[dt.datetime | None, str | None, bool]:
    """An object's (retain until, lock mode, hold): the later of its object retention and its
    bucket policy's expiry."""
    until = _utc(blob.retention.retain_until_time)
    mode = _LOCK_MODES.get(str(blob.retention.mode or ""))
    policy_until = _utc(blob.retention_expiration_time)
    if policy_until is not None and (until is None or policy_until > until):
        until = policy_until
    hold = blob.temporary_hold is True or blob.event_based_hold is True
    return until, mode, hold


def _utc(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value.astimezone(dt.UTC) if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)

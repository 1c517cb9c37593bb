"""The checks of a retention asked for in WriteOptions that every object store makes alike,
each in its own words."""

from __future__ import annotations

from datetime import datetime

from crdb_archive.errors import BadInput
from crdb_archive.storage.base import WriteOptions
from crdb_archive.times import utc_iso

_MODES = ("GOVERNANCE", "COMPLIANCE")


def check_lock(options: WriteOptions, where: str, *, lock: str, mode: str) -> None:
    """Checks that need no request: a known lock mode and a retain-until date given together,
    the date with a time zone and in the future.

    ``lock`` names what the store calls the retention ("Object Lock"), ``mode`` its mode
    ("Object Lock mode"). Raises BadInput starting with ``where``.
    """
    if (options.lock_mode is None) != (options.retain_until is None):
        raise BadInput(f"{where}: {lock} needs both a mode (GOVERNANCE or COMPLIANCE) and a "
                       "retain-until date")
    if options.lock_mode is not None and options.lock_mode not in _MODES:
        raise BadInput(f"{where}: {mode} {options.lock_mode!r}: expected GOVERNANCE or "
                       "COMPLIANCE")
    until = options.retain_until
    if until is not None:
        if until.tzinfo is None:
            raise BadInput(f"{where}: the retain-until date needs a time zone")
        if until <= datetime.now(until.tzinfo):
            raise BadInput(f"{where}: the retain-until date {utc_iso(until)} is not in the "
                           "future")

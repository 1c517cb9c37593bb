"""Writing times down: one formatter for every timestamp the tool prints, stores or names.

Everything is UTC. Text meant for people and JSON is ISO 8601 extended (``2024-12-15T00:00:00Z``,
a fraction only when there is one); names of bundles and records use ISO 8601 basic
(``20241215T000000Z``), which sorts and fits in a file name. CockroachDB's HLC wall times have
nanoseconds, which :class:`datetime.datetime` cannot hold: :func:`utc_iso_nanos` and
:func:`basic_nanos` write them from the integer.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, overload

Precision = Literal["auto", "seconds", "microseconds"]
# The fraction of a second in a basic-format name: hundredths when not zero (CockroachDB's
# backup names), none, or always six digits (names that must sort within a second).
Fraction = Literal["centiseconds", "none", "microseconds"]

_NANOS = 1_000_000_000


@overload
def utc_iso(value: dt.datetime, *, timespec: Precision = "auto") -> str: ...


@overload
def utc_iso(value: None, *, timespec: Precision = "auto") -> None: ...


def utc_iso(value: dt.datetime | None, *, timespec: Precision = "auto") -> str | None:
    """``2024-12-15T00:00:00Z``: ISO 8601 extended, UTC, written with a ``Z``.

    ``auto`` writes microseconds only when there are some; ``seconds`` drops them;
    ``microseconds`` always writes six digits. A naive time is taken as UTC.
    """
    if value is None:
        return None
    return _utc(value).isoformat(timespec=timespec).replace("+00:00", "Z")


def basic(value: dt.datetime, *, fraction: Fraction = "centiseconds") -> str:
    """``20241215T000000Z``: ISO 8601 basic, UTC, for names.

    ``centiseconds`` writes hundredths of a second as ``.ff`` when they are not zero
    (``20241215T093257.93Z``), the precision CockroachDB names backups with;
    ``microseconds`` always writes ``.ffffff``. A naive time is taken as UTC.
    """
    value = _utc(value)
    if fraction == "microseconds":
        return f"{value:%Y%m%dT%H%M%S}.{value.microsecond:06d}Z"
    hundredths = value.microsecond // 10_000
    text = f".{hundredths:02d}" if fraction == "centiseconds" and hundredths else ""
    return f"{value:%Y%m%dT%H%M%S}{text}Z"


def utc_iso_nanos(wall: int) -> str:
    """``2024-12-15T00:00:00.000000001Z``: nanoseconds since the epoch, always nine digits."""
    seconds, nanos = divmod(wall, _NANOS)
    return f"{from_unix(seconds):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def basic_nanos(wall: int) -> str:
    """``20241215T000000.000000001Z``: nanoseconds since the epoch, for names."""
    seconds, nanos = divmod(wall, _NANOS)
    return f"{from_unix(seconds):%Y%m%dT%H%M%S}.{nanos:09d}Z"


def from_unix(seconds: float) -> dt.datetime:
    """The UTC time ``seconds`` after the Unix epoch."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)

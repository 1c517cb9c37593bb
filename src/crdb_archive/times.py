"""Writing times down: one formatter for every timestamp the tool prints, stores or names.

Everything is UTC. Text meant for people and JSON is ISO 8601 extended (``2024-12-15T00:00:00Z``,
a fraction only when there is one); names of bundles use ISO 8601 basic (``20241215T000000Z``),
which sorts and fits in a file name.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, overload

Precision = Literal["auto", "seconds", "microseconds"]


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
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    text = value.astimezone(dt.UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def basic(value: dt.datetime, *, centiseconds: bool = True) -> str:
    """``20241215T000000Z``: ISO 8601 basic, UTC, for names.

    With ``centiseconds``, hundredths of a second are written as ``.ff`` when they are not
    zero (``20241215T093257.93Z``), the precision CockroachDB names backups with.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    hundredths = value.microsecond // 10_000
    fraction = f".{hundredths:02d}" if centiseconds and hundredths else ""
    return f"{value:%Y%m%dT%H%M%S}{fraction}Z"

"""crdb_archive.times: every form a time is written in, from instants whose text is known."""

from __future__ import annotations

import datetime as dt

import pytest

from crdb_archive import times
from crdb_archive.export.hlc import Hlc

PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
# 2024-12-15T09:32:57.930000Z, given in another zone.
MOMENT = dt.datetime(2024, 12, 15, 11, 32, 57, 930000, tzinfo=PLUS_TWO)
WHOLE = dt.datetime(2024, 12, 15, 0, 0, tzinfo=dt.UTC)
# 2024-12-15T00:00:00Z is 1734220800 seconds after the epoch.
WALL = 1734220800 * 1_000_000_000 + 123_456_789


@pytest.mark.parametrize(("value", "timespec", "text"), [
    (MOMENT, "auto", "2024-12-15T09:32:57.930000Z"),
    (MOMENT, "seconds", "2024-12-15T09:32:57Z"),
    (WHOLE, "auto", "2024-12-15T00:00:00Z"),
    (WHOLE, "microseconds", "2024-12-15T00:00:00.000000Z"),
    (dt.datetime(2024, 12, 15), "auto", "2024-12-15T00:00:00Z"),  # naive: taken as UTC
])
def test_extended_form(value: dt.datetime, timespec: times.Precision, text: str) -> None:
    assert times.utc_iso(value, timespec=timespec) == text


def test_nothing_stays_nothing() -> None:
    assert times.utc_iso(None) is None


@pytest.mark.parametrize(("value", "fraction", "text"), [
    (MOMENT, "centiseconds", "20241215T093257.93Z"),
    (WHOLE, "centiseconds", "20241215T000000Z"),
    (MOMENT, "none", "20241215T093257Z"),
    (MOMENT, "microseconds", "20241215T093257.930000Z"),
    (WHOLE, "microseconds", "20241215T000000.000000Z"),
])
def test_basic_form_for_names(value: dt.datetime, fraction: times.Fraction, text: str) -> None:
    assert times.basic(value, fraction=fraction) == text


def test_nanoseconds_of_a_wall_time() -> None:
    assert times.utc_iso_nanos(WALL) == "2024-12-15T00:00:00.123456789Z"
    assert times.basic_nanos(WALL) == "20241215T000000.123456789Z"
    assert times.utc_iso_nanos(1734220800 * 1_000_000_000) == "2024-12-15T00:00:00.000000000Z"
    # An HLC's time is its wall time's, whatever its logical counter.
    assert Hlc(WALL, 7).iso() == "2024-12-15T00:00:00.123456789Z"


def test_unix_seconds() -> None:
    assert times.from_unix(1734220800) == WHOLE

"""Retention keeps exactly what its rules say, counted from a given ``now`` (synthetic dates)."""

from __future__ import annotations

import datetime as dt

import pytest

from crdb_archive.jobs import Retention, RetentionItem, decide

NOW = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.UTC)


def at(text: str) -> dt.datetime:
    """``2025-06-14`` or ``2025-06-14T03:00`` as UTC; an explicit offset is kept."""
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def daily(first: str, count: int) -> list[str]:
    start = dt.date.fromisoformat(first)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(count)]


def kept(times: list[str], rules: Retention | None, now: dt.datetime = NOW) -> list[str]:
    items = [RetentionItem(f"/b/{t}", t, at(t)) for t in times]
    return sorted(d.item.name for d in decide(items, rules, now) if d.keep)


# (case, bundle times, rules, the times kept)
CASES: list[tuple[str, list[str], Retention | None, list[str]]] = [
    ("no rules keep everything", daily("2020-01-01", 5), None, daily("2020-01-01", 5)),
    ("keep_last", daily("2025-06-01", 10), Retention(keep_last=3), daily("2025-06-08", 3)),
    ("keep_last more than there are", daily("2025-06-01", 2), Retention(keep_last=5),
     daily("2025-06-01", 2)),
    # A backup that ended exactly keep_days before now is still within the window.
    ("keep_days", ["2025-06-07T11:59", "2025-06-08T12:00", "2025-06-10", "2025-06-15"],
     Retention(keep_days=7), ["2025-06-08T12:00", "2025-06-10", "2025-06-15"]),
    ("keep_monthly newest of each month",
     ["2025-03-01", "2025-03-31", "2025-04-02", "2025-04-20", "2025-05-05", "2025-06-01",
      "2025-06-14"],
     Retention(keep_monthly=3), ["2025-04-20", "2025-05-05", "2025-06-14"]),
    # Months without a bundle do not use up the count.
    ("keep_monthly skips empty months", ["2024-11-30", "2025-01-10", "2025-03-03", "2025-06-01"],
     Retention(keep_monthly=3), ["2025-01-10", "2025-03-03", "2025-06-01"]),
    ("keep_yearly", ["2021-12-31", "2022-01-01", "2022-07-01", "2024-02-02", "2025-01-01",
                     "2025-06-01"],
     Retention(keep_yearly=3), ["2022-07-01", "2024-02-02", "2025-06-01"]),
    ("rules add up", [*daily("2025-03-25", 14), "2024-12-31", "2023-05-05"],
     Retention(keep_last=2, keep_monthly=3, keep_yearly=3),
     ["2023-05-05", "2024-12-31", "2025-03-31", "2025-04-06", "2025-04-07"]),
    ("all four rules", [*daily("2025-05-01", 46), "2024-12-24", "2022-07-07"],
     Retention(keep_last=1, keep_days=3, keep_monthly=2, keep_yearly=2),
     ["2024-12-24", "2025-05-31", "2025-06-13", "2025-06-14", "2025-06-15"]),
    # Months are UTC months: 23:30 at UTC-5 on January 31st is February 1st.
    ("months in UTC", ["2025-01-31T23:30:00-05:00", "2025-02-10", "2025-01-20"],
     Retention(keep_monthly=2), ["2025-01-20", "2025-02-10"]),
    ("nothing matches", ["2019-01-01", "2019-02-01"], Retention(keep_days=30), []),
]


@pytest.mark.parametrize(("times", "rules", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_retention_table(times: list[str], rules: Retention | None,
                         expected: list[str]) -> None:
    assert kept(times, rules) == sorted(expected)


def test_reasons_name_the_rules() -> None:
    items = [RetentionItem(f"/b/{t}", t, at(t)) for t in ("2025-06-14", "2025-05-02", "2024-03-01")]
    decisions = {d.item.name: d for d in decide(items, Retention(keep_last=1, keep_monthly=2,
                                                                 keep_yearly=2), NOW)}
    assert decisions["2025-06-14"].reasons == ("keep_last", "keep_monthly 2025-06",
                                               "keep_yearly 2025")
    assert decisions["2025-05-02"].reasons == ("keep_monthly 2025-05",)
    assert decisions["2024-03-01"].reasons == ("keep_yearly 2024",)
    assert [d.item.name for d in decide(items, None, NOW)] == [
        "2025-06-14", "2025-05-02", "2024-03-01"]


def test_locked_bundles_are_never_deleted() -> None:
    items = [
        RetentionItem("/b/new", "new", at("2025-06-14")),
        RetentionItem("/b/locked", "locked", at("2020-01-01"),
                      retain_until=at("2030-01-01")),
        RetentionItem("/b/lock-expired", "lock-expired", at("2020-01-02"),
                      retain_until=at("2025-06-15T11:59")),
        RetentionItem("/b/lock-ends-now", "lock-ends-now", at("2020-01-03"),
                      retain_until=NOW),
    ]
    decisions = {d.item.name: d for d in decide(items, Retention(keep_last=1), NOW)}
    assert decisions["locked"].keep
    assert decisions["locked"].reasons == ("object lock until 2030-01-01T00:00:00Z",)
    assert not decisions["lock-expired"].keep
    assert not decisions["lock-ends-now"].keep
    assert decisions["new"].keep


def test_undated_and_protected_bundles_are_kept() -> None:
    items = [
        RetentionItem("/b/a", "a", at("2025-06-14")),
        RetentionItem("/b/undated", "undated", None),
        RetentionItem("/b/old", "old", at("2001-01-01"), protected="written by this run"),
        RetentionItem("/b/old2", "old2", at("2001-01-02")),
    ]
    decisions = decide(items, Retention(keep_last=1), NOW)
    assert [(d.item.name, d.keep, d.reasons) for d in decisions] == [
        ("a", True, ("keep_last",)),
        ("old2", False, ()),
        ("old", True, ("written by this run",)),
        ("undated", True, ("time unknown",)),
    ]


def test_same_name_in_both_forms_is_decided_per_location() -> None:
    items = [
        RetentionItem("/b/x", "x", at("2025-01-01")),
        RetentionItem("/b/x.tar", "x", at("2025-01-01")),
        RetentionItem("/b/y", "y", at("2025-06-01")),
    ]
    decisions = decide(items, Retention(keep_last=2), NOW)
    assert [(d.item.key, d.keep) for d in decisions] == [
        ("/b/y", True), ("/b/x.tar", True), ("/b/x", False)]

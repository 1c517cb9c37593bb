"""Retention: which of a job's bundles to keep, by rules in the manner of borg and restic.

A bundle's time is its backup's end time. Bundles are ordered newest first, and:

* ``keep_last N`` keeps the N newest;
* ``keep_days N`` keeps every bundle whose backup ended within N days before ``now``;
* ``keep_monthly N`` keeps the newest bundle of each of the N most recent months that have a
  bundle (calendar months in UTC); ``keep_yearly N`` the same per year.

A bundle kept by any rule stays. Whatever the rules say, a bundle under Object Lock retention,
a bundle whose time is unknown, and a bundle the caller protects (written or found damaged in
this run) are kept. Without rules everything is kept. The decision is a pure function of the
bundles and ``now``, so it can be planned (``--dry-run``) and tested with synthetic dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from crdb_archive.jobs.spec_model import Retention
from crdb_archive.times import utc_iso


@dataclass(frozen=True)
class RetentionItem:
    """One bundle to decide on; ``key`` tells the caller which one (its location)."""

    key: str
    name: str
    time: dt.datetime | None
    retain_until: dt.datetime | None = None
    protected: str | None = None  # why the caller keeps it regardless of the rules


@dataclass(frozen=True)
class Decision:
    item: RetentionItem
    keep: bool
    reasons: tuple[str, ...]


def decide(
    items: Sequence[RetentionItem], rules: Retention | None, now: dt.datetime
) -> list[Decision]:
    """Keep or delete each item, with the reasons for keeping; newest first, undated last."""
    reasons: list[list[str]] = [[] for _ in items]
    dated = sorted((i for i, item in enumerate(items) if item.time is not None),
                   key=lambda i: (_time(items[i]), items[i].name, items[i].key),
                   reverse=True)
    if rules is None:
        for why in reasons:
            why.append("no retention rules")
    else:
        for i, reason in _kept_by_rules([items[i] for i in dated], rules, now):
            reasons[dated[i]].append(reason)
    for i, item in enumerate(items):
        reasons[i] += _kept_regardless(item, now)
    undated = sorted((i for i, item in enumerate(items) if item.time is None),
                     key=lambda i: items[i].name)
    return [
        Decision(items[i], bool(reasons[i]), tuple(reasons[i]))
        for i in [*dated, *undated]
    ]


# The calendar periods of keep_monthly and keep_yearly: the rule, and a bundle's period.
_PERIODS: tuple[tuple[str, Callable[[dt.datetime], str]], ...] = (
    ("keep_monthly", lambda t: f"{t.year:04d}-{t.month:02d}"),
    ("keep_yearly", lambda t: f"{t.year:04d}"),
)


def _kept_by_rules(newest_first: Sequence[RetentionItem], rules: Retention,
                   now: dt.datetime) -> Iterator[tuple[int, str]]:
    """(position in ``newest_first``, rule) for each rule that keeps a dated item."""
    if rules.keep_last is not None:
        yield from ((i, "keep_last") for i in range(min(rules.keep_last, len(newest_first))))
    if rules.keep_days is not None:
        cutoff = now - dt.timedelta(days=rules.keep_days)
        yield from ((i, "keep_days") for i, item in enumerate(newest_first)
                    if _time(item) >= cutoff)
    for rule, period in _PERIODS:
        count: int | None = getattr(rules, rule)
        if count is not None:
            yield from _newest_per_period(newest_first, count, rule, period)


def _newest_per_period(newest_first: Sequence[RetentionItem], count: int, rule: str,
                       period: Callable[[dt.datetime], str]) -> Iterator[tuple[int, str]]:
    """The newest item of each of the ``count`` most recent periods that have one."""
    seen: set[str] = set()
    for i, item in enumerate(newest_first):
        key = period(_time(item))
        if key in seen:
            continue
        if len(seen) == count:
            return
        seen.add(key)
        yield i, f"{rule} {key}"


def _kept_regardless(item: RetentionItem, now: dt.datetime) -> list[str]:
    """Why ``item`` stays whatever the rules say: no time, Object Lock, the caller's word."""
    reasons = []
    if item.time is None:
        reasons.append("time unknown")
    if item.retain_until is not None and item.retain_until > now:
        reasons.append(f"object lock until {utc_iso(item.retain_until)}")
    if item.protected:
        reasons.append(item.protected)
    return reasons


def _time(item: RetentionItem) -> dt.datetime:
    if item.time is None:  # pragma: no cover - only dated items reach the rules
        raise ValueError(f"{item.name} has no time")
    return item.time.astimezone(dt.UTC)

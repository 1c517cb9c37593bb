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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crdb_archive.jobs.spec import Retention


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
        if rules.keep_last is not None:
            for i in dated[:rules.keep_last]:
                reasons[i].append("keep_last")
        if rules.keep_days is not None:
            cutoff = now - dt.timedelta(days=rules.keep_days)
            for i in dated:
                if _time(items[i]) >= cutoff:
                    reasons[i].append("keep_days")
        periods: tuple[tuple[int | None, str, Callable[[dt.datetime], str]], ...] = (
            (rules.keep_monthly, "keep_monthly", lambda t: f"{t.year:04d}-{t.month:02d}"),
            (rules.keep_yearly, "keep_yearly", lambda t: f"{t.year:04d}"),
        )
        for count, rule, period in periods:
            if count is None:
                continue
            seen: set[str] = set()
            for i in dated:
                key = period(_time(items[i]))
                if key in seen:
                    continue
                if len(seen) == count:
                    break
                seen.add(key)
                reasons[i].append(f"{rule} {key}")
    for i, item in enumerate(items):
        if item.time is None:
            reasons[i].append("time unknown")
        if item.retain_until is not None and item.retain_until > now:
            reasons[i].append(
                f"object lock until {item.retain_until.astimezone(dt.UTC).isoformat()}")
        if item.protected:
            reasons[i].append(item.protected)
    undated = sorted((i for i, item in enumerate(items) if item.time is None),
                     key=lambda i: items[i].name)
    return [
        Decision(items[i], bool(reasons[i]), tuple(reasons[i]))
        for i in [*dated, *undated]
    ]


def _time(item: RetentionItem) -> dt.datetime:
    if item.time is None:  # pragma: no cover - only dated items reach the rules
        raise ValueError(f"{item.name} has no time")
    return item.time.astimezone(dt.UTC)

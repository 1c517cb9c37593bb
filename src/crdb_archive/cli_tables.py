"""Text renderings of the catalog and of audits for the command line: aligned tables and lines.

Presentation only; what a bundle is, and what an audit found, come from crdb_archive.jobs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crdb_archive.text import count, size
from crdb_archive.times import utc_iso

if TYPE_CHECKING:
    from crdb_archive.jobs.audit import AuditReport
    from crdb_archive.jobs.catalog import Catalog, CatalogEntry, RestoreRoute

def when(value: dt.datetime | None) -> str:
    return utc_iso(value, timespec="seconds") if value else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns aligned on the widest cell, two spaces apart; no trailing spaces."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows,
                                                                          strict=True)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in (header, *rows)]


def route_text(route: RestoreRoute | None) -> str:
    if route is None:
        return "unknown"
    if not route.needs_cockroachdb:
        return "yes (no CockroachDB needed)"
    if route.path is None:
        return "no (a downgrade)"
    if route.direct:
        return "direct"
    return "via " + " -> ".join(route.path)


def _signed(entry: CatalogEntry) -> str:
    if entry.signature:
        # The start of the fingerprint tells keys apart at a glance; --json has all of it.
        return entry.signature[:19] + ".."
    return "?" if entry.signed is None else ("yes" if entry.signed else "-")


def catalog_lines(catalog: Catalog, routes: dict[str, RestoreRoute | None] | None,
                  target: str | None) -> list[str]:
    """The catalog as an aligned table, then notes on bundles it cannot describe."""
    header = ["NAME", "KIND", "VERSION", "BACKUP TIME", "SIZE", "FORM", "CLASS",
              "LOCKED UNTIL", "SIGNED BY", "LAST VERIFIED", "RESULT"]
    if routes is not None:
        header.append(f"RESTORE INTO {target}")
    rows = []
    for entry in catalog.entries:
        row = [entry.name, entry.kind or "?", entry.version or "-", when(entry.time),
               size(entry.size), entry.form, entry.storage_class or "-",
               when(entry.lock_until), _signed(entry),
               when(entry.last.time) if entry.last else "never",
               entry.last.result if entry.last else "-"]
        if routes is not None:
            row.append(route_text(routes[entry.key]))
        rows.append(row)
    lines = table(header, rows) if rows else ["no bundles"]
    lines += [f"note: {entry.name}: {entry.problem}" for entry in catalog.entries
              if entry.problem]
    lines += [f"note: {name} is incomplete (an upload cut short, or in progress)"
              for name in catalog.incomplete]
    if catalog.stale:
        lines.append(f"note: fixity records of {count(len(catalog.stale), 'bundle')} no longer "
                     "here: " + ", ".join(catalog.stale))
    return lines


def audit_lines(report: AuditReport) -> list[str]:
    """One line per bundle checked or skipped, then a summary."""
    lines = []
    for item in report.checked:
        verdict = "OK" if item.ok else "DAMAGED"
        lines.append(f"{item.location}: {verdict} ({size(item.bytes_read)} read)")
        lines += [f"  {problem}" for problem in item.problems[:20]]
        if item.record_error:
            lines.append(f"  {item.record_error}")
    for skipped in report.skipped:
        lines.append(f"{skipped.location}: skipped: {skipped.reason}")
    for unchecked in report.unchecked:
        lines.append(f"{unchecked.location}: NOT CHECKED: {unchecked.reason}")
    summary: dict[str, Any] = report.to_json()
    age = summary["oldest_verification_age_seconds"]
    oldest = "-" if age is None else f"{age / 86400:.1f} days ago"
    if report.never_verified:
        oldest += f", {count(report.never_verified, 'bundle')} never verified"
    lines.append(
        f"audited {len(report.checked)} of {count(report.total, 'bundle')}, "
        f"{size(report.bytes_read)} read: {report.damaged} damaged, "
        f"{len(report.skipped)} skipped, {len(report.unchecked)} not checked, "
        f"{report.remaining} left for later runs; oldest verification: {oldest}")
    if report.stale:
        lines.append(f"note: fixity records of {count(len(report.stale), 'bundle')} no longer "
                     "here: " + ", ".join(report.stale))
    return lines

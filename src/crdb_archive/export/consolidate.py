"""Consolidation in DuckDB: from every row version to the one table of the snapshot.

The result table has the events table's ``f``, ``n``, ``a``, ``k*`` and ``c*`` columns, one
row per live key. Grouping runs as DuckDB hash aggregates, which spill to disk past the
memory limit.

Raises :class:`~crdb_archive.errors.MalformedExportData` for conflicting versions of a key in
output without timestamps, and for a key an EXPORT holds twice.
"""

from __future__ import annotations

import duckdb

from crdb_archive.errors import MalformedExportData
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.staging import Layout


def consolidate(con: duckdb.DuckDBPyConnection, events: str, snap: str, layout: Layout,
                as_of: Hlc | None, cutoff: int, *, timestamps: bool, export: bool,
                key_known: bool) -> None:
    """Fill ``snap`` from ``events``; see the module docstring."""
    keys = [f"k{j}" for j in range(len(layout.key))]
    key_list = ", ".join(keys)
    cols = [f"c{i}" for i in range(len(layout.columns))]
    if export:
        if key_known:
            _refuse_duplicates(con, events, keys, layout)
        con.execute(f"CREATE TABLE {snap} AS SELECT f, n, a, {key_list}, {', '.join(cols)} "
                    f"FROM {events}")
        return
    where = [f"f < {cutoff}"]
    if timestamps and as_of is not None:
        where.append(f"(w < {as_of.wall} OR (w = {as_of.wall} AND l <= {as_of.logical}))")
    if timestamps:
        # The sink writes a row's versions in timestamp order across files named in order;
        # ties (the same version re-emitted, or a backfill under mvcc_timestamp) go to the
        # later file, then the later line.
        ordering = "{'w': w, 'l': l, 'f': f, 'n': n}"
    else:
        _refuse_conflicts(con, events, keys, cols, " AND ".join(where), layout)
        ordering = "{'f': f, 'n': n}"
    payload = "{" + ", ".join(f"'{c}': {c}" for c in ["d", "f", "n", "a", *cols]) + "}"
    families = con.execute(
        f"SELECT count(DISTINCT fam) FROM {events} WHERE {' AND '.join(where)}").fetchone()
    winners = (f"SELECT {key_list}, fam, arg_max({payload}, {ordering}) AS v FROM {events} "
               f"WHERE {' AND '.join(where)} GROUP BY {key_list}, fam")
    if families is None or int(families[0]) <= 1:
        select = ", ".join(["v.f AS f", "v.n AS n", "v.a AS a", key_list,
                            *(f"v.{c} AS {c}" for c in cols)])
        con.execute(f"CREATE TABLE {snap} AS SELECT {select} FROM ({winners}) WHERE NOT v.d")
        return
    # split_column_families: one winner per family; a column lives in one family, so the
    # first non-NULL over the live families is its value. The row lives while a family does.
    live = "FILTER (WHERE NOT v.d)"
    select = ", ".join([f"min(v.f) {live} AS f", f"min(v.n) {live} AS n",
                        f"flatten(list(v.a) {live}) AS a", key_list,
                        *(f"any_value(v.{c}) {live} AS {c}" for c in cols)])
    con.execute(f"CREATE TABLE {snap} AS SELECT {select} FROM ({winners}) GROUP BY {key_list} "
                "HAVING bool_or(NOT v.d)")


def _describe_key(layout: Layout, values: tuple[object, ...]) -> str:
    return ", ".join(f"{layout.columns[i].name}={value}"
                     for i, value in zip(layout.key, values, strict=False))


def _refuse_duplicates(con: duckdb.DuckDBPyConnection, events: str, keys: list[str],
                       layout: Layout) -> None:
    # One EXPORT is one SELECT at one time: a key twice means chunks of different EXPORTs
    # were mixed, or a file was copied twice.
    key_list = ", ".join(keys)
    row = con.execute(f"SELECT {key_list}, count(*) FROM {events} GROUP BY {key_list} "
                      "HAVING count(*) > 1 LIMIT 1").fetchone()
    if row is not None:
        raise MalformedExportData(
            f"table {layout.table.name}: the EXPORT holds key ({_describe_key(layout, row)}) "
            f"{row[-1]} times; one EXPORT never writes a row twice")


def _refuse_conflicts(con: duckdb.DuckDBPyConnection, events: str, keys: list[str],
                      cols: list[str], where: str, layout: Layout) -> None:
    key_list = ", ".join(keys)
    version = "{" + ", ".join(f"'{c}': {c}" for c in ["d", *cols]) + "}"
    row = con.execute(f"SELECT {key_list}, count(DISTINCT {version}) FROM {events} "
                      f"WHERE {where} GROUP BY {key_list}, fam "
                      f"HAVING count(DISTINCT {version}) > 1 LIMIT 1").fetchone()
    if row is not None:
        raise MalformedExportData(
            f"table {layout.table.name}: key ({_describe_key(layout, row)}) has {row[-1]} "
            "different versions and the output carries no timestamps to order them")

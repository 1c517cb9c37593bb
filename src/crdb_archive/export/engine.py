"""The embedded engine: a DuckDB database on disk that spills, and the events table it fills.

One events table per exported table holds every row version of every data file, as text::

    f INTEGER      the file's position in path order
    n BIGINT       its line (ndjson, CSV) or row (Parquet, from 1)
    w BIGINT, l INTEGER   the HLC timestamp (NULL when the output has none)
    d BOOLEAN      a delete
    fam VARCHAR    the column family of a split_column_families topic ('' otherwise)
    a INTEGER[]    columns absent from the version (written before they were added)
    k0.. VARCHAR   the primary key's values
    c0.. VARCHAR or VARCHAR[]   every column's value

DuckDB gets a memory limit, a spill directory and a bounded number of threads, so that the
consolidation of any size of output runs in bounded memory.

Raises :class:`~crdb_archive.errors.MalformedExportData` for a Parquet file that cannot be read
or holds an invalid event type or timestamp, :class:`~crdb_archive.errors.UnsupportedExport`
for a Parquet column the schema does not know.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from crdb_archive.errors import MalformedExportData, UnsupportedExport
from crdb_archive.export.sqltypes import ident, is_array, literal
from crdb_archive.export.staging import Layout

_EVENT_TYPE = "__crdb__event_type"
_TIMESTAMP_COLUMNS = ("__crdb__updated", "__crdb__mvcc_timestamp")


def connect(work_dir: Path, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    """A DuckDB database in ``work_dir`` that spills to ``work_dir/spill``."""
    spill = work_dir / "spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(work_dir / "snapshot.duckdb"), config={
        "memory_limit": memory_limit,
        "temp_directory": str(spill),
        "threads": threads,
        # Order comes from ORDER BY where it matters; without this DuckDB may buffer more.
        "preserve_insertion_order": False,
        "autoinstall_known_extensions": False,
    })
    con.execute("SET TimeZone = 'UTC'")
    return con


def create_events(con: duckdb.DuckDBPyConnection, name: str, layout: Layout) -> None:
    keys = ", ".join(f"k{j} VARCHAR" for j in range(len(layout.key)))
    cols = ", ".join(f"c{i} {'VARCHAR[]' if is_array(c.type) else 'VARCHAR'}"
                     for i, c in enumerate(layout.columns))
    con.execute(f"CREATE TABLE {name} (f INTEGER, n BIGINT, w BIGINT, l INTEGER, d BOOLEAN, "
                f"fam VARCHAR, a INTEGER[], {keys}, {cols})")


def load_staged(con: duckdb.DuckDBPyConnection, name: str, layout: Layout, staged: Path,
                longest: int) -> None:
    """Insert a staging file (:mod:`staging`) into the events table."""
    # The reader's buffers grow with maximum_object_size: ask for what the longest line needs.
    object_size = max(longest + 1024, 1 << 20)
    struct = ", ".join(f"c{i} {'VARCHAR[]' if is_array(c.type) else 'VARCHAR'}"
                       for i, c in enumerate(layout.columns))
    columns = (f"{{'f': 'INTEGER', 'n': 'BIGINT', 'w': 'BIGINT', 'l': 'INTEGER', "
               f"'d': 'BOOLEAN', 'fam': 'VARCHAR', 'a': 'INTEGER[]', 'k': 'VARCHAR[]', "
               f"'c': 'STRUCT({struct})'}}")
    keys = ", ".join(f"k[{j + 1}]" for j in range(len(layout.key)))
    cols = ", ".join(f"c.c{i}" for i in range(len(layout.columns)))
    con.execute(
        f"INSERT INTO {name} SELECT f, n, w, l, d, fam, a, {keys}, {cols} FROM read_json("
        f"{literal(str(staged))}, format = 'newline_delimited', columns = {columns}, "
        f"maximum_object_size = {object_size})")


def _as_text(expr: str, duck: str) -> str:
    """SQL giving the text CockroachDB would have written for a Parquet value."""
    if duck.endswith("[]"):
        return f"list_transform({expr}, lambda e: {_as_text('e', duck[:-2])})"
    if duck == "BOOLEAN":
        return f"CASE WHEN {expr} THEN 'true' WHEN NOT {expr} THEN 'false' END"
    if duck == "BLOB":
        return f"'\\x' || lower(hex({expr}))"
    if duck == "VARCHAR":
        return expr
    return f"CAST({expr} AS VARCHAR)"


def load_parquet(con: duckdb.DuckDBPyConnection, name: str, layout: Layout, path: Path,
                 shown: str, f: int, family: str, timestamp: str | None,
                 key_known: bool) -> None:
    """Check one Parquet file (changefeed or EXPORT) and insert its rows."""
    source = f"read_parquet({literal(str(path))}, file_row_number = true)"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:
        raise MalformedExportData(
            f"{shown}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    types = {str(row[0]): str(row[1]) for row in described}
    values = _parquet_values(types, layout, shown)
    ts_expr = None
    if timestamp is not None:
        ts_col = f"__crdb__{timestamp}"
        if ts_col not in types:
            raise MalformedExportData(f"{shown}: no {ts_col} column (the other files have one)")
        ts_expr = ident(ts_col)
    try:
        _check_parquet_rows(con, source, shown, types, ts_expr)
        delete = f"{ident(_EVENT_TYPE)} = 'd'" if _EVENT_TYPE in types else "false"
        wall = logical = "NULL"
        if ts_expr is not None:
            wall = f"CAST(split_part({ts_expr}, '.', 1) AS BIGINT)"
            logical = f"CAST(rpad(split_part({ts_expr}, '.', 2), 10, '0') AS INTEGER)"
        absent = [i for i in range(len(layout.columns)) if i not in values]
        keys = (_parquet_keys(layout, values, shown) if key_known
                else [f"'{f}:' || (file_row_number + 1)"])
        cols = [values.get(i, "NULL") for i in range(len(layout.columns))]
        con.execute(
            f"INSERT INTO {name} SELECT {f}, file_row_number + 1, {wall}, {logical}, "
            f"coalesce({delete}, false), {literal(family)}, "
            f"CASE WHEN {delete} THEN []::INTEGER[] ELSE {absent}::INTEGER[] END, "
            f"{', '.join(keys)}, {', '.join(cols)} FROM {source}")
    except duckdb.Error as exc:
        raise MalformedExportData(
            f"{shown}: cannot read its rows ({str(exc).splitlines()[0]})") from None


def _parquet_values(types: dict[str, str], layout: Layout, shown: str) -> dict[int, str]:
    """The text of each of the table's columns the file has, by column index; raises
    UnsupportedExport for a column the table does not have."""
    values: dict[int, str] = {}
    for column, duck in types.items():
        if column == "file_row_number" or column.startswith("__crdb__"):
            continue
        i = layout.index(column)
        if i is None:
            raise UnsupportedExport(
                f"{shown}: column {column!r} is not in the schema of table {layout.table.name}")
        values[i] = _as_text(ident(column), duck)
    return values


def _check_parquet_rows(con: duckdb.DuckDBPyConnection, source: str, shown: str,
                        types: dict[str, str], ts_expr: str | None) -> None:
    """Raises MalformedExportData naming the first row whose event type or timestamp is not
    one a changefeed writes."""
    problems = []
    if _EVENT_TYPE in types:
        problems.append(f"{ident(_EVENT_TYPE)} IS NULL OR {ident(_EVENT_TYPE)} "
                        "NOT IN ('c', 'u', 'd')")
    if ts_expr is not None:
        problems.append(f"NOT coalesce(regexp_full_match({ts_expr}, '[0-9]{{1,20}}"
                        "(\\.[0-9]{1,10})?'), false)")
    if not problems:
        return
    bad = con.execute(f"SELECT file_row_number FROM {source} WHERE "
                      + " OR ".join(f"({p})" for p in problems) + " LIMIT 1").fetchone()
    if bad is not None:
        raise MalformedExportData(
            f"{shown}: row {int(bad[0]) + 1}: invalid {_EVENT_TYPE} or timestamp")


def _parquet_keys(layout: Layout, values: dict[int, str], shown: str) -> list[str]:
    """The primary key columns' texts; raises UnsupportedExport for one the file lacks."""
    missing = [layout.columns[i].name for i in layout.key if i not in values]
    if missing:
        raise UnsupportedExport(
            f"{shown}: no primary key column {missing[0]!r} to key the rows by")
    return [values[i] for i in layout.key]


def first_invalid(con: duckdb.DuckDBPyConnection, name: str,
                  checks: list[tuple[int, str]]) -> tuple[int, int, int, str] | None:
    """(file, line, column, text) of the first value that is not of its column's type."""
    if not checks:
        return None
    row = con.execute(f"SELECT f, n FROM {name} WHERE "
                      + " OR ".join(cond for _, cond in checks) + " LIMIT 1").fetchone()
    if row is None:
        return None
    f, n = int(row[0]), int(row[1])
    for i, cond in checks:
        hit = con.execute(f"SELECT CAST(c{i} AS VARCHAR) FROM {name} WHERE f = {f} AND n = {n} "
                          f"AND {cond} LIMIT 1").fetchone()
        if hit is not None:
            return f, n, i, str(hit[0])
    return f, n, -1, ""

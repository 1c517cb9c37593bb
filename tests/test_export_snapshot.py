"""Snapshots of generated changefeed and EXPORT output, checked against the test's own model
of the tables (computed from the event history), read back by DuckDB and by the csv module."""

from __future__ import annotations

import csv
import gzip
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import zstandard

from crdb_archive.errors import MalformedExportData, UnsupportedExport
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import Column, Schema, Table
from crdb_archive.export.scan import ListedFile, scan_export
from crdb_archive.export.snapshot import Snapshot, build_snapshot
from support.changefeeds import (
    BOOL,
    BYTES,
    DECIMAL_ANY,
    INT8,
    INT_ARRAY,
    JSONB,
    STRING,
    STRING_ARRAY,
    TIMESTAMP,
    TIMESTAMPTZ,
    UUID,
    Event,
    Feed,
    History,
    JsonRaw,
    compress,
    csv_value,
    decimal,
    expected_csv_value,
    expected_parquet_value,
    hlc,
    table,
    write_export,
)

ACCOUNTS = table("accounts", [
    Column("id", INT8, nullable=False),
    Column("name", STRING, nullable=False),
    Column("balance", decimal(12, 2)),
    Column("doc", JSONB),
    Column("data", BYTES),
    Column("opened", TIMESTAMPTZ),
    Column("seen", TIMESTAMP),
    Column("tags", STRING_ARRAY),
    Column("vip", BOOL),
    Column("note", STRING),  # added by a schema change with backfill
], ("id",))
# A REGIONAL BY ROW table: the hidden crdb_region leads the key.
ITEMS = table("items", [
    Column("sku", STRING, nullable=False),
    Column("qty", INT8, nullable=False),
    Column("ref", UUID),
    Column("amount", DECIMAL_ANY),
    Column("counts", INT_ARRAY),
    Column("crdb_region", STRING, nullable=False, hidden=True),
], ("crdb_region", "sku"))
SCHEMA = Schema(tables=(ACCOUNTS, ITEMS))
OLD_COLUMNS = [c.name for c in ACCOUNTS.columns if c.name != "note"]
BACKFILL_AT = 500
REGIONS = ("us-east1", "europe-west1")


def _account(i: int, version: int) -> dict[str, Any]:
    base = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    return {
        "id": i, "name": f"account {i} \"v{version}\", π",
        "balance": JsonRaw(f"{i * 100 + version}.{version % 10}0"),
        "doc": JsonRaw(f'{{"v": {version}.50, "big": 12345678901234567890.123, "n": [1, null]}}'),
        "data": bytes([i % 256, version % 256, 0, 255]),
        "opened": base + timedelta(seconds=i, microseconds=version),
        "seen": datetime(2023, 1, 1) + timedelta(minutes=version),
        "tags": ["a", None, f"q\"{version}\\", "x,y"] if i % 2 else [],
        "vip": bool(version % 2),
        "note": None,
    }


def _item(sku: int, region: str, version: int) -> dict[str, Any]:
    return {"sku": f"sku-{sku}", "qty": version, "ref": uuid.UUID(int=sku * 1000 + version),
            "amount": JsonRaw(f"{version}.{'0' * version}1"), "counts": [version, None, -1],
            "crdb_region": region}


def _with_note(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "note": "n/a"} if row.get("note") is None else row


def write_history(feed: Feed) -> tuple[History, list[Hlc]]:
    """A history across sessions: inserts, updates, deletes, a restart with re-emitted
    duplicates, rows newer than T in files before T.RESOLVED, and a schema change whose
    backfill brings the new column to every live row."""
    h = History(SCHEMA)
    resolved: list[Hlc] = []
    a = feed.session(node=1, sink=1)
    b = feed.session(node=2, sink=1)
    # Session A: first versions of accounts 1..6 and items.
    first = [h.put("accounts", _account(i, 1), hlc(10 + i)) for i in range(1, 7)]
    a.file(hlc(5), "accounts", first[:3], columns=OLD_COLUMNS)
    a.file(hlc(5), "accounts", first[3:], columns=OLD_COLUMNS)
    items = [h.put("items", _item(s, r, 1), hlc(20 + s)) for s in range(1, 4) for r in REGIONS]
    b.file(hlc(5), "items", items)
    resolved.append(hlc(100))
    feed.resolved(hlc(100))
    # Updates and deletes; one file holds rows newer than the next RESOLVED time.
    upd = [h.put("accounts", _account(2, 2), hlc(110)), h.delete("accounts", (3,), hlc(120)),
           h.put("accounts", _account(7, 1), hlc(130))]
    newer = h.put("accounts", _account(1, 3), hlc(210))  # after T=200, in a file before it
    a.file(hlc(101), "accounts", [*upd, newer], columns=OLD_COLUMNS)
    gone = h.delete("items", (REGIONS[1], "sku-2"), hlc(150))
    b.file(hlc(101), "items", [gone, h.put("items", _item(3, REGIONS[0], 2), hlc(160))])
    resolved.append(hlc(200))
    feed.resolved(hlc(200))
    # Session A dies after a write past 200; session C restarts from 200 and re-emits it.
    lost = h.put("accounts", _account(4, 2), hlc(220))
    a.file(hlc(201), "accounts", [newer, lost], columns=OLD_COLUMNS)
    c = feed.session(node=1, sink=1)
    c.file(hlc(201), "accounts", [newer, lost, lost, h.delete("accounts", (5,), hlc(230))],
           columns=OLD_COLUMNS)
    c.file(hlc(201), "items", [h.put("items", _item(1, REGIONS[1], 3), hlc(240))])
    resolved.append(hlc(300))
    feed.resolved(hlc(300))
    # ALTER TABLE accounts ADD COLUMN note STRING DEFAULT 'n/a': the backfill re-emits every
    # live row with the new column at the schema change time, under a new schema id.
    live = h.model_at(hlc(BACKFILL_AT))["accounts"]
    backfill = [h.put("accounts", _with_note(row), hlc(BACKFILL_AT),
                      mvcc=h.last_write("accounts", key, hlc(BACKFILL_AT)))
                for key, row in live.items()]
    c.file(hlc(301), "accounts", backfill[:2], schema_id=2)
    c.file(hlc(301), "accounts", backfill[2:], schema_id=2)
    after = h.put("accounts", {**_account(6, 4), "note": "after"}, hlc(600))
    c.file(hlc(501), "accounts", [after], schema_id=2)
    resolved.append(hlc(700))
    feed.resolved(hlc(700))
    # Written after the last RESOLVED: not part of any snapshot.
    c.file(hlc(701), "accounts", [h.put("accounts", _account(8, 1), hlc(710))], schema_id=2)
    return h, resolved


def snapshot_of(root: Path, tmp: Path, schema: Schema, as_of: str = "latest",
                memory_limit: str = "256MB", **kwargs: Any) -> Snapshot:
    listing = [ListedFile(p.relative_to(root).as_posix(), p.stat().st_size)
               for p in root.rglob("*") if p.is_file()]
    scan = scan_export(listing, schema, lambda p: (root / p).open("rb"),
                       allow_gaps=kwargs.pop("allow_gaps", False))
    return build_snapshot(scan, schema, source_dir=root, out_dir=tmp / "out",
                          work_dir=tmp / "work", as_of=as_of, memory_limit=memory_limit,
                          **kwargs)


def _key_of(t: Table, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in t.primary_key)


def assert_matches_model(snapshot: Snapshot, schema: Schema,
                         model: dict[str, dict[tuple[Any, ...], dict[str, Any]]]) -> None:
    """DuckDB (its own connection) and the csv module read every file; both agree with the
    model, and the files with each other."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for result in snapshot.tables:
        t = schema.table(str(result.table))
        visible = list(t.visible_columns)
        expected = model[t.name.name]
        assert result.row_count == len(expected), result.table
        names = [c.name for c in visible]
        got = con.execute(f"SELECT * FROM read_parquet('{result.parquet}')").fetchall()
        assert [d[0] for d in con.description or []] == names
        want_parquet = sorted(
            (tuple(expected_parquet_value(row.get(c.name), c.type) for c in visible)
             for row in expected.values()), key=repr)
        assert sorted(got, key=repr) == want_parquet, result.table
        with gzip.open(result.csv, "rt", encoding="utf-8", newline="") as stream:
            records = list(csv.reader(stream))
        assert records[0] == names
        got_csv = sorted((tuple(csv_value(v, c.type) for v, c in zip(r, visible, strict=True))
                          for r in records[1:]), key=repr)
        want_csv = sorted((tuple(expected_csv_value(row.get(c.name), c.type) for c in visible)
                           for row in expected.values()), key=repr)
        assert got_csv == want_csv, result.table
    con.close()


def _visible_model(h: History, at: Hlc | None) -> dict[str, dict[tuple[Any, ...], Any]]:
    return h.model_at(at)


FEEDS = [
    pytest.param({"envelope": "wrapped", "timestamp": "updated", "compression": "gzip",
                  "partitioning": "daily"}, id="ndjson-wrapped-updated-gzip-daily"),
    pytest.param({"envelope": "bare", "timestamp": "updated", "compression": "zstd",
                  "partitioning": "hourly"}, id="ndjson-bare-updated-zstd-hourly"),
    pytest.param({"envelope": "wrapped", "timestamp": "mvcc_timestamp", "compression": "none",
                  "partitioning": "flat", "full_table_name": True},
                 id="ndjson-wrapped-mvcc-flat-full_table_name"),
    pytest.param({"format": "parquet", "timestamp": "updated", "partitioning": "daily"},
                 id="parquet-updated-daily"),
]


@pytest.mark.parametrize("options", FEEDS)
def test_changefeed_snapshots_match_the_history(tmp_path: Path, options: dict[str, Any]) -> None:
    root = tmp_path / "feed"
    feed = Feed(root, SCHEMA, **options)
    history, resolved = write_history(feed)
    for at in resolved:
        work = tmp_path / f"at-{at.wall}"
        snapshot = snapshot_of(root, work, SCHEMA, as_of=at.decimal())
        assert snapshot.as_of == at
        assert snapshot.format == feed.format
        if feed.format == "ndjson":
            assert (snapshot.envelope, snapshot.timestamp) == (feed.envelope, feed.timestamp)
        assert_matches_model(snapshot, SCHEMA, history.model_at(at))
        accounts = next(t for t in snapshot.tables if t.table.name == "accounts")
        stale = [n for n in accounts.notes if n.startswith("column note:")]
        assert bool(stale) == (at < hlc(BACKFILL_AT)), accounts.notes
    latest = snapshot_of(root, tmp_path / "latest", SCHEMA)
    assert latest.as_of == resolved[-1]
    # Nothing is left in the work directory.
    assert not any((tmp_path / "latest" / "work").iterdir())


def test_csv_changefeed_initial_scan(tmp_path: Path) -> None:
    root = tmp_path / "feed"
    feed = Feed(root, SCHEMA, format="csv", timestamp=None, compression="gzip")
    h = History(SCHEMA)
    rows = [h.put("accounts", {**_account(i, 1), "note": f"n{i}"}, hlc(10)) for i in range(40)]
    items = [h.put("items", _item(s, REGIONS[s % 2], 1), hlc(10)) for s in range(10)]
    a, b = feed.session(), feed.session(node=2)
    a.file(hlc(5), "accounts", rows[:25])
    a.file(hlc(5), "items", items)
    b.file(hlc(5), "accounts", rows[20:] + rows[:3])  # at-least-once: repeats collapse
    snapshot = snapshot_of(root, tmp_path, SCHEMA)
    assert snapshot.as_of is None
    assert snapshot.format == "csv"
    assert_matches_model(snapshot, SCHEMA, h.model_at(None))


def test_ten_thousand_keys(tmp_path: Path) -> None:
    schema = Schema(tables=(ACCOUNTS,))
    root = tmp_path / "feed"
    feed = Feed(root, schema, compression="gzip")
    h = History(schema)
    sessions = [feed.session(node=n) for n in (1, 2, 3)]
    batch: list[Event] = []
    for i in range(10_000):
        batch.append(h.put("accounts", {**_account(i, 1), "note": "x"}, hlc(10, i)))
        if i % 3 == 0:
            batch.append(h.put("accounts", {**_account(i, 2), "note": "y"}, hlc(20, i)))
        if i % 7 == 0:
            batch.append(h.delete("accounts", (i,), hlc(30, i)))
        if len(batch) >= 1500:
            sessions[i % 3].file(hlc(5), "accounts", batch)
            batch = []
    sessions[0].file(hlc(5), "accounts", batch)
    feed.resolved(hlc(40))
    snapshot = snapshot_of(root, tmp_path, schema)
    model = h.model_at(hlc(40))
    assert snapshot.tables[0].row_count == len(model["accounts"]) == 10_000 - 1429
    assert_matches_model(snapshot, schema, model)


def test_a_table_larger_than_the_memory_limit(tmp_path: Path) -> None:
    # About 190 MB of row versions and 125 MB of result against a 128 MB limit on one thread:
    # DuckDB must spill to finish, and the result must still be right.
    wide = table("wide", [Column("id", INT8, nullable=False), Column("body", STRING),
                          Column("n", INT8)], ("id",))
    schema = Schema(tables=(wide,))
    root = tmp_path / "feed"
    feed = Feed(root, schema, compression="zstd")
    h = History(schema)
    session = feed.session()
    batch = []
    keys = 200_000
    for version in (1, 2):
        for i in range(keys):
            if version == 2 and i % 2:
                continue
            batch.append(h.put("wide", {"id": i, "body": f"{i:08d}-{version}-" + "z" * 600,
                                        "n": version}, hlc(10 * version, i)))
            if len(batch) == 25_000:
                session.file(hlc(5), "wide", batch)
                batch = []
    if batch:
        session.file(hlc(5), "wide", batch)
    feed.resolved(hlc(100))
    snapshot = snapshot_of(root, tmp_path, schema, memory_limit="128MB", threads=1)
    result = snapshot.tables[0]
    assert result.row_count == keys
    con = duckdb.connect()
    n_sum, bodies = con.execute(
        f"SELECT sum(n), count(DISTINCT body) FROM read_parquet('{result.parquet}')").fetchone() \
        or (0, 0)
    model = h.model_at(hlc(100))["wide"]
    assert n_sum == sum(r["n"] for r in model.values())
    assert bodies == keys
    sample = con.execute(f"SELECT id, body, n FROM read_parquet('{result.parquet}') "
                         "WHERE id % 9973 = 0 ORDER BY id").fetchall()
    assert sample == [(k[0], model[k]["body"], model[k]["n"]) for k in sorted(model)
                      if k[0] % 9973 == 0]


@pytest.mark.parametrize(("fmt", "compression"), [("csv", "none"), ("csv", "gzip"),
                                                  ("parquet", "none")])
def test_export_snapshots(tmp_path: Path, fmt: str, compression: str) -> None:
    schema = Schema(tables=(ACCOUNTS,))
    h = History(schema)
    rows = [h.put("accounts", {**_account(i, 1), "note": f"n{i}"}, hlc(1))
            for i in range(2500)]
    root = tmp_path / "export"
    root.mkdir()
    write_export(root, ACCOUNTS, [e.row for e in rows if e.row], fmt, compression)
    snapshot = snapshot_of(root, tmp_path, schema)
    assert (snapshot.kind, snapshot.format, snapshot.as_of) == ("export", fmt, None)
    assert_matches_model(snapshot, schema, h.model_at(None))


def test_export_with_a_hidden_key_is_taken_as_written(tmp_path: Path) -> None:
    schema = Schema(tables=(ITEMS,))
    h = History(schema)
    rows = [h.put("items", _item(s, REGIONS[s % 2], 1), hlc(1)) for s in range(30)]
    root = tmp_path / "export"
    root.mkdir()
    write_export(root, ITEMS, [e.row for e in rows if e.row], "csv", chunk_rows=7)
    snapshot = snapshot_of(root, tmp_path, schema)
    assert snapshot.tables[0].row_count == 30
    assert any("hidden" in n for n in snapshot.tables[0].notes)
    assert_matches_model(snapshot, schema, h.model_at(None))


def test_export_with_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    schema = Schema(tables=(ACCOUNTS,))
    row = {**_account(1, 1), "note": "x"}
    root = tmp_path / "export"
    root.mkdir()
    write_export(root, ACCOUNTS, [row, {**_account(2, 1), "note": "y"}, row], "csv")
    with pytest.raises(MalformedExportData, match=r"holds key \(id=1\) 2 times"):
        snapshot_of(root, tmp_path, schema)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _one_file_feed(root: Path, **options: Any) -> tuple[Feed, Path]:
    schema = Schema(tables=(ACCOUNTS,))
    feed = Feed(root, schema, **options)
    h = History(schema)
    path = feed.session().file(hlc(5), "accounts", [
        h.put("accounts", {**_account(i, 1), "note": "x"}, hlc(10 + i)) for i in range(5)])
    feed.resolved(hlc(50))
    return feed, path


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_a_broken_line_names_its_file_and_line(tmp_path: Path, compression: str) -> None:
    root = tmp_path / "feed"
    _, path = _one_file_feed(root, compression=compression)
    text = _decompress(path.read_bytes(), compression).decode().splitlines()
    text[2] = text[2][:40]
    path.write_bytes(compress(("\n".join(text) + "\n").encode(), compression))
    rel = path.relative_to(root).as_posix()
    with pytest.raises(MalformedExportData, match=rf"^{rel}: line 3: not JSON"):
        snapshot_of(root, tmp_path, Schema(tables=(ACCOUNTS,)))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _decompress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


def test_a_truncated_gzip_file_is_damage(tmp_path: Path) -> None:
    root = tmp_path / "feed"
    _, path = _one_file_feed(root, compression="gzip")
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(MalformedExportData, match="damaged gzip stream"):
        snapshot_of(root, tmp_path, Schema(tables=(ACCOUNTS,)))


def test_a_value_of_the_wrong_type_names_its_line(tmp_path: Path) -> None:
    root = tmp_path / "feed"
    _, path = _one_file_feed(root)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace('"opened": "', '"opened": "not a time ')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MalformedExportData, match=r"line 4: column 'opened'.*TIMESTAMPTZ"):
        snapshot_of(root, tmp_path, Schema(tables=(ACCOUNTS,)))


def test_a_feed_without_timestamps_cannot_give_a_point_in_time(tmp_path: Path) -> None:
    root = tmp_path / "feed"
    _one_file_feed(root, timestamp=None)
    with pytest.raises(UnsupportedExport, match=r"without the updated \(or mvcc_timestamp\)"):
        snapshot_of(root, tmp_path, Schema(tables=(ACCOUNTS,)))


def test_an_unknown_column_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "feed"
    _one_file_feed(root)
    fewer = Table(name=ACCOUNTS.name, columns=ACCOUNTS.columns[:-1], primary_key=("id",))
    with pytest.raises(UnsupportedExport, match="column 'note' is not in the schema"):
        snapshot_of(root, tmp_path, Schema(tables=(fewer,)))


def test_allow_gaps_records_the_gap(tmp_path: Path) -> None:
    schema = Schema(tables=(ACCOUNTS,))
    root = tmp_path / "feed"
    feed = Feed(root, schema)
    h = History(schema)
    s = feed.session()
    s.file(hlc(5), "accounts", [h.put("accounts", {**_account(1, 1), "note": "a"}, hlc(6))])
    s.file(hlc(7), "accounts", [h.put("accounts", {**_account(2, 1), "note": "b"}, hlc(8))],
           skip_id=True)
    feed.resolved(hlc(9))
    snapshot = snapshot_of(root, tmp_path, schema, allow_gaps=True)
    assert len(snapshot.gaps) == 1
    assert snapshot.gaps[0].first == 1
    assert_matches_model(snapshot, schema, h.model_at(hlc(9)))

"""File names of changefeed sinks and EXPORT, HLC forms, and the choice of the snapshot time."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdb_archive.errors import (
    IncompleteExport,
    InvalidAsOf,
    MalformedExportData,
    UnrecognisedExportSource,
    UnsupportedExport,
)
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import Column, Schema
from crdb_archive.export.names import (
    parse_data_file,
    parse_export_file,
    parse_resolved_file,
    partitioning_of,
)
from crdb_archive.export.plan import plan_snapshot
from crdb_archive.export.scan import ListedFile, scan_export
from support.changefeeds import INT8, STRING, Feed, History, hlc, table

TS = "202401020304050000000120000000007"  # 2024-01-02 03:04:05 + 12 ns, logical 7


def test_hlc_forms_agree() -> None:
    parsed = Hlc.parse_file_time(TS)
    assert parsed == Hlc(1704164645_000000012, 7)
    assert parsed.file_time() == TS
    assert Hlc.parse_decimal(parsed.decimal()) == parsed
    assert Hlc.parse_decimal("1704164645000000012.0000000007") == parsed
    assert Hlc.parse_decimal("1704164645000000012.0000000007") > Hlc(1704164645000000012, 6)
    assert Hlc.parse_decimal("5") == Hlc(5, 0)
    assert Hlc.parse_user(TS) == parsed
    for bad in ("", "1.2.3", "abc", "1." + "0" * 11, "20240230000000000000000000000000x"):
        with pytest.raises(ValueError):
            Hlc.parse_user(bad)


@pytest.mark.parametrize(("name", "topic", "table_part", "family"), [
    ("orders", "orders", "orders", None),
    ("my-table-with-dashes", "my-table-with-dashes", "my-table-with-dashes", None),
    ("shop.public.orders", "shop.public.orders", "shop.public.orders", None),
    ("orders+primary", "orders+primary", "orders", "primary"),
    ("a-b+fam-1", "a-b+fam-1", "a-b", "fam-1"),
])
def test_data_file_names_parse_from_both_ends(
        name: str, topic: str, table_part: str, family: str | None) -> None:
    path = f"2024-01-02/{TS}-0a1b2c3d4e5f6071-3-12-0000001f-{name}-2c.ndjson.gz"
    parsed = parse_data_file(path)
    assert parsed is not None
    assert (parsed.session, parsed.node, parsed.sink, parsed.file_id) == (
        "0a1b2c3d4e5f6071", 3, 12, 31)
    assert (parsed.topic, parsed.table_part, parsed.family) == (topic, table_part, family)
    assert parsed.schema_id == 0x2C
    assert (parsed.format, parsed.compression, parsed.partitioning) == ("ndjson", "gzip", "daily")
    assert parsed.time == Hlc.parse_file_time(TS)


@pytest.mark.parametrize(("suffix", "fmt", "compression"), [
    (".ndjson", "ndjson", "none"), (".ndjson.zst", "ndjson", "zstd"), (".csv", "csv", "none"),
    (".csv.gz", "csv", "gzip"), (".parquet", "parquet", "none"),
])
def test_extensions(suffix: str, fmt: str, compression: str) -> None:
    parsed = parse_data_file(f"{TS}-0a1b2c3d4e5f6071-1-1-00000000-t-1{suffix}")
    assert parsed is not None
    assert (parsed.format, parsed.compression, parsed.partitioning) == (fmt, compression, "flat")


@pytest.mark.parametrize("path", [
    f"{TS}-0a1b2c3d4e5f6071-1-1-0000000-t-1.ndjson",  # 7 hex digits of file id
    f"{TS}-0a1b2c3d4e5f6071-1-1-00000000-t.ndjson",  # no schema id
    f"{TS[:-1]}-0a1b2c3d4e5f6071-1-1-00000000-t-1.ndjson",  # 32 digits
    f"{TS}-0a1b2c3d4e5f6071-x-1-00000000-t-1.ndjson",
    f"{TS}-0a1b2c3d4e5f6071-1-1-00000000-t-1.parquet.gz",
    f"2024-01-03/{TS}-0a1b2c3d4e5f6071-1-1-00000000-t-1.ndjson",  # wrong day
    f"2024-01-02/04/{TS}-0a1b2c3d4e5f6071-1-1-00000000-t-1.ndjson",  # wrong hour
    f"other/{TS}-0a1b2c3d4e5f6071-1-1-00000000-t-1.ndjson",
])
def test_damaged_data_file_names(path: str) -> None:
    with pytest.raises(ValueError, match=r"not|partition|never"):
        parse_data_file(path)


def test_resolved_and_partitions() -> None:
    parsed = parse_resolved_file(f"2024-01-02/03/{TS}.RESOLVED")
    assert parsed is not None
    assert (parsed.time, parsed.partitioning) == (Hlc.parse_file_time(TS), "hourly")
    assert parse_resolved_file("x.ndjson") is None
    with pytest.raises(ValueError, match="resolved"):
        parse_resolved_file("2024.RESOLVED")
    assert partitioning_of("a") == "flat"
    assert partitioning_of("2024-01-02/a") == "daily"
    assert partitioning_of("2024-01-02/23/a") == "hourly"
    # A RESOLVED file sorts after every data file of its time: '-' < '.'.
    data = f"{TS}-0a1b2c3d4e5f6071-1-1-00000000-t-1.ndjson"
    assert data < f"{TS}.RESOLVED"


def test_export_names() -> None:
    parsed = parse_export_file("export16c5b2a3f1e0d9a8-n871623847.3.csv.gz")
    assert parsed is not None
    assert (parsed.export_id, parsed.node, parsed.chunk, parsed.format, parsed.compression) == (
        "16c5b2a3f1e0d9a8", 871623847, 3, "csv", "gzip")
    parsed = parse_export_file("export16c5-n1.0.parquet")
    assert parsed is not None
    assert parsed.format == "parquet"
    assert parse_export_file("export16c5-n1.0.json") is None


# --- scan and plan over generated trees -------------------------------------------------------

SCHEMA = Schema(tables=(table("t", [Column("id", INT8, nullable=False), Column("v", STRING)],
                              ("id",)),))


def _listing(root: Path) -> list[ListedFile]:
    return [ListedFile(p.relative_to(root).as_posix(), p.stat().st_size)
            for p in root.rglob("*") if p.is_file()]


def _scan(root: Path, schema: Schema = SCHEMA, allow_gaps: bool = False):  # type: ignore[no-untyped-def]
    return scan_export(_listing(root), schema, lambda p: (root / p).open("rb"),
                       allow_gaps=allow_gaps)


def _small_feed(root: Path, **options: object) -> Feed:
    feed = Feed(root, SCHEMA, **options)  # type: ignore[arg-type]
    history = History(SCHEMA)
    a = feed.session()
    e1 = history.put("t", {"id": 1, "v": "a"}, hlc(10))
    a.file(hlc(5), "t", [e1])
    feed.resolved(hlc(20))
    e2 = history.put("t", {"id": 1, "v": "b"}, hlc(30))
    a.file(hlc(21), "t", [e2])
    feed.resolved(hlc(40))
    return feed


def test_scan_and_plan_choose_resolved_times(tmp_path: Path) -> None:
    _small_feed(tmp_path)
    scan = _scan(tmp_path)
    assert (scan.kind, scan.format, scan.partitioning) == ("changefeed", "ndjson", "daily")
    assert [r.time for r in scan.resolved] == [hlc(20), hlc(40)]
    latest = plan_snapshot(scan)
    assert latest.as_of == hlc(40)
    assert len(latest.data_files) == 2
    earlier = plan_snapshot(scan, hlc(20).decimal())
    assert earlier.as_of == hlc(20)
    assert len(earlier.data_files) == 1
    assert earlier.excluded_files == 1
    assert plan_snapshot(scan, hlc(20).file_time()).as_of == hlc(20)
    with pytest.raises(InvalidAsOf, match="not one of the 2 RESOLVED"):
        plan_snapshot(scan, hlc(21).decimal())
    with pytest.raises(InvalidAsOf, match="not 'latest'"):
        plan_snapshot(scan, "yesterday")


def test_plan_orders_whole_paths_across_hourly_partitions(tmp_path: Path) -> None:
    feed = Feed(tmp_path, SCHEMA, partitioning="hourly")
    history = History(SCHEMA)
    a = feed.session()
    a.file(hlc(3590), "t", [history.put("t", {"id": 1, "v": "a"}, hlc(3595))])
    feed.resolved(hlc(3599))
    a.file(hlc(3600), "t", [history.put("t", {"id": 2, "v": "b"}, hlc(3601))])
    feed.resolved(hlc(3700))
    scan = _scan(tmp_path)
    plan = plan_snapshot(scan, hlc(3599).decimal())
    assert [f.path.split("/")[1] for f in plan.data_files] == ["00"]
    assert len(plan_snapshot(scan).data_files) == 2


def test_gap_is_refused_or_recorded(tmp_path: Path) -> None:
    feed = Feed(tmp_path, SCHEMA)
    history = History(SCHEMA)
    a = feed.session()
    a.file(hlc(1), "t", [history.put("t", {"id": 1, "v": "a"}, hlc(2))])
    lost = a.file(hlc(3), "t", [history.put("t", {"id": 2, "v": "a"}, hlc(4))])
    a.file(hlc(5), "t", [history.put("t", {"id": 3, "v": "a"}, hlc(6))])
    lost.unlink()
    with pytest.raises(IncompleteExport, match=r"file id 00000001 of session .* missing"):
        _scan(tmp_path)
    scan = _scan(tmp_path, allow_gaps=True)
    assert [(g.first, g.last) for g in scan.gaps] == [(1, 1)]


def test_leading_gap_is_a_lost_file(tmp_path: Path) -> None:
    feed = Feed(tmp_path, SCHEMA)
    history = History(SCHEMA)
    feed.session().file(hlc(1), "t", [history.put("t", {"id": 1, "v": "a"}, hlc(2))],
                        skip_id=True)
    with pytest.raises(IncompleteExport, match="00000000"):
        _scan(tmp_path)


def test_refusals(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnrecognisedExportSource, match="empty"):
        _scan(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.txt").write_text("x")
    with pytest.raises(UnrecognisedExportSource, match=r"no changefeed or EXPORT.*README"):
        _scan(other)
    both = tmp_path / "both"
    _small_feed(both)
    (both / "export0a-n1.0.csv").write_text("1,a\n")
    with pytest.raises(UnrecognisedExportSource, match="both EXPORT"):
        _scan(both)
    stray = tmp_path / "stray"
    _small_feed(stray)
    (stray / "2024-01-02" / "notes.txt").write_text("x")
    with pytest.raises(MalformedExportData, match=r"notes\.txt: neither"):
        _scan(stray)
    unknown = tmp_path / "unknown"
    _small_feed(unknown)
    other_schema = Schema(tables=(table("u", [Column("id", INT8)], ("id",)),))
    with pytest.raises(UnsupportedExport, match=r"topic 't' names no table"):
        _scan(unknown, other_schema)
    bad_body = tmp_path / "body"
    feed = _small_feed(bad_body)
    feed.files[-1].write_text('{"resolved": "12.5"}')
    with pytest.raises(MalformedExportData, match=r"RESOLVED.*the body says"):
        _scan(bad_body)
    bad_name = tmp_path / "name"
    feed = _small_feed(bad_name)
    broken = feed.files[0]
    broken.rename(broken.with_name(broken.name.replace("-t-1.", "-t.")))
    with pytest.raises(MalformedExportData, match="not a changefeed data file name"):
        _scan(bad_name)


def test_export_without_resolved_is_taken_whole(tmp_path: Path) -> None:
    (tmp_path / "export0a1b-n1.0.csv").write_text("1,a\n")
    (tmp_path / "export0a1b-n1.1.csv").write_text("2,b\n")
    scan = _scan(tmp_path)
    assert (scan.kind, scan.format, len(scan.export_files)) == ("export", "csv", 2)
    assert plan_snapshot(scan).as_of is None
    with pytest.raises(InvalidAsOf, match="no RESOLVED"):
        plan_snapshot(scan, hlc(1).decimal())


def test_export_files_sit_at_the_top(tmp_path: Path) -> None:
    listing = [ListedFile("export0a1b-n1.0.csv", 4), ListedFile("../export0a1b-n1.1.csv", 4)]
    with pytest.raises(MalformedExportData, match=r"\.\./export0a1b-n1\.1\.csv: not an EXPORT"):
        scan_export(listing, SCHEMA, lambda p: (tmp_path / p).open("rb"))
    listing = [ListedFile("sub/export0a1b-n1.0.csv", 4)]
    with pytest.raises(MalformedExportData, match="not an EXPORT file name"):
        scan_export(listing, SCHEMA, lambda p: (tmp_path / p).open("rb"))

"""The second main job end to end: a changefeed sink (or EXPORT output) archived through the CLI
into an export bundle that our verifier, bagit-python, ``sha256sum -c`` and ``b3sum -c``
accept, that loads into a real PostgreSQL (with ``crdb-archive load`` and with psql alone)
with exactly the rows the test's own history holds at the chosen resolved timestamp, and whose
Parquet files DuckDB reads with the same rows."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import bagit
import pytest

from crdb_archive.demo.changefeeds import write_export
from crdb_archive.export.hlc import Hlc
from support.changefeeds import Feed, History, hlc
from support.cli import run_cli, run_subprocess
from support.export_demo import (
    CUSTOMERS,
    RESOLVED,
    SCHEMA,
    SCHEMA_SQL,
    check_schema_file,
    customer,
    expected_parquet_rows,
    expected_rows,
    loaded_rows,
    parquet_rows,
    write_shop_changefeed,
    write_shop_export,
)
from support.postgres import PostgresDatabase

TABLES = ("customers", "orders")


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, Path, History]:
    """A changefeed sink and its schema file, and the history it was written from."""
    check_schema_file()
    feed = tmp_path / "sink"
    history = write_shop_changefeed(feed)
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    return feed, schema, history


def error_lines(err: str) -> list[str]:
    """stderr without its progress lines (JSON lines where no terminal watches)."""
    return [line for line in err.splitlines() if not line.startswith("{")]


def archive(*args: str) -> dict[str, Any]:
    done = run_subprocess("archive", *args, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def assert_loaded(db: PostgresDatabase, history: History, at: Hlc | None,
                  schema: str = "public") -> None:
    with db.connect() as connection:
        for name in TABLES:
            assert loaded_rows(connection, name, schema) == expected_rows(history, at, name), name


def assert_snapshot_files(bundle: Path, history: History, at: Hlc | None) -> None:
    for name in TABLES:
        got = parquet_rows(bundle / "data" / "snapshot" / f"public.{name}.parquet")
        assert got == expected_parquet_rows(history, at, name), name


def assert_independently_valid(bundle: Path) -> None:
    """bagit-python, sha256sum -c and b3sum -c accept the bundle."""
    bagit.Bag(str(bundle)).validate()
    for tool, manifest in (("sha256sum", "manifest-sha256.txt"),
                           ("sha256sum", "tagmanifest-sha256.txt"),
                           ("b3sum", "manifest-blake3.txt")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        checked = subprocess.run([tool, "-c", manifest], cwd=bundle, capture_output=True,
                                 text=True, check=False)
        assert checked.returncode == 0, (tool, checked.stdout, checked.stderr)


def psql_load(bundle: Path, db: PostgresDatabase, *, ok: bool = True) -> None:
    """The psql commands of the bundle's RESTORE.md, run as written (the URL filled in)."""
    restore = (bundle / "RESTORE.md").read_text()
    section = restore.split("## 2. Load into PostgreSQL with psql\n", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    lines = script.splitlines()
    assert lines[0] == f"cd /path/to/{bundle.name}"
    assert lines[1].startswith("PGURL=")
    server = db.server
    url = f"postgresql://postgres@{server.host}:{server.port}/{db.name}"
    body = "\n".join([f"cd '{bundle}'", f"PGURL='{url}'", *lines[2:]]) + "\n"
    env = {**os.environ, "PGPASSWORD": server.password}
    done = subprocess.run(["bash", "-e", "-c", body], capture_output=True, text=True,
                          check=False, env=env, timeout=120)
    assert (done.returncode == 0) == ok, done.stderr


# --- the main path -------------------------------------------------------------------------


def test_latest_snapshot_verifies_and_loads(shop: tuple[Path, Path, History], tmp_path: Path,
                                             postgres_db: PostgresDatabase) -> None:
    feed, schema, history = shop
    dest = tmp_path / "bundles"
    result = archive(str(feed), "--dest", str(dest), "--schema", str(schema))
    latest = RESOLVED[-1]
    assert result["kind"] == "export"
    assert result["source_kind"] == "changefeed"
    assert result["as_of"] == {"hlc": latest.decimal(), "time": latest.iso()}
    assert result["tables"] == {f"public.{t}": len(history.model_at(latest)[t])
                                for t in TABLES}
    assert result["created"] is True
    bundle = Path(result["bundle"])
    assert bundle.parent == dest
    assert bundle.name == result["name"]
    assert re.fullmatch(r"crdb-export-[0-9a-f]{8}-20240102T000500\.000000000Z", bundle.name)

    # Every source file byte for byte; the schema verbatim; both snapshots per table.
    sources = sorted(p.relative_to(feed).as_posix() for p in feed.rglob("*") if p.is_file())
    for relative in sources:
        assert (bundle / "data" / "export" / relative).read_bytes() == \
            (feed / relative).read_bytes()
    assert (bundle / "data" / "schema" / "schema.sql").read_text() == SCHEMA_SQL
    assert sorted(p.name for p in (bundle / "data" / "snapshot").iterdir()) == [
        "public.customers.csv.gz", "public.customers.parquet",
        "public.orders.csv.gz", "public.orders.parquet"]

    verified = run_subprocess("verify", str(bundle), "--all-digests", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["ok"] is True
    assert_independently_valid(bundle)
    assert_snapshot_files(bundle, history, latest)

    loaded = run_subprocess("load", str(bundle), "--into", postgres_db.dsn, "--json",
                            env=postgres_db.env())
    assert loaded.returncode == 0, loaded.stderr
    answer = json.loads(loaded.stdout)
    assert answer["tables"] == result["tables"]
    assert answer["bundle"] == str(bundle)
    assert postgres_db.server.password not in loaded.stdout + loaded.stderr
    # A password on the command line would be in the process list: refused before any work.
    refused = run_subprocess("load", str(bundle), "--into", postgres_db.url)
    assert refused.returncode == 2
    assert "PGPASSWORD" in refused.stderr
    assert postgres_db.server.password not in refused.stdout + refused.stderr
    assert_loaded(postgres_db, history, latest)
    # The constraints and indexes came after the rows.
    constraints = {row[0] for row in postgres_db.query(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'public.orders'::regclass")}
    assert constraints == {"orders_pkey", "orders_customer_id_fkey"}

    # A re-run finds the bundle and changes nothing.
    again = archive(str(feed), "--dest", str(dest), "--schema", str(schema))
    assert again["created"] is False
    assert again["bundle"] == result["bundle"]
    assert again["tables"] == result["tables"]
    assert [p.name for p in dest.iterdir()] == [bundle.name]


def test_an_earlier_resolved_timestamp_as_a_tar_loads_with_psql_alone(
        shop: tuple[Path, Path, History], tmp_path: Path, postgres_db: PostgresDatabase,
        postgres_server: Any) -> None:
    feed, schema, history = shop
    earlier = RESOLVED[0]
    dest = tmp_path / "bundles"
    result = archive(str(feed), "--dest", str(dest), "--schema", str(schema), "--format",
                     "tar", "--as-of", earlier.decimal())
    assert result["as_of"]["hlc"] == earlier.decimal()
    tar_path = Path(result["bundle"])
    assert tar_path.name == f"{result['name']}.tar"
    assert run_subprocess("verify", str(tar_path)).returncode == 0

    loaded = run_subprocess("load", str(tar_path), "--into", postgres_db.dsn,
                            "--schema-name", "archive", "--json", env=postgres_db.env())
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["tables"] == {
        f"archive.{t}": len(history.model_at(earlier)[t]) for t in TABLES}
    assert_loaded(postgres_db, history, earlier, schema="archive")

    # Unpacked, the same bundle loads with psql alone, as its RESTORE.md says.
    with tarfile.open(tar_path) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    bundle = tmp_path / "unpacked" / result["name"]
    assert_independently_valid(bundle)
    assert_snapshot_files(bundle, history, earlier)
    psql_load(bundle, postgres_db)
    assert_loaded(postgres_db, history, earlier)
    description = json.loads((bundle / "crdb-archive.json").read_text())
    assert description["export"]["as_of"]["hlc"] == earlier.decimal()
    assert description["export"]["files_after_as_of"] > 0


def test_psql_alone_loads_the_latest_snapshot(shop: tuple[Path, Path, History],
                                              tmp_path: Path,
                                              postgres_db: PostgresDatabase) -> None:
    feed, schema, history = shop
    result = archive(str(feed), "--dest", str(tmp_path / "b"), "--schema", str(schema))
    # One transaction: a failure on the second table leaves not even the first.
    with postgres_db.connect() as connection:
        connection.execute("CREATE TABLE public.orders (id int)")
    psql_load(Path(result["bundle"]), postgres_db, ok=False)
    assert postgres_db.query("SELECT to_regclass('public.customers')") == [(None,)]
    with postgres_db.connect() as connection:
        connection.execute("DROP TABLE public.orders")
    psql_load(Path(result["bundle"]), postgres_db)
    assert_loaded(postgres_db, history, RESOLVED[-1])


def test_an_export_tree_archives_and_loads(tmp_path: Path,
                                           postgres_db: PostgresDatabase) -> None:
    history = write_shop_changefeed(tmp_path / "sink")  # only its history is used
    at = RESOLVED[1]
    tree = tmp_path / "export"
    write_shop_export(tree, history, at, compression="gzip")
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    # The schema has two tables: an EXPORT names neither, so the table must be given.
    refused = run_subprocess("archive", str(tree), "--dest", str(tmp_path / "b"), "--schema",
                             str(schema))
    assert refused.returncode == 2
    assert "say which table" in refused.stderr
    assert not (tmp_path / "b").exists()
    result = archive(str(tree), "--dest", str(tmp_path / "b"), "--schema", str(schema),
                     "--table", "customers")
    assert result["source_kind"] == "export"
    assert result["as_of"] is None
    bundle = Path(result["bundle"])
    assert run_subprocess("verify", str(bundle)).returncode == 0
    loaded = run_subprocess("load", str(bundle), "--into", postgres_db.dsn, "--json",
                            env=postgres_db.env())
    assert loaded.returncode == 0, loaded.stderr
    with postgres_db.connect() as connection:
        assert loaded_rows(connection, "customers") == expected_rows(history, at, "customers")
    got = parquet_rows(bundle / "data" / "snapshot" / "public.customers.parquet")
    assert got == expected_parquet_rows(history, at, "customers")
    # RESTORE.md imports the raw EXPORT files back into CockroachDB.
    restore = (bundle / "RESTORE.md").read_text()
    assert "CSV DATA ('nodelocal://1/export/export" in restore


def test_an_export_of_many_files_is_archived_as_the_tools_expect(tmp_path: Path) -> None:
    """Past the number of files from which worker processes copy the payload (2,048)."""
    history = write_shop_changefeed(tmp_path / "sink")  # only a row of it is used
    first = next(iter(history.model_at(RESOLVED[1])["customers"].values()))
    rows = [{**first, "id": 1000 + index, "name": f"customer {index}"} for index in range(2100)]
    tree = tmp_path / "export"
    tree.mkdir()
    written = write_export(tree, CUSTOMERS, rows, "csv", chunk_rows=1)
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    result = archive(str(tree), "--dest", str(tmp_path / "b"), "--schema", str(schema),
                     "--table", "customers")
    bundle = Path(result["bundle"])
    assert_independently_valid(bundle)
    manifest = {path: digest for digest, path in (
        line.split("  ", 1) for line in (bundle / "manifest-sha256.txt").read_text().splitlines())}
    for path in written:
        key = f"data/export/{path.relative_to(tree)}"
        assert manifest.pop(key) == hashlib.sha256(path.read_bytes()).hexdigest(), key
    assert not [key for key in manifest if key.startswith("data/export/")]
    got = parquet_rows(bundle / "data" / "snapshot" / "public.customers.parquet")
    assert sorted(row[0] for row in got) == [row["id"] for row in rows]


# --- what the source is ------------------------------------------------------------------


def test_kind_auto_tells_sources_apart(capsys: pytest.CaptureFixture[str],
                                       shop: tuple[Path, Path, History],
                                       tmp_path: Path) -> None:
    feed, schema, history = shop
    dest = str(tmp_path / "out")
    export_tree = tmp_path / "export"
    write_shop_export(export_tree, history, RESOLVED[0])
    # An EXPORT tree is recognised (and needs its table named).
    done = run_cli(capsys, "archive", str(export_tree), "--dest", dest, "--schema",
                   str(schema), "--table", "public.customers", "--json")
    assert done.code == 0, done.err
    assert done.json()["source_kind"] == "export"
    # A backup is recognised: export options are refused for it.
    backup = tmp_path / "backup"
    (backup / "data").mkdir(parents=True)
    (backup / "BACKUP_MANIFEST").write_bytes(b"\x00")
    done = run_cli(capsys, "archive", str(backup), "--dest", dest, "--schema", str(schema))
    assert done.code == 2
    assert done.err == (f"crdb-archive: error: --schema applies to changefeed and EXPORT "
                        f"output, and {backup} holds a backup\n")
    # Both at once, neither, nothing, no such directory: exit 2, naming what was found.
    mixed = tmp_path / "mixed"
    shutil.copytree(feed, mixed)
    (mixed / "BACKUP_MANIFEST").write_bytes(b"\x00")
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    cases = {
        mixed: "holds both a CockroachDB backup (BACKUP_MANIFEST) and changefeed or EXPORT "
               "output (2024-01-02/",
        empty: "holds no files: expected a CockroachDB backup or changefeed or EXPORT output",
        other: "holds neither a CockroachDB backup (no BACKUP_MANIFEST, BACKUP_METADATA, "
               "BACKUP or LATEST) nor changefeed or EXPORT output: 1 file, such as notes.txt",
        tmp_path / "missing": "does not exist: expected a directory holding",
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for source, message in cases.items():
        done = run_cli(capsys, "archive", str(source), "--dest", str(tmp_path / "never"),
                       "--schema", str(schema), "--json")
        assert done.code == 2, source
        assert message in done.err, done.err
        assert done.err.count("\n") == 1
        assert done.json()["exit_code"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # --kind forces the choice: the mixed tree read as a changefeed stumbles on the manifest.
    done = run_cli(capsys, "archive", str(mixed), "--dest", dest, "--schema", str(schema),
                   "--kind", "export")
    assert done.code == 1
    assert "BACKUP_MANIFEST: neither a changefeed data file nor a RESOLVED file" in done.err


def test_export_needs_its_schema_and_refuses_backup_options(
        capsys: pytest.CaptureFixture[str], shop: tuple[Path, Path, History],
        tmp_path: Path) -> None:
    feed, schema, _ = shop
    dest = tmp_path / "out"
    done = run_cli(capsys, "archive", str(feed), "--dest", str(dest))
    assert done.code == 2
    assert "need --schema FILE" in done.err
    done = run_cli(capsys, "archive", str(feed), "--dest", str(dest), "--schema", str(schema),
                   "--platform", "linux-arm64")
    assert done.code == 2
    assert "--platform applies to backups" in done.err
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    done = run_cli(capsys, "archive", str(feed), "--dest", str(dest), "--schema", str(schema),
                   "--encryption-passphrase-file", str(passphrase))
    assert done.code == 2
    assert "--encryption-passphrase-file applies to backups" in done.err
    done = run_cli(capsys, "archive", str(feed), "--dest", str(dest), "--schema",
                   str(tmp_path / "nope.sql"))
    assert done.code == 2
    assert "cannot read the schema file" in done.err
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE TABLE t (a INT8 PRIMARY KEY);\n")  # no table of the feed
    done = run_cli(capsys, "archive", str(feed), "--dest", str(dest), "--schema", str(bad))
    assert done.code == 2
    assert "changefeed topic 'customers' names no table of the schema file" in done.err
    done = run_cli(capsys, "archive", str(feed), "--dest", str(dest), "--schema", str(schema),
                   "--as-of", "12345.0")
    assert done.code == 2
    assert "not one of the 3 RESOLVED timestamps" in done.err
    done = run_cli(capsys, "archive", str(feed), "--dest", str(dest), "--kind", "snapshot")
    assert done.code == 2
    assert not dest.exists()


# --- completeness before anything is written -----------------------------------------------


def _files(feed: Path, pattern: str) -> list[Path]:
    return sorted(p for p in feed.rglob(pattern) if p.is_file())


@pytest.mark.parametrize("damage", ["gap", "broken line", "resolved body"])
def test_incomplete_or_damaged_output_leaves_nothing(
        capsys: pytest.CaptureFixture[str], shop: tuple[Path, Path, History], tmp_path: Path,
        damage: str) -> None:
    feed, schema, _ = shop
    if damage == "gap":
        lost = next(p for p in _files(feed, "*-00000001-customers-1.ndjson"))
        lost.unlink()
        expected = "lost changefeed file: file id 00000001 of session"
    elif damage == "broken line":
        victim = _files(feed, "*-00000000-orders-1.ndjson")[0]
        victim.write_bytes(victim.read_bytes()[:-20] + b"\n")
        expected = f"{victim.relative_to(feed).as_posix()}: line "
    else:
        victim = _files(feed, "*.RESOLVED")[0]
        victim.write_text('{"resolved": "17"}')
        expected = "the body says"
    existing = tmp_path / "existing"
    existing.mkdir()
    fresh = tmp_path / "fresh" / "bundles"
    for dest in (existing, fresh):
        done = run_cli(capsys, "archive", str(feed), "--dest", str(dest), "--schema",
                       str(schema), "--json")
        assert done.code == 1, done.err
        assert expected in done.err, done.err
        assert len(error_lines(done.err)) == 1
    assert list(existing.iterdir()) == []  # not even the hidden staging area
    assert not (tmp_path / "fresh").exists()
    if damage == "gap":
        done = run_cli(capsys, "archive", str(feed), "--dest", str(existing), "--schema",
                       str(schema), "--allow-gaps", "--json")
        assert done.code == 0, done.err
        warnings = done.json()["warnings"]
        assert isinstance(warnings, list)
        assert any("lost changefeed file accepted" in w for w in warnings)
        bundle = Path(str(done.json()["bundle"]))
        description = json.loads((bundle / "crdb-archive.json").read_text())
        assert len(description["export"]["gaps"]) == 1


# --- the other commands on export bundles ------------------------------------------------


def test_inspect_verify_and_binary_on_an_export(capsys: pytest.CaptureFixture[str],
                                                shop: tuple[Path, Path, History],
                                                tmp_path: Path) -> None:
    feed, schema, _ = shop
    # inspect of the sink itself: what its names say, without a snapshot.
    done = run_cli(capsys, "inspect", str(feed), "--json")
    assert done.code == 0, done.err
    found = done.json()
    assert (found["kind"], found["format"], found["partitioning"]) == (
        "changefeed", "ndjson", "daily")
    assert found["topics"] == ["customers", "orders"]
    resolved = found["resolved"]
    assert isinstance(resolved, list)
    assert [r["hlc"] for r in resolved] == [r.decimal() for r in RESOLVED]
    assert found["complete"] is True
    assert found["sessions"] == 3
    text = run_cli(capsys, "inspect", str(feed))
    assert "topics:           customers, orders" in text.out
    # inspect of the bundle: kind, source, as_of, tables with rows.
    result = run_cli(capsys, "archive", str(feed), "--dest", str(tmp_path / "b"), "--schema",
                     str(schema), "--json").json()
    bundle = str(result["bundle"])
    done = run_cli(capsys, "inspect", bundle, "--json")
    assert done.code == 0, done.err
    summary = done.json()
    assert summary["bundle_kind"] == "export"
    # Recorded with the host whose disk it was on, and as an absolute path.
    assert summary["source"] == f"file://{socket.gethostname()}{feed.resolve()}"
    assert summary["as_of"] == {"hlc": RESOLVED[-1].decimal(), "time": RESOLVED[-1].iso()}
    assert summary["tables"] == result["tables"]
    text = run_cli(capsys, "inspect", bundle)
    assert "public.customers: 6 rows" in text.out
    # No binary in an export bundle.
    done = run_cli(capsys, "binary", bundle, "--to", str(tmp_path / "bin"))
    assert done.code == 2
    assert "is an export bundle: it holds no CockroachDB binary" in done.err
    # verify: a table file the description names must be in the manifests.
    root = Path(bundle)
    description = json.loads((root / "crdb-archive.json").read_text())
    description["export"]["tables"]["public.orders"]["files"]["parquet"] = \
        "data/snapshot/public.gone.parquet"
    content = (json.dumps(description, indent=2) + "\n").encode()
    (root / "crdb-archive.json").write_bytes(content)
    _retag(root)
    done = run_cli(capsys, "verify", bundle, "--json")
    assert done.code == 1
    problems = done.json()["problems"]
    assert problems == [{"path": "data/snapshot/public.gone.parquet", "kind": "missing",
                         "detail": "crdb-archive.json names it as the Parquet snapshot of "
                                   "public.orders, and the manifests do not list it"}]


def _retag(root: Path) -> None:
    """Rewrite tagmanifest-sha256.txt for edited tag files, as a forger would."""
    import hashlib  # noqa: PLC0415

    lines = []
    for line in (root / "tagmanifest-sha256.txt").read_text().splitlines():
        _, name = line.split("  ", 1)
        lines.append(f"{hashlib.sha256((root / name).read_bytes()).hexdigest()}  {name}\n")
    (root / "tagmanifest-sha256.txt").write_text("".join(lines))


def test_sigterm_while_the_snapshot_is_built_leaves_nothing(tmp_path: Path) -> None:
    feed = tmp_path / "sink"
    sink = Feed(feed, SCHEMA)
    history = History(SCHEMA)
    session = sink.session()
    for chunk in range(8):
        session.file(hlc(10), "customers", [
            history.put("customers", customer(i, 1), hlc(20 + chunk))
            for i in range(chunk * 5000, (chunk + 1) * 5000)])
    sink.resolved(hlc(100))
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    dest = tmp_path / "bundles"
    dest.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "crdb_archive.cli", "archive", str(feed), "--dest", str(dest),
         "--schema", str(schema), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    assert process.stdout is not None
    try:
        for line in process.stderr:
            if line.startswith("{") and json.loads(line).get("task") == "snapshot":
                process.send_signal(signal.SIGTERM)
                break
        err = process.stderr.read()
        out = process.stdout.read()
    finally:
        process.wait(timeout=120)
        process.stderr.close()
        process.stdout.close()
    assert process.returncode == 130, err
    assert json.loads(out) == {"error": "interrupted by SIGTERM", "exit_code": 130}
    assert error_lines(err) == ["crdb-archive: error: interrupted by SIGTERM"]
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(("fmt", "envelope", "compression", "partitioning"), [
    ("parquet", "wrapped", "none", "hourly"),
    ("ndjson", "bare", "gzip", "flat"),
    ("ndjson", "wrapped", "zstd", "daily"),
])
def test_other_sink_formats_load_the_same_rows(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, postgres_db: PostgresDatabase,
        postgres_dsn: str, fmt: str, envelope: str, compression: str, partitioning: str) -> None:
    feed = tmp_path / "sink"
    history = write_shop_changefeed(feed, fmt=fmt, envelope=envelope, compression=compression,
                                    partitioning=partitioning)
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    at = RESOLVED[1]
    done = run_cli(capsys, "archive", str(feed), "--dest", str(tmp_path / "b"), "--schema",
                   str(schema), "--as-of", at.file_time(), "--json")
    assert done.code == 0, done.err
    bundle = Path(str(done.json()["bundle"]))
    description = json.loads((bundle / "crdb-archive.json").read_text())
    assert (description["export"]["format"], description["export"]["partitioning"]) == (
        fmt, partitioning)
    assert run_cli(capsys, "verify", str(bundle)).code == 0
    assert_snapshot_files(bundle, history, at)
    loaded = run_cli(capsys, "load", str(bundle), "--into", postgres_dsn)
    assert loaded.code == 0, loaded.err
    assert_loaded(postgres_db, history, at)

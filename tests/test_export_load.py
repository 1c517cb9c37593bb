"""Loading export bundles into a real PostgreSQL: every row equals the rows the bundle was
made from, in every bundle form, and every failure is one line with its exit code."""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from crdb_archive.bundle.reader import open_bundle
from crdb_archive.errors import (
    BadInput,
    DamagedBundle,
    DatabaseUnavailable,
    ExitCode,
    InvalidSchema,
    NotABundle,
    RejectedByDatabase,
    RowCountMismatch,
    TableExists,
)
from crdb_archive.export.load import load_export
from crdb_archive.progress import ProgressEvent
from crdb_archive.storage.base import open_storage
from support.export_bundles import (
    Row,
    export_payload,
    snapshot_csv,
    write_export_bundle,
)
from support.postgres import PostgresDatabase
from support.s3 import MotoS3

SCHEMA = """\
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.accounts (
    id INT8 NOT NULL,
    name STRING NOT NULL,
    balance DECIMAL(12,2) NULL,
    ratio FLOAT8 NULL,
    active BOOL NULL,
    avatar BYTES NULL,
    ext_id UUID NULL,
    born DATE NULL,
    seen TIMESTAMP NULL,
    seen_tz TIMESTAMPTZ NULL,
    wait INTERVAL NULL,
    addr INET NULL,
    doc JSONB NULL,
    tags STRING[] NULL,
    mood public.mood NULL,
    crdb_region public.crdb_internal_region NOT VISIBLE NOT NULL DEFAULT default_to_database_primary_region(gateway_region())::public.crdb_internal_region,
    CONSTRAINT accounts_pkey PRIMARY KEY (id ASC),
    UNIQUE INDEX accounts_name_key (name ASC),
    INVERTED INDEX accounts_doc_idx (doc)
) LOCALITY REGIONAL BY ROW;
COMMENT ON TABLE public.accounts IS 'Who holds money';
CREATE TABLE public.transfers (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    src INT8 NOT NULL,
    dst INT8 NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    CONSTRAINT transfers_pkey PRIMARY KEY (id ASC),
    INDEX transfers_src_idx (src ASC) USING HASH WITH (bucket_count=8),
    CONSTRAINT check_amount CHECK (amount > 0:::DECIMAL)
);
CREATE TABLE public.events (
    ts TIMESTAMPTZ NOT NULL,
    note STRING NULL,
    rowid INT8 NOT VISIBLE NOT NULL DEFAULT unique_rowid(),
    CONSTRAINT events_pkey PRIMARY KEY (rowid ASC)
);
ALTER TABLE public.transfers ADD CONSTRAINT transfers_src_fkey FOREIGN KEY (src) REFERENCES public.accounts(id);
ALTER TABLE public.transfers ADD CONSTRAINT transfers_dst_fkey FOREIGN KEY (dst) REFERENCES public.accounts(id);
-- Validate foreign key constraints. These can fail if there was unvalidated data during the SHOW CREATE ALL TABLES
ALTER TABLE public.transfers VALIDATE CONSTRAINT transfers_src_fkey;
ALTER TABLE public.transfers VALIDATE CONSTRAINT transfers_dst_fkey;
"""  # noqa: E501 - as CockroachDB prints it

ACCOUNT_COLUMNS = ("id", "name", "balance", "ratio", "active", "avatar", "ext_id", "born",
                   "seen", "seen_tz", "wait", "addr", "doc", "tags", "mood")
UTC = dt.UTC
ACCOUNTS: list[Row] = [
    (1, "Ada", Decimal("10.50"), 0.1, True, b"\x00\xff\n,\"", uuid.UUID(int=1),
     dt.date(1815, 12, 10), dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
     dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
     dt.timedelta(days=1, seconds=3784, microseconds=5),
     ipaddress.ip_address("192.0.2.1"), {"a": [1, 2], "b": {"c": None}}, ["x", "y,z", 'q"t'],
     "happy"),
    (2, "", None, None, None, None, None, None, None, None, None, None, None, None, None),
    (3, 'Grace "Amazing" Hopper,\nwith a newline', Decimal("-0.01"), -1.5e300, False, b"",
     uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), dt.date(1906, 12, 9),
     dt.datetime(1999, 12, 31, 23, 59, 59), dt.datetime(2000, 1, 1, tzinfo=UTC),
     dt.timedelta(0), ipaddress.ip_address("2001:db8::1"), {"unicode": "é✓"}, [], "sad"),
]
TRANSFERS: list[Row] = [
    (uuid.UUID(int=10), 1, 3, Decimal("5.25")),
    (uuid.UUID(int=11), 3, 1, Decimal("0.01")),
]
EVENTS: list[Row] = [
    (dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "first"),
    (dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "first"),  # no key: duplicates are rows too
    (dt.datetime(2024, 5, 2, tzinfo=UTC), None),
]
SNAPSHOTS = {
    "public.accounts": snapshot_csv(ACCOUNT_COLUMNS, ACCOUNTS),
    "public.transfers": snapshot_csv(("id", "src", "dst", "amount"), TRANSFERS),
    "public.events": snapshot_csv(("ts", "note"), EVENTS),
}
ROWS = {"public.accounts": 3, "public.transfers": 2, "public.events": 3}


def _bundle(tmp_path: Path, fmt: str = "dir", *, schema: str = SCHEMA,
            snapshots: dict[str, bytes] | None = None, rows: dict[str, int] | None = None,
            name: str = "export-1") -> str:
    return write_export_bundle(tmp_path / "bundles", name, schema,
                               snapshots if snapshots is not None else SNAPSHOTS,
                               rows if rows is not None else ROWS,
                               fmt="tar" if fmt == "tar" else "dir")


def _assert_truth(db: PostgresDatabase, schema: str = "public") -> None:
    # The test's own identifiers only: S608 does not apply.
    columns = ", ".join(ACCOUNT_COLUMNS)
    assert db.query(f'SELECT {columns} FROM "{schema}".accounts ORDER BY id') == ACCOUNTS
    assert db.query(f'SELECT id, src, dst, amount FROM "{schema}".transfers '
                    "ORDER BY id") == TRANSFERS
    assert db.query(f'SELECT ts, note FROM "{schema}".events '
                    "ORDER BY ts, note") == EVENTS


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_a_local_bundle_loads_and_every_row_equals_the_truth(
        tmp_path: Path, postgres_db: PostgresDatabase, fmt: str) -> None:
    events: list[ProgressEvent] = []
    result = load_export(open_bundle(_bundle(tmp_path, fmt)), postgres_db.url,
                         progress=events.append)

    assert dict(result.tables) == ROWS
    assert postgres_db.server.password not in result.database
    _assert_truth(postgres_db)
    # Constraints and indexes came after the data, as the schema declares them.
    constraints = {(r[0], r[1]) for r in postgres_db.query(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace")}
    assert constraints == {("accounts", "accounts_pkey"), ("transfers", "transfers_pkey"),
                           ("transfers", "transfers_src_fkey"),
                           ("transfers", "transfers_dst_fkey"), ("transfers", "check_amount")}
    indexes = {r[0] for r in postgres_db.query(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert indexes == {"accounts_pkey", "accounts_name_key", "accounts_doc_idx",
                       "transfers_pkey", "transfers_src_idx"}
    assert postgres_db.query("SELECT obj_description('public.accounts'::regclass)") == \
        [("Who holds money",)]
    assert any("crdb_region" in note for note in result.notes)
    assert any("USING HASH" in note for note in result.notes)
    finished = {e.task for e in events if e.finished}
    assert finished == {"load public.accounts", "load public.transfers", "load public.events"}


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_a_bundle_in_s3_loads(s3_env: MotoS3, postgres_db: PostgresDatabase, fmt: str) -> None:
    bucket = s3_env.bucket()
    storage = open_storage(f"s3://{bucket}/exports", for_write=True)
    location = write_export_bundle(storage, "export-s3", SCHEMA, SNAPSHOTS, ROWS,
                                   fmt="tar" if fmt == "tar" else "dir")
    assert location.startswith(f"s3://{bucket}/exports/export-s3")

    result = load_export(open_bundle(location), postgres_db.url)

    assert dict(result.tables) == ROWS
    _assert_truth(postgres_db)


def test_schema_name_puts_every_table_and_type_in_one_schema(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    result = load_export(open_bundle(_bundle(tmp_path)), postgres_db.url,
                         schema_name="archive 2024")

    assert dict(result.tables) == {"archive 2024.accounts": 3, "archive 2024.transfers": 2,
                                   "archive 2024.events": 3}
    _assert_truth(postgres_db, "archive 2024")
    assert postgres_db.query("SELECT typnamespace::regnamespace::text FROM pg_type "
                             "WHERE typname = 'mood'") == [('"archive 2024"',)]
    assert postgres_db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == \
        [(0,)]


def test_an_existing_table_is_refused_unless_replace(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    location = _bundle(tmp_path)
    with postgres_db.connect() as connection:
        connection.execute("CREATE TABLE public.events (x int)")
        connection.execute("INSERT INTO public.events VALUES (42)")
        connection.execute("CREATE TABLE public.unrelated (y int)")

    with pytest.raises(TableExists) as refused:
        load_export(open_bundle(location), postgres_db.url)
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert "public.events already exists" in str(refused.value)
    assert postgres_db.query("SELECT x FROM public.events") == [(42,)]  # nothing changed
    assert postgres_db.query("SELECT to_regclass('public.accounts')") == [(None,)]

    result = load_export(open_bundle(location), postgres_db.url, replace=True)

    assert dict(result.tables) == ROWS
    _assert_truth(postgres_db)
    assert postgres_db.query("SELECT to_regclass('public.unrelated')::text") == [("unrelated",)]
    # Loading again replaces what the first load created, types included.
    load_export(open_bundle(location), postgres_db.url, replace=True)
    _assert_truth(postgres_db)


def test_an_existing_type_is_refused_unless_replace(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    with postgres_db.connect() as connection:
        connection.execute("CREATE TYPE public.mood AS ENUM ('x')")
    with pytest.raises(TableExists, match=r"type public.mood already exists"):
        load_export(open_bundle(_bundle(tmp_path)), postgres_db.url)
    load_export(open_bundle(_bundle(tmp_path, name="again")), postgres_db.url, replace=True)
    _assert_truth(postgres_db)


def test_a_wrong_count_is_detected_and_nothing_is_left(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    location = _bundle(tmp_path, rows={**ROWS, "public.transfers": 3})

    with pytest.raises(RowCountMismatch) as mismatch:
        load_export(open_bundle(location), postgres_db.url)

    assert mismatch.value.exit_code == ExitCode.NO
    assert "public.transfers holds 2 rows" in str(mismatch.value)
    assert "records 3" in str(mismatch.value)
    assert postgres_db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == \
        [(0,)]
    assert postgres_db.query("SELECT count(*) FROM pg_type WHERE typname = 'mood'") == [(0,)]


def test_data_postgresql_rejects_is_bad_input_naming_the_table(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    broken = {**SNAPSHOTS, "public.transfers": snapshot_csv(
        ("id", "src", "dst", "amount"), [(uuid.UUID(int=1), 1, 3, "not a number")])}
    location = _bundle(tmp_path, snapshots=broken, rows={**ROWS, "public.transfers": 1})

    with pytest.raises(RejectedByDatabase) as rejected:
        load_export(open_bundle(location), postgres_db.url)

    message = str(rejected.value)
    assert "public.transfers" in message
    assert "not a number" in message
    assert "\n" not in message
    assert postgres_db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == \
        [(0,)]


def test_a_check_the_data_breaks_is_refused(tmp_path: Path,
                                            postgres_db: PostgresDatabase) -> None:
    broken = {**SNAPSHOTS, "public.transfers": snapshot_csv(
        ("id", "src", "dst", "amount"), [(uuid.UUID(int=1), 1, 3, Decimal("-1"))])}
    location = _bundle(tmp_path, snapshots=broken, rows={**ROWS, "public.transfers": 1})

    with pytest.raises(RejectedByDatabase, match="check_amount"):
        load_export(open_bundle(location), postgres_db.url)


def test_a_snapshot_whose_header_disagrees_with_the_schema_is_damage(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    swapped = {**SNAPSHOTS, "public.events": snapshot_csv(("note", "ts"), [])}
    location = _bundle(tmp_path, snapshots=swapped, rows={**ROWS, "public.events": 0})

    with pytest.raises(DamagedBundle, match=r"has the columns \['note', 'ts'\]"):
        load_export(open_bundle(location), postgres_db.url)


def test_a_tampered_snapshot_is_detected_by_its_digest(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    location = Path(_bundle(tmp_path))
    target = location / "data/snapshot/public.events.csv.gz"
    # Same rows, different bytes: only the manifest can tell.
    target.write_bytes(gzip.compress(SNAPSHOTS["public.events"], mtime=1))

    with pytest.raises(DamagedBundle, match=r"public.events.csv.gz .* does not match"):
        load_export(open_bundle(location), postgres_db.url)
    assert postgres_db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == \
        [(0,)]


def test_a_snapshot_that_is_not_gzip_is_damage(tmp_path: Path,
                                               postgres_db: PostgresDatabase) -> None:
    payload = export_payload(SCHEMA, SNAPSHOTS)
    payload = [p if not p.path.endswith("events.csv.gz") else
               type(p)(p.path, 5, lambda: __import__("io").BytesIO(b"plain")) for p in payload]
    location = write_export_bundle(tmp_path / "b", "x", SCHEMA, SNAPSHOTS, ROWS,
                                   payload=payload)

    with pytest.raises(DamagedBundle, match="not valid gzip"):
        load_export(open_bundle(location), postgres_db.url)


def test_a_backup_bundle_is_not_an_export(tmp_path: Path,
                                          postgres_db: PostgresDatabase) -> None:
    location = Path(_bundle(tmp_path))
    description = location / "crdb-archive.json"
    description.write_text('{"kind": "backup"}')
    # The tag manifest no longer vouches for it: damage, before anything else.
    with pytest.raises(DamagedBundle, match=r"crdb-archive.json"):
        load_export(open_bundle(location), postgres_db.url)

    other = write_export_bundle(tmp_path / "c", "plain", SCHEMA, SNAPSHOTS, ROWS)
    (Path(other) / "crdb-archive.json").unlink()
    with pytest.raises(DamagedBundle):
        load_export(open_bundle(other), postgres_db.url)


def test_an_untranslatable_schema_is_bad_input(tmp_path: Path,
                                               postgres_db: PostgresDatabase) -> None:
    location = _bundle(tmp_path, schema=SCHEMA.replace("INT8 NOT NULL,\n    name",
                                                        "INT8 NOT NULL FROBNICATE,\n    name"))
    with pytest.raises(InvalidSchema) as invalid:
        load_export(open_bundle(location), postgres_db.url)
    assert invalid.value.exit_code == ExitCode.BAD_INPUT
    assert "data/schema/schema.sql in" in str(invalid.value)
    assert "line 3" in str(invalid.value)


def test_a_table_the_description_lists_but_the_schema_lacks_is_damage(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    location = _bundle(tmp_path, rows={**ROWS, "public.ghost": 1})
    with pytest.raises(DamagedBundle, match=r"public.ghost"):
        load_export(open_bundle(location), postgres_db.url)


def test_wrong_password_is_the_world_and_never_printed(
        tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    secret = "s3cr3t-w0rd-never-shown"
    url = postgres_db.server.url(postgres_db.name, password=secret)

    with pytest.raises(DatabaseUnavailable) as failed:
        load_export(open_bundle(_bundle(tmp_path)), url)

    assert failed.value.exit_code == ExitCode.WORLD
    assert secret not in str(failed.value)
    assert "password authentication failed" in str(failed.value)
    assert "\n" not in str(failed.value)


def test_a_missing_database_is_the_world(tmp_path: Path,
                                         postgres_db: PostgresDatabase) -> None:
    url = postgres_db.server.url("no_such_database")
    with pytest.raises(DatabaseUnavailable, match="no_such_database"):
        load_export(open_bundle(_bundle(tmp_path)), url)


def test_a_closed_port_is_the_world(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        load_export(open_bundle(_bundle(tmp_path)),
                    "postgresql://u:pw@127.0.0.1:9/db?connect_timeout=5")


@pytest.mark.parametrize("conninfo", [
    "postgresql://user:hunter2@127.0.0.1:notaport/db",
    "host=127.0.0.1 password=hunter2 bogus",
    "postgresql://user:hunter2@127.0.0.1/db?nosuchoption=1",
])
def test_a_malformed_connection_string_is_bad_input_without_the_password(
        tmp_path: Path, conninfo: str) -> None:
    with pytest.raises(BadInput) as failed:
        load_export(open_bundle(_bundle(tmp_path)), conninfo)
    assert failed.value.exit_code == ExitCode.BAD_INPUT
    assert "not a valid PostgreSQL connection string" in str(failed.value)
    assert "hunter2" not in str(failed.value)


def test_pgpassword_is_used_by_libpq(tmp_path: Path, postgres_db: PostgresDatabase,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server = postgres_db.server
    monkeypatch.setenv("PGPASSWORD", server.password)
    url = f"postgresql://postgres@{server.host}:{server.port}/{postgres_db.name}"
    result = load_export(open_bundle(_bundle(tmp_path)), url)
    assert dict(result.tables) == ROWS


def test_not_an_export_bundle_when_schema_sql_is_missing(tmp_path: Path,
                                                         postgres_db: PostgresDatabase) -> None:
    payload = [p for p in export_payload(SCHEMA, SNAPSHOTS)
               if p.path != "data/schema/schema.sql"]
    location = write_export_bundle(tmp_path / "b", "x", SCHEMA, SNAPSHOTS, ROWS,
                                   payload=payload)
    with pytest.raises(NotABundle, match=r"no data/schema/schema.sql"):
        load_export(open_bundle(location), postgres_db.url)

"""Load an export bundle into PostgreSQL: create, stream every snapshot in with COPY, add the
constraints and indexes, and check every table's row count against the bundle.

The schema comes from the bundle's verbatim ``data/schema/schema.sql``, parsed again; each
table's snapshot ``data/snapshot/<schema>.<table>.csv.gz`` is gzip of ``COPY (FORMAT csv,
HEADER true)`` input; the expected counts are ``export.tables[<schema>.<table>].rows`` in
crdb-archive.json. Everything happens in one transaction: a load that fails leaves nothing
behind. Every file read is checked against the bundle's SHA-256 manifest.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import hmac
import io
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, cast

import psycopg
from psycopg import sql

from crdb_archive.bundle import layout, tagfiles
from crdb_archive.bundle.layout import SCHEMA_SQL_PATH
from crdb_archive.bundle.reader import BundleReader, require_readable
from crdb_archive.bundle.retrieve import trusted_tag_files
from crdb_archive.errors import (
    DamagedBundle,
    InvalidSchema,
    NotABundle,
    RowCountMismatch,
    TableExists,
)
from crdb_archive.export.ddl import parse_schema
from crdb_archive.export.model import (
    SNAPSHOT_DIR,
    QualifiedName,
    Table,
    snapshot_csv_path,
)
from crdb_archive.export.pg import Server
from crdb_archive.export.postgres import PostgresDDL, postgresql_ddl, qualified
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

CHUNK = 1 << 20
SCHEMA_LIMIT = 64 << 20  # a schema file larger than this is not SHOW CREATE output
HEADER_LIMIT = 1 << 20


@dataclass(frozen=True)
class LoadResult:
    """What was loaded where: rows per table, by the name it has in PostgreSQL."""

    bundle: str  # where the bundle is, without secrets
    database: str  # user@host:port/database, no password
    tables: Mapping[str, int]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``load --json`` contract."""
        return {"bundle": self.bundle, "database": self.database, "tables": dict(self.tables),
                "notes": list(self.notes)}


def load_export(
    reader: BundleReader,
    into: str,
    *,
    schema_name: str | None = None,
    replace: bool = False,
    progress: ProgressCallback = no_progress,
) -> LoadResult:
    """Load the export bundle read by ``reader`` into the PostgreSQL database ``into``.

    Raises NotABundle (2) for a bundle that is not an export, InvalidSchema (2) for a schema
    file that cannot be translated, TableExists (2) for a table already there without
    ``replace``, RejectedByDatabase (2) when PostgreSQL refuses the DDL or the data,
    DamagedBundle (1) for files that do not match the bundle's manifest or description,
    RowCountMismatch (1), DatabaseUnavailable (3), StorageError (3).
    """
    server = Server(into)
    require_readable(reader, payload=True)
    # The manifests are read line by line; only the lines of the files loaded are kept.
    tags = trusted_tag_files(reader, (layout.DESCRIPTION,), lookup=_is_loaded)
    expected = _expected_rows(reader, tags.files[layout.DESCRIPTION])
    manifest = {path: digest for (name, path), digest in tags.digests.items()
                if name == layout.MANIFEST_SHA256}
    schema = parse_schema(_read_schema(reader, manifest),
                          source=f"{SCHEMA_SQL_PATH} in {reader.display}")
    by_name = {str(t.name): t for t in schema.tables}
    unknown = sorted(set(expected) - set(by_name))
    if unknown:
        raise DamagedBundle(f"{layout.DESCRIPTION} in {reader.display} lists table "
                            f"{unknown[0]}, which {SCHEMA_SQL_PATH} does not define")
    tables = [by_name[name] for name in by_name if name in expected]
    if not tables:
        raise DamagedBundle(f"{reader.display} exports no table")
    ddl = postgresql_ddl(schema.restricted_to(t.name for t in tables), schema_name=schema_name)
    files = {snapshot_csv_path(t.name): t for t in tables}
    for path in files:
        if path not in manifest:
            raise DamagedBundle(f"{reader.display} has no {path} in its manifest")

    with server.connect() as connection:
        try:
            with connection.transaction():
                # The DDL's string literals are written for standard strings.
                connection.execute("SET LOCAL standard_conforming_strings = on")
                _prepare(connection, server, ddl, replace)
                loaded = _copy_all(connection, server, reader, ddl, files, manifest, progress)
                missing = sorted(set(files) - loaded)
                if missing:
                    raise DamagedBundle(f"{reader.display} has no {missing[0]}")
                _execute(connection, server, ddl.after_load, "adding constraints and indexes")
                counts = _check_counts(connection, server, ddl, tables, expected)
        except psycopg.Error as error:
            raise server.error(error, "loading the export") from None
    return LoadResult(reader.display, server.display, counts, ddl.notes)


# --- the bundle ------------------------------------------------------------------------------


def _is_loaded(path: str) -> bool:
    return path == SCHEMA_SQL_PATH or path.startswith(SNAPSHOT_DIR + "/")


def _expected_rows(reader: BundleReader, content: bytes) -> dict[str, int]:
    try:
        description = tagfiles.load_json(content)
        tables = description["export"]["tables"]
        rows = {str(name): entry["rows"] for name, entry in tables.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise NotABundle(f"{reader.display} is not an export bundle: {layout.DESCRIPTION} has "
                         "no export.tables") from None
    for name, count in rows.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise DamagedBundle(f"{layout.DESCRIPTION} in {reader.display}: export.tables."
                                f"{name}.rows is not a count")
    return rows


def _read_schema(reader: BundleReader, manifest: Mapping[str, str]) -> str:
    if SCHEMA_SQL_PATH not in manifest:
        raise NotABundle(f"{reader.display} is not an export bundle: it has no "
                         f"{SCHEMA_SQL_PATH}")
    with reader.open_member(SCHEMA_SQL_PATH) as stream:
        content = stream.read(SCHEMA_LIMIT + 1)
    if len(content) > SCHEMA_LIMIT:
        raise InvalidSchema(f"{SCHEMA_SQL_PATH} in {reader.display} is larger than "
                            f"{SCHEMA_LIMIT >> 20} MiB")
    _check_digest(reader, SCHEMA_SQL_PATH, hashlib.sha256(content).hexdigest(), manifest)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSchema(f"{SCHEMA_SQL_PATH} in {reader.display} is not UTF-8") from None


def _check_digest(reader: BundleReader, path: str, actual: str,
                  manifest: Mapping[str, str]) -> None:
    if not hmac.compare_digest(actual, manifest.get(path, "")):
        raise DamagedBundle(f"{path} in {reader.display} does not match "
                            f"{layout.MANIFEST_SHA256}")


class _HashingReader(io.RawIOBase):
    """The raw snapshot bytes, digested as gzip pulls them."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._source.read(len(buffer))
        self.sha256.update(chunk)
        self.count += len(chunk)
        buffer[:len(chunk)] = chunk
        return len(chunk)


# --- the database ----------------------------------------------------------------------------


def _execute(connection: psycopg.Connection[Any], server: Server, statements: tuple[str, ...],
             doing: str) -> None:
    for statement in statements:
        try:
            connection.execute(statement.encode())
        except psycopg.Error as error:
            first_line = statement.splitlines()[0]
            raise server.error(error, f"{doing} ({first_line})") from None


def _prepare(connection: psycopg.Connection[Any], server: Server, ddl: PostgresDDL,
             replace: bool) -> None:
    """Refuse (or, with ``replace``, drop) the tables and types this bundle creates."""
    existing_tables = []
    for _, target in ddl.targets:
        row = connection.execute(
            "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (target.schema, target.name)).fetchone()
        if row is None:
            continue
        if not replace or row[0] not in ("r", "p"):
            what = "table" if row[0] in ("r", "p") else "relation"
            hint = "; --replace drops and reloads it" if what == "table" else ""
            raise TableExists(f"{what} {target} already exists in {server.display}{hint}")
        existing_tables.append(target)
    existing_types = []
    for name in ddl.types:
        found = connection.execute(
            "SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n "
            "ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typname = %s",
            (name.schema, name.name)).fetchone()
        if found is not None:
            if not replace:
                raise TableExists(f"type {name} already exists in {server.display}; "
                                  "--replace drops and recreates it")
            existing_types.append(name)
    drops = []
    if existing_tables:
        drops.append("DROP TABLE " + ", ".join(qualified(t) for t in existing_tables))
    drops.extend(f"DROP TYPE {qualified(name)}" for name in existing_types)
    _execute(connection, server, tuple(drops), "replacing the existing tables")
    _execute(connection, server, ddl.create, "creating the tables")


def _copy_all(connection: psycopg.Connection[Any], server: Server, reader: BundleReader,
              ddl: PostgresDDL, files: Mapping[str, Table], manifest: Mapping[str, str],
              progress: ProgressCallback) -> set[str]:
    loaded: set[str] = set()
    for member in reader.members():
        table = files.get(member.path)
        if table is None:
            continue
        if member.path in loaded:
            raise DamagedBundle(f"{reader.display} holds {member.path} twice")
        target = ddl.target(table.name)
        task = f"load {target}"
        with member.open() as raw:
            hashing = _HashingReader(raw)

            def report(task: str = task, hashing: _HashingReader = hashing,
                       size: int = member.size) -> None:
                progress(ProgressEvent(task, hashing.count, size))

            try:
                _copy_table(connection, server, reader, member.path, table, target, hashing,
                            report)
            except (OSError, EOFError, zlib.error) as error:
                raise DamagedBundle(f"{member.path} in {reader.display} is not valid gzip: "
                                    f"{error}") from None
        _check_digest(reader, member.path, hashing.sha256.hexdigest(), manifest)
        progress(ProgressEvent(task, member.size, member.size, finished=True))
        loaded.add(member.path)
    return loaded


def _copy_table(connection: psycopg.Connection[Any], server: Server, reader: BundleReader,
                path: str, table: Table, target: QualifiedName, raw: _HashingReader,
                report: Callable[[], None]) -> None:
    columns = [c.name for c in table.visible_columns]
    with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        stream = cast(IO[bytes], gz)
        header, rest = _split_header(stream, f"{path} in {reader.display}")
        if header != columns:
            raise DamagedBundle(f"{path} in {reader.display} has the columns {header}, but "
                                f"{SCHEMA_SQL_PATH} declares {columns}")
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(target.schema, target.name),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns))
        try:
            with connection.cursor() as cursor, cursor.copy(statement) as copy:
                for chunk in _chunks(rest, stream):
                    copy.write(chunk)
                    report()
        except psycopg.Error as error:
            raise server.error(error, f"the data of {table.name} ({path})") from None


def _chunks(first: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    while chunk := stream.read(CHUNK):
        yield chunk


def _split_header(stream: IO[bytes], where: str) -> tuple[list[str], bytes]:
    """The CSV header's column names, and the bytes read after it."""
    buffered = b""
    quoted = False
    scanned = 0
    while True:
        for position in range(scanned, len(buffered)):
            byte = buffered[position]
            if byte == 0x22:  # '"': a doubled quote toggles twice, which is right
                quoted = not quoted
            elif byte == 0x0A and not quoted:
                line = buffered[:position + 1].decode("utf-8", "replace")
                return next(csv.reader([line])), buffered[position + 1:]
        scanned = len(buffered)
        if scanned > HEADER_LIMIT:
            raise DamagedBundle(f"{where}: no CSV header line in its first "
                                f"{HEADER_LIMIT >> 20} MiB")
        chunk = stream.read(CHUNK)
        if not chunk:
            if buffered.strip():
                return next(csv.reader([buffered.decode("utf-8", "replace")])), b""
            raise DamagedBundle(f"{where} is empty: a snapshot starts with a CSV header")
        buffered += chunk


def _check_counts(connection: psycopg.Connection[Any], server: Server, ddl: PostgresDDL,
                  tables: list[Table], expected: Mapping[str, int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in tables:
        target = ddl.target(table.name)
        row = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(target.schema, target.name))).fetchone()
        count = int(row[0]) if row else 0
        if count != expected[str(table.name)]:
            raise RowCountMismatch(
                f"{target} holds {count} rows after loading, but the bundle records "
                f"{expected[str(table.name)]} for {table.name}")
        counts[str(target)] = count
    return counts


"""RESTORE.md of an export bundle: how to check it, load it into PostgreSQL with psql alone,
read it with DuckDB or any Parquet reader, and load it back into CockroachDB, with the exact
commands for each of its tables."""

from __future__ import annotations

from urllib.parse import quote as url_quote

from crdb_archive.bundle.description_export import EXPORT_DIR, ExportDescription, TableDescription
from crdb_archive.bundle.restore_doc import signature_lines
from crdb_archive.export.postgres import LOAD_MARKER, literal
from crdb_archive.export.tables import quote
from crdb_archive.text import count

_SPLIT = LOAD_MARKER.replace("/", "\\/")


def _target(table: TableDescription) -> str:
    return f"{quote(table.schema)}.{quote(table.table)}"


def _columns(table: TableDescription) -> str:
    return ", ".join(quote(c.name) for c in table.columns)


def copy_command(table: TableDescription) -> str:
    """psql's client-side ``\\copy`` of one table's snapshot, run from the bundle's folder."""
    program = literal(f"gzip -dc {table.csv}")
    return (f"\\copy {_target(table)} ({_columns(table)}) FROM PROGRAM {program} "
            "WITH (FORMAT csv, HEADER true)")


def psql_load_script(description: ExportDescription, database: str = "$PGURL") -> list[str]:
    """Shell lines that load every table in one psql session and one transaction: the
    creation part of postgresql.sql, each ``\\copy``, then the rest of postgresql.sql."""
    return [
        "{ sed '/^" + _SPLIT + "$/q' data/schema/postgresql.sql",
        "  cat <<'EOF'",
        *[copy_command(t) for t in description.tables],
        "EOF",
        "  sed '1,/^" + _SPLIT + "$/d' data/schema/postgresql.sql",
        # -f -: psql applies --single-transaction to files and -c only, stdin included so.
        "} | psql \"" + database + "\" -v ON_ERROR_STOP=1 --single-transaction --quiet -f -",
    ]


def _nodelocal(path: str) -> str:
    # data/ is the cluster's external-io-dir: nodelocal://1/<path below data/>
    return "nodelocal://1/" + url_quote(path.removeprefix("data/"))


def _import_lines(description: ExportDescription, raw_files: list[str]) -> list[str]:
    lines = []
    csv_export = description.source_kind == "export" and description.format == "csv"
    for table in description.tables:
        if csv_export and len(description.tables) == 1:
            files = ", ".join(literal(_nodelocal(f)) for f in raw_files)
            options = "nullif = ''"
        else:
            files = literal(_nodelocal(table.csv))
            options = "skip = '1', nullif = ''"
        lines.append(f"IMPORT INTO {_target(table)} ({_columns(table)}) CSV DATA ({files}) "
                     f"WITH {options};")
    return lines


def render_export_restore_md(description: ExportDescription, raw_files: list[str], *,
                             signing_key: str | None = None) -> bytes:
    """The RESTORE.md of an export bundle; ``raw_files`` are its data/export/ paths; with
    ``signing_key`` (the key's fingerprint), how to check its signature too."""
    d = description
    name = d.name
    what = "changefeed output" if d.source_kind == "changefeed" else "`EXPORT` output"
    when = (f"as of {d.as_of.iso()} (HLC `{d.as_of.decimal()}`, the resolved timestamp of "
            f"`{d.resolved_file}`)" if d.as_of else "taken as a whole (it has no resolved "
            "timestamps)")
    out = [
        f"# Loading {name}",
        "",
        f"This bundle holds CockroachDB {what} ({d.format}) read from `{d.source}`, byte for "
        f"byte, with the schema it was written under and a consistent snapshot of its "
        f"{count(len(d.tables), 'table')} {when}. Reading it needs no CockroachDB: PostgreSQL with "
        "`psql`, DuckDB or any Parquet reader will do, and so will standard tools "
        "(`sha256sum`, `gzip`, `sed`).",
        "",
        "| table | rows | Parquet | PostgreSQL CSV |",
        "| --- | ---: | --- | --- |",
    ]
    out += [f"| {t.name} | {t.rows} | `{t.parquet}` | `{t.csv}` |" for t in d.tables]
    out += [
        "",
        "## 1. Check the bundle",
        "",
        "The bundle is a BagIt 1.0 bag (RFC 8493). If you have the single-file form, unpack it "
        f"first: `tar xf {name}.tar`. Then, from the bundle folder:",
        "",
        "```sh",
        "sha256sum -c tagmanifest-sha256.txt   # the tag files",
        "sha256sum -c manifest-sha256.txt      # every payload file",
        "b3sum -c manifest-blake3.txt          # the same, faster, where b3sum is installed",
        "bagit.py --validate .                 # bagit-python, where installed",
        "```",
        "",
        *signature_lines(signing_key),
        "## 2. Load into PostgreSQL with psql",
        "",
        "`data/schema/postgresql.sql` creates the tables; the line "
        f"`{LOAD_MARKER}` divides it: the statements before it create the tables (and their "
        "schemas and types), those after it add the indexes, constraints and comments, which "
        "must come after the rows. This loads every table into an empty database in one "
        "transaction, from the bundle folder (give the password with `PGPASSWORD` or "
        "`~/.pgpass`, not in the URL):",
        "",
        "```sh",
        f"cd /path/to/{name}",
        "PGURL='postgresql://user@host:5432/dbname'",
        *psql_load_script(d),
        "```",
        "",
        "Each `\\copy` reads a table's `.csv.gz` (PostgreSQL `COPY` CSV with a header: every "
        "value quoted, NULL an empty unquoted field). Then compare the row counts with the "
        "table above:",
        "",
        "```sql",
    ]
    out += [f"SELECT count(*) FROM {_target(t)};  -- {t.rows}" for t in d.tables]
    out += [
        "```",
        "",
        "With crdb-archive installed, `crdb-archive load <bundle> --into postgresql://...` does "
        "the same from the bundle as it is (a directory or a .tar, local or in object "
        "storage), checks every file against the manifest and every count against this "
        "bundle.",
        "",
        "## 3. Read with DuckDB or any Parquet reader",
        "",
        "Each table is one Parquet file, its columns typed from the schema (DECIMAL with its "
        "scale, timestamps as timestamps, JSONB as JSON text):",
        "",
        "```sh",
    ]
    out += [f"duckdb -c \"SELECT * FROM '{t.parquet}'\"" for t in d.tables]
    out += [
        "```",
        "",
    ]
    for t in d.tables:
        out += [f"`{t.name}` (primary key in CockroachDB: {', '.join(t.primary_key)}):", "",
                "| column | CockroachDB | PostgreSQL | Parquet | NULL |",
                "| --- | --- | --- | --- | --- |"]
        out += [f"| {c.name} | {c.cockroach_type} | {c.postgres_type} | {c.parquet_type} | "
                f"{'yes' if c.nullable else 'no'} |" for c in t.columns]
        out += [f"- note: {n}" for n in t.notes]
        out.append("")
    out += [
        "## 4. Back into CockroachDB",
        "",
        "Start a cluster with `--external-io-dir` set to this bundle's `data/` folder, so "
        "that `nodelocal://1/...` names its files, create the tables from the schema file as "
        "CockroachDB printed it, then `IMPORT INTO` each table:",
        "",
        "```sh",
        "cockroach sql --insecure < data/schema/schema.sql",
        "```",
        "",
        "```sql",
        *_import_lines(d, raw_files),
        "```",
        "",
    ]
    if d.source_kind == "export" and d.format == "csv" and len(d.tables) == 1:
        out.append(f"These read the raw `EXPORT` files under `{EXPORT_DIR}/` as they are.")
    else:
        out.append(
            f"The raw files under `{EXPORT_DIR}/` are kept byte for byte, but `IMPORT` reads "
            "only CSV, delimited and Avro data, not changefeed envelopes or Parquet: these "
            "read the snapshot CSV instead, whose values are in PostgreSQL's text forms, "
            "which CockroachDB accepts.")
    out += [
        "",
        "## 5. What is in the bundle",
        "",
        f"- `{EXPORT_DIR}/`: the {what}, every file byte for byte, in its relative layout"
        + (f" ({count(d.files_after_as_of, 'data file')} after the snapshot time "
           f"{'is' if d.files_after_as_of == 1 else 'are'} kept but not in the snapshot)"
           if d.files_after_as_of else "") + ".",
        "- `data/schema/schema.sql`: the schema file as given (`SHOW CREATE ALL TABLES`).",
        "- `data/schema/postgresql.sql`: its translation for PostgreSQL.",
        "- `data/snapshot/`: per table, the snapshot in Parquet and as PostgreSQL COPY CSV "
        "(gzip).",
        "- `crdb-archive.json`: what the bundle holds, machine-readable.",
    ]
    if d.gaps:
        out += ["", "Files were missing from the output when it was archived; the snapshot "
                "may lack their rows:", ""]
        out += [f"- {gap}" for gap in d.gaps]
    if d.notes:
        out += ["", "Notes on the translation to PostgreSQL:", ""]
        out += [f"- {note}" for note in d.notes]
    return ("\n".join(out).rstrip() + "\n").encode("utf-8")

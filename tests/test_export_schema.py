"""The schema translator on CockroachDB's own SHOW CREATE output: what it reads, what it
drops (with a note each time), and one-line errors for what it cannot read."""

from __future__ import annotations

import csv
import io

import pytest

from crdb_archive.errors import BadInput, ExitCode, InvalidSchema
from crdb_archive.export.ddl import parse_schema
from crdb_archive.export.model import QualifiedName, Schema
from crdb_archive.export.postgres import postgresql_ddl
from support import schemas


def _notes(schema: Schema) -> str:
    return "\n".join(schema.all_notes())


def test_movr_multi_region_from_the_docs() -> None:
    schema = parse_schema(schemas.MOVR_MULTI_REGION, source="movr.txt")

    assert [str(t.name) for t in schema.tables] == [
        "public.users", "public.vehicles", "public.rides", "public.vehicle_location_histories",
        "public.promo_codes", "public.user_promo_codes", "public.drivers"]
    users = schema.table("users")
    assert [c.name for c in users.visible_columns] == ["id", "city", "name", "address",
                                                       "credit_card"]
    region = users.column("crdb_region")
    assert region.hidden
    assert not region.nullable
    assert users.primary_key == ("city", "id") == users.postgres_primary_key
    assert users.comment == "This table contains information about users."
    assert users.locality == "REGIONAL BY ROW"
    assert users.region_column == "crdb_region"
    rides = schema.table("public.rides")
    assert {c.name: c.definition for c in rides.constraints} == {
        "check_vehicle_city_city": 'CHECK ("vehicle_city" = "city")',
        "fk_city_ref_users": 'FOREIGN KEY ("city", "rider_id") REFERENCES "public"."users" '
                             '("city", "id")',
        "fk_vehicle_city_ref_vehicles": 'FOREIGN KEY ("vehicle_city", "vehicle_id") REFERENCES '
                                        '"public"."vehicles" ("city", "id")',
    }
    assert not any(c.not_valid for t in schema.tables for c in t.constraints)
    assert rides.column("revenue").type.postgres == "numeric(10,2)"
    notes = _notes(schema)
    assert "public.users: column crdb_region not loaded: hidden (NOT VISIBLE)" in notes
    assert "public.users: LOCALITY REGIONAL BY ROW dropped" in notes
    assert "public.rides: LOCALITY REGIONAL BY TABLE IN PRIMARY REGION dropped" in notes
    # The table form's line numbers are those of the file (header and rule included).
    assert "line 74: view public.user_view not created" in notes
    assert "line 75: sequence public.desc_customer_list not created" in notes


def test_hash_sharded_indexes_and_families() -> None:
    schema = parse_schema(schemas.HASH_SHARDED, source="hash.sql")

    events = schema.table("events")
    assert events.column("crdb_internal_ts_shard_16").hidden
    assert events.column("crdb_internal_ts_shard_16").computed == \
        "mod(fnv32(crdb_internal.datums_to_bytes(ts)), 16:::INT8)"
    assert [i.name for i in events.indexes] == ["events_ts_idx"]
    assert events.indexes[0].columns == ("ts",)
    assert schema.table("sharded_primary").postgres_primary_key == ("a",)
    family = schema.table("specific_family")
    assert family.families == (("a_family", ("a", "rowid")), ("b_family", ("b",)))
    assert family.primary_key == ("rowid",)
    assert family.postgres_primary_key == ()
    notes = _notes(schema)
    for expected in [
        "public.events: column crdb_internal_ts_shard_16 not loaded: hidden (NOT VISIBLE) "
        "(the shard of a hash-sharded index)",
        "public.events: index events_ts_idx: USING HASH WITH (bucket_count=16) dropped",
        "public.sharded_primary: primary key: USING HASH WITH (bucket_count=10) dropped",
        "public.specific_family: column families dropped: a_family (a, rowid), b_family (b)",
        "public.specific_family: no primary key: CockroachDB's (rowid) holds the hidden column "
        "rowid",
    ]:
        assert expected in notes


def test_logic_test_output_names_comments_and_keys() -> None:
    schema = parse_schema(schemas.LOGIC_TEST, source="logic.sql")

    full = schema.table("full_test")
    keys = {c.name: c.foreign_key for c in full.constraints}
    assert keys["full_test_x_y_z_fkey"] is not None
    assert keys["full_test_x_y_z_fkey"].match == "FULL"
    assert keys["full_test_x_y_z_fkey"].on_delete == "CASCADE"
    assert keys["full_test_x_y_z_fkey"].on_update == "CASCADE"
    assert keys["test_fk"] is not None
    assert keys["test_fk"].ref_columns == ("x",)
    odd = schema.table("public.t   t")
    assert odd.comment == "has ' quotes"
    assert odd.column_comments == (("x'", "i ' just ' love ' quotes"),)
    assert odd.primary_key_name == "t   t_pkey"
    assert odd.primary_key_comment == "new constraint comment"
    assert "public.t   t: comment on the primary key's index t   t_pkey dropped" in \
        _notes(schema)
    assert schema.table(";").indexes[0].name == ";_;_idx"
    computed = schema.table("public.t").column("b")
    assert computed.computed == "a + 1:::INT8"
    assert not computed.hidden
    assert schema.table("sc1.t").name == QualifiedName("sc1", "t")
    typed = schema.table("typed").column("x").type
    assert (typed.kind, typed.enum) == ("enum", QualifiedName("public", "test", "type_test"))
    assert schema.table("s_tbl").column("id").default is None
    assert "public.s_tbl: column id: DEFAULT nextval('public.s'::REGCLASS) dropped: nextval() " \
           "is a CockroachDB function" in _notes(schema)


EXPECTED_TYPES = [
    # column, kind, CockroachDB, PostgreSQL, extra (bits / precision / scale / length)
    ("id", "int", "INT8", "bigint", {"bits": 64}),
    ("i2", "int", "INT2", "smallint", {"bits": 16}),
    ("i4", "int", "INT4", "integer", {"bits": 32}),
    ("f4", "float", "FLOAT4", "real", {"bits": 32}),
    ("f8", "float", "FLOAT8", "double precision", {"bits": 64}),
    ("d", "decimal", "DECIMAL(12,3)", "numeric(12,3)", {"precision": 12, "scale": 3}),
    ("d_any", "decimal", "DECIMAL", "numeric", {}),
    ("b", "bool", "BOOL", "boolean", {}),
    ("s", "string", "STRING", "text", {}),
    ("s20", "string", "STRING(20)", "varchar(20)", {"length": 20}),
    ("vc", "string", "VARCHAR", "varchar", {}),
    ("vc9", "string", "VARCHAR(9)", "varchar(9)", {"length": 9}),
    ("ch", "string", "CHAR(3)", "char(3)", {"length": 3}),
    ("by", "bytes", "BYTES", "bytea", {}),
    ("u", "uuid", "UUID", "uuid", {}),
    ("dt", "date", "DATE", "date", {}),
    ("tm", "time", "TIME", "time", {}),
    ("ts", "timestamp", "TIMESTAMP", "timestamp", {}),
    ("tstz", "timestamptz", "TIMESTAMPTZ", "timestamptz", {}),
    ("ts3", "timestamptz", "TIMESTAMPTZ(3)", "timestamptz(3)", {"precision": 3}),
    ("iv", "interval", "INTERVAL", "interval", {}),
    ("ip", "inet", "INET", "inet", {}),
    ("j", "jsonb", "JSONB", "jsonb", {}),
    ("bits", "bit", "BIT(4)", "bit(4)", {"length": 4}),
    ("vbits", "bit", "VARBIT", "varbit", {}),
    ("m", "enum", "public.mood", '"public"."mood"', {}),
    ("tags", "array", "STRING[]", "text[]", {}),
    ("nums", "array", "INT8[]", "bigint[]", {}),
    ("moods", "array", "public.mood[]", '"public"."mood"[]', {}),
    ("g", "geometry", "GEOMETRY", "text", {}),
]


def test_every_type_is_typed() -> None:
    table = parse_schema(schemas.EVERY_TYPE, source="every.sql").table("every_type")

    for name, kind, cockroach, postgres, extra in EXPECTED_TYPES:
        sql_type = table.column(name).type
        assert (sql_type.kind, sql_type.cockroach, sql_type.postgres) == \
            (kind, cockroach, postgres), name
        for key, value in extra.items():
            assert getattr(sql_type, key) == value, (name, key)
    tags = table.column("tags").type.element
    assert tags is not None
    assert tags.postgres == "text"
    moods = table.column("moods").type.element
    assert moods is not None
    assert moods.enum == QualifiedName("public", "mood")


def test_every_type_defaults_indexes_checks_and_notes() -> None:
    schema = parse_schema(schemas.EVERY_TYPE, source="every.sql")
    table = schema.table("every_type")

    defaults = {c.name: c.default for c in table.columns if c.default is not None}
    assert defaults == {"b": "TRUE", "s": "CAST('' AS TEXT)", "u": "GEN_RANDOM_UUID()",
                        "tstz": "CAST(CURRENT_TIMESTAMP AS TIMESTAMPTZ)", "m": "'ok'"}
    indexes = {i.name: i for i in table.indexes}
    assert set(indexes) == {"every_type_u_key", "every_type_ts_idx", "every_type_partial_idx",
                            "every_type_lower_idx", "every_type_j_idx", "every_type_tags_idx",
                            "every_type_invisible_idx", "every_type_s20_key"}
    assert indexes["every_type_ts_idx"].include == ("s", "d")
    assert indexes["every_type_ts_idx"].columns == ("ts DESC",)
    assert indexes["every_type_ts_idx"].comment == "newest first"
    assert indexes["every_type_partial_idx"].where == '"i4" > CAST(0 AS BIGINT)'
    assert indexes["every_type_lower_idx"].keys[0].expression == 'LOWER("s")'
    assert indexes["every_type_j_idx"].method == "gin"
    assert indexes["every_type_s20_key"].unique
    assert {c.name for c in table.constraints} == {"check_i2", "check_s"}
    notes = _notes(schema)
    for expected in [
        "column g: PostgreSQL has no spatial types without PostGIS: loaded as text",
        "column ordinal: DEFAULT unique_rowid() dropped: unique_rowid() is a CockroachDB "
        "function",
        "column updated: ON UPDATE now():::TIMESTAMPTZ dropped",
        "column twice: computed AS (i4 * 2:::INT8) STORED; loaded as a plain column",
        "index every_type_hidden_idx not created: it uses the hidden column crdb_region",
        "index every_type_invisible_idx: NOT VISIBLE dropped",
        "UNIQUE WITHOUT INDEX is enforced with a unique index",
        "check check_region (crdb_region != '':::STRING) not created",
        "WITH (ttl = 'on', ttl_expire_after = '90 days':::INTERVAL) dropped",
        "PARTITION BY NOTHING dropped",
        "shop.orders: column note: collation de dropped",
    ]:
        assert expected in notes, expected
    orders = schema.table("shop.orders")
    assert orders.column("st").type.enum == QualifiedName("shop", "status")
    assert [e.values for e in schema.enums] == [("sad", "ok", "happy"), ("new", "it's shipped")]


STATEMENTS = [
    'CREATE TABLE public.a (\n\tid INT8 NOT NULL,\n\tnote STRING NULL DEFAULT \'a, "b"\':::STRING,'
    '\n\tCONSTRAINT a_pkey PRIMARY KEY (id ASC)\n)',
    "CREATE TABLE public.b (\n\tid INT8 NOT NULL,\n\ta_id INT8 NULL,\n"
    "\tCONSTRAINT b_pkey PRIMARY KEY (id ASC)\n)",
    "ALTER TABLE public.b ADD CONSTRAINT b_a_id_fkey FOREIGN KEY (a_id) REFERENCES public.a(id)",
    "-- Validate foreign key constraints. These can fail if there was unvalidated data during "
    "the SHOW CREATE ALL TABLES",
    "ALTER TABLE public.b VALIDATE CONSTRAINT b_a_id_fkey",
]


def _records(delimiter: str, header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("form", ["csv", "tsv", "csv-two-columns"])
def test_csv_and_tsv_output_reads_like_the_plain_statements(form: str) -> None:
    plain = parse_schema("\n".join(s + ";" for s in STATEMENTS), source="plain.sql")
    rows = [[s + ";"] for s in STATEMENTS]
    if form == "csv":
        text = _records(",", ["create_statement"], rows)
    elif form == "tsv":
        text = _records("\t", ["create_statement"], rows)
    else:  # SHOW CREATE TABLE's columns, statements without a semicolon
        text = _records(",", ["table_name", "create_statement"],
                        [["a", STATEMENTS[0]], ["b", STATEMENTS[1]]])
    schema = parse_schema(text, source=f"schema.{form}")
    if form == "csv-two-columns":
        assert [t.name.name for t in schema.tables] == ["a", "b"]
        assert schema.table("a") == plain.table("a")
        return
    assert schema.tables == plain.tables
    assert schema.table("a").column("note").default == "CAST('a, \"b\"' AS TEXT)"


def test_a_tsv_file_as_cockroach_sql_writes_it() -> None:
    # Go's encoding/csv with a tab: fields with a newline or a quote are quoted.
    text = ('create_statement\n'
            '"CREATE TABLE public.t (\n\tx INT8 NOT NULL,\n'
            '\ts STRING NULL DEFAULT \'say ""hi""\':::STRING,\n'
            '\tCONSTRAINT t_pkey PRIMARY KEY (x ASC)\n);"\n'
            'ALTER TABLE public.t VALIDATE CONSTRAINT c;\n')
    with pytest.raises(InvalidSchema, match=r"^schema.tsv: line 7: VALIDATE CONSTRAINT c: "):
        parse_schema(text, source="schema.tsv")  # c does not exist: the error names its line
    schema = parse_schema(text.split("ALTER", maxsplit=1)[0], source="schema.tsv")
    assert schema.table("t").column("s").default == "CAST('say \"hi\"' AS TEXT)"


@pytest.mark.parametrize(("text", "expected"), [
    ("CREATE TABLE t (x INT8 NOT NULL WOBBLE);", r"line 1: unexpected 'WOBBLE' in the "
                                                  r"definition of column x"),
    ("CREATE TABLE t (\n  x INT8,\n  y MYSTERY\n);", r"line 3: column y of public.t: unknown "
                                                     r"type MYSTERY"),
    ("SELECT 1;", r"line 1: SELECT is not a schema statement"),
    ("CREATE TABLE t (x INT8);\nCREATE TABLE t (y INT8);", r"line 2: table public.t is "
                                                          r"created twice"),
    ("CREATE TABLE t (x INT8);\nCREATE INDEX ON u (x);", r"line 2: table public.u is not "
                                                        r"created in this file"),
    ("CREATE TABLE t (x INT8, INDEX (nope));", r"line 1: index t_nope_idx of public.t: no "
                                               r"column nope"),
    ("CREATE TABLE t (x STRING DEFAULT 'unterminated);", r"not readable as SQL"),
    ("", r"defines no table"),
    ("create_statement,other\n\"CREATE TABLE t (x INT8);\"\n", r"line 2: 1 field where "
                                                                r"the header has 2"),
    ("CREATE TABLE t (x INT8, y DECIMAL(ten));", r"takes numbers"),
])
def test_what_cannot_be_read_is_one_line_with_exit_2(text: str, expected: str) -> None:
    with pytest.raises(InvalidSchema) as invalid:
        parse_schema(text, source="bad.sql")
    message = str(invalid.value)
    assert invalid.value.exit_code == ExitCode.BAD_INPUT
    assert message.startswith("bad.sql: ")
    assert "\n" not in message
    assert __import__("re").search(expected, message), message


def test_hand_written_files_get_cockroachdb_semantics() -> None:
    schema = parse_schema(
        "CREATE TABLE Users (Id INT PRIMARY KEY, \"Name\" TEXT UNIQUE, score INTEGER "
        "CHECK (Score >= 0), parent INT REFERENCES users);\n"
        "CREATE TABLE nokey (v STRING);", source="hand.sql")
    users = schema.table("users")
    assert [c.name for c in users.columns] == ["id", "Name", "score", "parent"]
    assert users.column("id").type.postgres == "bigint"  # INT is INT8 in CockroachDB
    assert users.primary_key == ("id",)
    assert [i.name for i in users.indexes] == ["users_Name_key"]
    assert [c.definition for c in users.constraints] == [
        'CHECK ("score" >= 0)', 'FOREIGN KEY ("parent") REFERENCES "public"."users" ("id")']
    nokey = schema.table("nokey")
    assert nokey.primary_key == ("rowid",)
    assert nokey.column("rowid").hidden


def test_restricting_to_some_tables_drops_keys_to_the_others() -> None:
    schema = parse_schema(schemas.MOVR_MULTI_REGION, source="movr")
    only = schema.restricted_to([QualifiedName("public", "rides")])
    rides = only.table("rides")
    assert [c.name for c in rides.constraints] == ["check_vehicle_city_city"]
    assert "public.rides: foreign key fk_city_ref_users not created: public.users is not in " \
           "this export" in only.all_notes()
    with pytest.raises(KeyError):
        schema.restricted_to([QualifiedName("public", "nope")])


def test_one_target_schema_for_tables_of_the_same_name_is_refused() -> None:
    schema = parse_schema(schemas.LOGIC_TEST, source="logic.sql")
    with pytest.raises(BadInput, match=r"public.t and sc1.t would both be merged.t"):
        postgresql_ddl(schema, schema_name="merged")


def test_index_names_met_twice_in_a_schema_are_renamed_with_a_note() -> None:
    schema = parse_schema(
        'CREATE TABLE a (x INT8 NOT NULL, CONSTRAINT "primary" PRIMARY KEY (x ASC), '
        "INDEX idx (x ASC));\n"
        'CREATE TABLE b (x INT8 NOT NULL, CONSTRAINT "primary" PRIMARY KEY (x ASC), '
        "INDEX idx (x ASC));", source="two.sql")
    ddl = postgresql_ddl(schema)
    assert 'CONSTRAINT "b_primary" PRIMARY KEY ("x")' in ddl.create[-1]
    assert 'CREATE INDEX "b_idx" ON "public"."b" ("x")' in ddl.after_load
    assert "public.b: index idx created as b_idx: index names are unique per schema in " \
           "PostgreSQL" in ddl.notes


def test_a_hostile_schema_file_gets_no_function_call_through() -> None:
    schema = parse_schema(
        "CREATE TABLE t (a STRING DEFAULT pg_read_file('/etc/passwd'), "
        "b INT8 DEFAULT (SELECT 1), c INT8 CHECK (c > (SELECT count(*) FROM pg_user)), "
        "d STRING, INDEX i ((pg_sleep(1)::STRING)), INDEX p (d) WHERE dblink_exec('x') = 'y');",
        source="hostile.sql")
    table = schema.table("t")
    assert [c.default for c in table.columns] == [None, None, None, None, None]
    assert table.constraints == ()
    assert table.indexes == ()
    notes = _notes(schema)
    assert "DEFAULT pg_read_file('/etc/passwd') dropped: pg_read_file() is not known" in notes
    assert "DEFAULT (SELECT 1) dropped: a subquery" in notes
    assert "index i not created" in notes
    assert "index p not created: its predicate dblink_exec('x') = 'y'" in notes


def test_deep_nesting_is_one_line_not_a_crash() -> None:
    deep = "(" * 5000 + "1" + ")" * 5000
    with pytest.raises(InvalidSchema) as invalid:
        parse_schema(f"CREATE TABLE t (a INT8 DEFAULT {deep});", source="deep.sql")
    assert "\n" not in str(invalid.value)

"""The translated DDL runs in a real PostgreSQL, and its catalogs hold what each CockroachDB
schema declared: types, keys, indexes, constraints and comments."""

from __future__ import annotations

import pytest

from crdb_archive.export.ddl import parse_schema
from crdb_archive.export.postgres import postgresql_ddl
from support import schemas
from support.postgres import PostgresDatabase


def _run(db: PostgresDatabase, text: str, schema_name: str | None = None) -> None:
    ddl = postgresql_ddl(parse_schema(text, source="schema.sql"), schema_name=schema_name)
    with db.connect() as connection, connection.transaction():
        for statement in ddl.create + ddl.after_load:
            connection.execute(statement.encode())


def _columns(db: PostgresDatabase, schema: str, table: str) -> list[tuple[object, ...]]:
    return db.query(
        "SELECT column_name, format_type(a.atttypid, a.atttypmod), c.is_nullable "
        "FROM information_schema.columns c JOIN pg_attribute a ON a.attname = c.column_name "
        "AND a.attrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))"
        "::regclass WHERE c.table_schema = %s AND c.table_name = %s ORDER BY c.ordinal_position",
        schema, table)


def _constraints(db: PostgresDatabase, schema: str) -> set[tuple[object, ...]]:
    return set(db.query(
        "SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE connamespace = (SELECT oid FROM pg_namespace "
        "WHERE nspname = %s)", schema))


def _indexes(db: PostgresDatabase, schema: str) -> dict[str, str]:
    return {str(name): str(definition) for name, definition in db.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", schema)}


@pytest.mark.parametrize("name", ["MOVR_MULTI_REGION", "HASH_SHARDED", "LOGIC_TEST",
                                  "EVERY_TYPE"])
def test_each_schema_runs_in_postgresql(postgres_db: PostgresDatabase, name: str) -> None:
    _run(postgres_db, getattr(schemas, name))
    tables = postgres_db.query("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                               "('pg_catalog', 'information_schema')")
    assert tables == [(len(parse_schema(getattr(schemas, name), source=name).tables),)]


def test_movr_multi_region_in_postgresql(postgres_db: PostgresDatabase) -> None:
    _run(postgres_db, schemas.MOVR_MULTI_REGION)

    assert _columns(postgres_db, "public", "users") == [
        ("id", "uuid", "NO"), ("city", "character varying", "NO"),
        ("name", "character varying", "YES"), ("address", "character varying", "YES"),
        ("credit_card", "character varying", "YES")]
    assert _columns(postgres_db, "public", "rides")[-1] == ("revenue", "numeric(10,2)", "YES")
    assert _columns(postgres_db, "public", "vehicle_location_histories")[2:4] == [
        ("timestamp", "timestamp without time zone", "NO"), ("lat", "double precision", "YES")]
    constraints = _constraints(postgres_db, "public")
    assert ("users", "users_pkey", "p", "PRIMARY KEY (city, id)") in constraints
    assert ("drivers", "primary", "p", "PRIMARY KEY (city, id)") in constraints
    assert ("rides", "check_vehicle_city_city", "c",
            "CHECK (((vehicle_city)::text = (city)::text))") in constraints
    assert ("rides", "fk_vehicle_city_ref_vehicles", "f",
            "FOREIGN KEY (vehicle_city, vehicle_id) REFERENCES vehicles(city, id)") in constraints
    foreign_keys = sorted((c[0], c[1]) for c in constraints if c[2] == "f")
    assert foreign_keys == [("rides", "fk_city_ref_users"),
                            ("rides", "fk_vehicle_city_ref_vehicles"),
                            ("user_promo_codes", "fk_city_ref_users"),
                            ("vehicle_location_histories", "fk_city_ref_rides"),
                            ("vehicles", "fk_city_ref_users")]
    indexes = _indexes(postgres_db, "public")
    assert indexes["drivers_dl_key"] == \
        "CREATE UNIQUE INDEX drivers_dl_key ON public.drivers USING btree (dl)"
    assert indexes["rides_auto_index_fk_city_ref_users"] == \
        "CREATE INDEX rides_auto_index_fk_city_ref_users ON public.rides USING btree " \
        "(city, rider_id)"
    assert postgres_db.query("SELECT obj_description('public.users'::regclass, 'pg_class')") \
        == [("This table contains information about users.",)]


def test_hash_sharded_and_family_tables_in_postgresql(postgres_db: PostgresDatabase) -> None:
    _run(postgres_db, schemas.HASH_SHARDED)

    assert [c[0] for c in _columns(postgres_db, "public", "events")] == [
        "product_id", "owner", "serial_number", "event_id", "ts", "data"]
    assert _columns(postgres_db, "public", "specific_family") == [
        ("a", "bigint", "YES"), ("b", "bigint", "YES")]
    constraints = _constraints(postgres_db, "public")
    assert {(c[0], c[3]) for c in constraints} == {
        ("events", "PRIMARY KEY (product_id, owner, serial_number, ts, event_id)"),
        ("sharded_primary", "PRIMARY KEY (a)")}
    indexes = _indexes(postgres_db, "public")
    assert indexes["events_ts_idx"] == \
        "CREATE INDEX events_ts_idx ON public.events USING btree (ts)"
    assert indexes["specific_family_b_idx"] == \
        "CREATE INDEX specific_family_b_idx ON public.specific_family USING btree (b)"


def test_logic_test_schema_in_postgresql(postgres_db: PostgresDatabase) -> None:
    _run(postgres_db, schemas.LOGIC_TEST)

    constraints = _constraints(postgres_db, "public")
    assert ("full_test", "full_test_x_y_z_fkey", "f",
            "FOREIGN KEY (x, y, z) REFERENCES parent(x, y, z) MATCH FULL ON UPDATE CASCADE "
            "ON DELETE CASCADE") in constraints
    assert ('"t   t"', "t   t_pkey", "p", "PRIMARY KEY (\"x'\")") in constraints
    assert postgres_db.query(
        "SELECT obj_description('public.\"t   t\"'::regclass, 'pg_class'), "
        "col_description('public.\"t   t\"'::regclass, 1), "
        "obj_description((SELECT oid FROM pg_constraint WHERE conname = 't   t_pkey'), "
        "'pg_constraint')") == [("has ' quotes", "i ' just ' love ' quotes",
                                 "new constraint comment")]
    assert _indexes(postgres_db, "public")[";_;_idx"] == \
        'CREATE INDEX ";_;_idx" ON public.";" USING btree (";")'
    assert _columns(postgres_db, "sc1", "t") == [("x", "bigint", "YES")]
    assert _columns(postgres_db, "public", "typed") == [("x", "test", "YES")]
    assert postgres_db.query("SELECT enum_range(NULL::public.test)::text") == [("{a,b}",)]


EVERY_TYPE_COLUMNS = [
    ("id", "bigint", "NO"), ("i2", "smallint", "YES"), ("i4", "integer", "YES"),
    ("f4", "real", "YES"), ("f8", "double precision", "YES"), ("d", "numeric(12,3)", "YES"),
    ("d_any", "numeric", "YES"), ("b", "boolean", "NO"), ("s", "text", "YES"),
    ("s20", "character varying(20)", "YES"), ("vc", "character varying", "YES"),
    ("vc9", "character varying(9)", "YES"), ("ch", "character(3)", "YES"),
    ("by", "bytea", "YES"), ("u", "uuid", "NO"), ("dt", "date", "YES"),
    ("tm", "time without time zone", "YES"), ("ts", "timestamp without time zone", "YES"),
    ("tstz", "timestamp with time zone", "NO"), ("ts3", "timestamp(3) with time zone", "YES"),
    ("iv", "interval", "YES"), ("ip", "inet", "YES"), ("j", "jsonb", "YES"),
    ("bits", "bit(4)", "YES"), ("vbits", "bit varying", "YES"), ("m", "mood", "YES"),
    ("tags", "text[]", "YES"), ("nums", "bigint[]", "YES"), ("moods", "mood[]", "YES"),
    ("g", "text", "YES"), ("ordinal", "bigint", "NO"),
    ("updated", "timestamp with time zone", "YES"), ("twice", "bigint", "YES"),
]


def test_every_type_in_postgresql(postgres_db: PostgresDatabase) -> None:
    _run(postgres_db, schemas.EVERY_TYPE)

    assert _columns(postgres_db, "public", "every_type") == EVERY_TYPE_COLUMNS
    assert _columns(postgres_db, "shop", "orders") == [
        ("id", "bigint", "NO"), ("item_id", "bigint", "NO"), ("st", "shop.status", "NO"),
        ("note", "text", "YES")]
    defaults = {str(name): str(default) for name, default in postgres_db.query(
        "SELECT column_name, column_default FROM information_schema.columns "
        "WHERE table_name = 'every_type' AND column_default IS NOT NULL")}
    assert defaults == {"b": "true", "s": "''::text", "u": "gen_random_uuid()",
                        "tstz": "CURRENT_TIMESTAMP", "m": "'ok'::mood"}
    indexes = _indexes(postgres_db, "public")
    assert indexes == {
        "every_type_pkey": "CREATE UNIQUE INDEX every_type_pkey ON public.every_type USING "
                           "btree (id)",
        "every_type_u_key": "CREATE UNIQUE INDEX every_type_u_key ON public.every_type USING "
                            "btree (u)",
        "every_type_ts_idx": "CREATE INDEX every_type_ts_idx ON public.every_type USING btree "
                             "(ts DESC) INCLUDE (s, d)",
        "every_type_partial_idx": "CREATE INDEX every_type_partial_idx ON public.every_type "
                                  "USING btree (s20) WHERE (i4 > (0)::bigint)",
        "every_type_lower_idx": "CREATE INDEX every_type_lower_idx ON public.every_type USING "
                                "btree (lower(s))",
        "every_type_j_idx": "CREATE INDEX every_type_j_idx ON public.every_type USING gin (j)",
        "every_type_tags_idx": "CREATE INDEX every_type_tags_idx ON public.every_type USING "
                               "gin (tags)",
        "every_type_invisible_idx": "CREATE INDEX every_type_invisible_idx ON "
                                    "public.every_type USING btree (dt)",
        "every_type_s20_key": "CREATE UNIQUE INDEX every_type_s20_key ON public.every_type "
                              "USING btree (s20)",
    }
    checks = {c[1]: c[3] for c in _constraints(postgres_db, "public") if c[2] == "c"}
    assert checks == {"check_i2": "CHECK ((i2 >= (0)::bigint))",
                      "check_s": "CHECK ((length(s) < (100)::bigint))"}
    # public is on the search path: PostgreSQL shows the reference unqualified.
    assert ("shop.orders", "orders_item_id_fkey", "f",
            "FOREIGN KEY (item_id) REFERENCES every_type(id) ON DELETE CASCADE") in \
        _constraints(postgres_db, "shop")
    assert postgres_db.query(
        "SELECT col_description('public.every_type'::regclass, 6), "
        "obj_description('public.every_type_ts_idx'::regclass, 'pg_class'), "
        "obj_description((SELECT oid FROM pg_constraint WHERE conname = 'check_i2'), "
        "'pg_constraint')") == [("price, three decimals", "newest first", "never negative")]
    assert postgres_db.query("SELECT enum_range(NULL::shop.status)::text") == \
        [('{new,"it\'s shipped"}',)]


def test_every_type_into_one_named_schema(postgres_db: PostgresDatabase) -> None:
    _run(postgres_db, schemas.EVERY_TYPE, schema_name="Archive")

    assert _columns(postgres_db, "Archive", "orders")[2] == ("st", '"Archive".status', "NO")
    assert ("orders", "orders_item_id_fkey", "f",
            'FOREIGN KEY (item_id) REFERENCES "Archive".every_type(id) ON DELETE CASCADE') in \
        {(str(c[0]).split(".")[-1], *c[1:]) for c in _constraints(postgres_db, "Archive")}

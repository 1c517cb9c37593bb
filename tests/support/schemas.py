# ruff: noqa: E501 - CockroachDB's output is quoted as it was printed, long lines included
"""Schema files as CockroachDB prints them, for the translator and loader tests.

The first ones are ``SHOW CREATE`` outputs quoted from CockroachDB's documentation and its
logic tests (test data: the statements exactly as CockroachDB printed them); the last one is
written for these tests to cover every type and clause the translator knows.
"""

from __future__ import annotations

# docs: show-create.md, "Show the statements needed to recreate all tables, views, and
# sequences in the current database" (a multi-region movr database), in the SQL shell's table
# form.
MOVR_MULTI_REGION = """\
                                                                       create_statement
---------------------------------------------------------------------------------------------------------------------------------------------------------------
  CREATE TABLE public.users (
      id UUID NOT NULL,
      city VARCHAR NOT NULL,
      name VARCHAR NULL,
      address VARCHAR NULL,
      credit_card VARCHAR NULL,
      crdb_region public.crdb_internal_region NOT VISIBLE NOT NULL DEFAULT default_to_database_primary_region(gateway_region())::public.crdb_internal_region,
      CONSTRAINT users_pkey PRIMARY KEY (city ASC, id ASC)
  ) LOCALITY REGIONAL BY ROW;
  COMMENT ON TABLE public.users IS 'This table contains information about users.';
  CREATE TABLE public.vehicles (
      id UUID NOT NULL,
      city VARCHAR NOT NULL,
      type VARCHAR NULL,
      owner_id UUID NULL,
      creation_time TIMESTAMP NULL,
      status VARCHAR NULL,
      current_location VARCHAR NULL,
      ext JSONB NULL,
      CONSTRAINT vehicles_pkey PRIMARY KEY (city ASC, id ASC),
      INDEX vehicles_auto_index_fk_city_ref_users (city ASC, owner_id ASC)
  ) LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
  CREATE TABLE public.rides (
      id UUID NOT NULL,
      city VARCHAR NOT NULL,
      vehicle_city VARCHAR NULL,
      rider_id UUID NULL,
      vehicle_id UUID NULL,
      start_address VARCHAR NULL,
      end_address VARCHAR NULL,
      start_time TIMESTAMP NULL,
      end_time TIMESTAMP NULL,
      revenue DECIMAL(10,2) NULL,
      CONSTRAINT rides_pkey PRIMARY KEY (city ASC, id ASC),
      INDEX rides_auto_index_fk_city_ref_users (city ASC, rider_id ASC),
      INDEX rides_auto_index_fk_vehicle_city_ref_vehicles (vehicle_city ASC, vehicle_id ASC),
      CONSTRAINT check_vehicle_city_city CHECK (vehicle_city = city)
  ) LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
  CREATE TABLE public.vehicle_location_histories (
      city VARCHAR NOT NULL,
      ride_id UUID NOT NULL,
      "timestamp" TIMESTAMP NOT NULL,
      lat FLOAT8 NULL,
      long FLOAT8 NULL,
      CONSTRAINT vehicle_location_histories_pkey PRIMARY KEY (city ASC, ride_id ASC, "timestamp" ASC)
  ) LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
  CREATE TABLE public.promo_codes (
      code VARCHAR NOT NULL,
      description VARCHAR NULL,
      creation_time TIMESTAMP NULL,
      expiration_time TIMESTAMP NULL,
      rules JSONB NULL,
      CONSTRAINT promo_codes_pkey PRIMARY KEY (code ASC)
  ) LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
  CREATE TABLE public.user_promo_codes (
      city VARCHAR NOT NULL,
      user_id UUID NOT NULL,
      code VARCHAR NOT NULL,
      "timestamp" TIMESTAMP NULL,
      usage_count INT8 NULL,
      CONSTRAINT user_promo_codes_pkey PRIMARY KEY (city ASC, user_id ASC, code ASC)
  ) LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
  CREATE TABLE public.drivers (
      id UUID NOT NULL,
      city STRING NOT NULL,
      name STRING NULL,
      dl STRING NULL,
      address STRING NULL,
      CONSTRAINT "primary" PRIMARY KEY (city ASC, id ASC),
      UNIQUE INDEX drivers_dl_key (dl ASC)
  ) LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
  CREATE VIEW public.user_view (city, name) AS SELECT city, name FROM movr.public.users;
  CREATE SEQUENCE public.desc_customer_list MINVALUE -9223372036854775808 MAXVALUE -1 INCREMENT -2 START -1;
  ALTER TABLE public.vehicles ADD CONSTRAINT fk_city_ref_users FOREIGN KEY (city, owner_id) REFERENCES public.users(city, id);
  ALTER TABLE public.rides ADD CONSTRAINT fk_city_ref_users FOREIGN KEY (city, rider_id) REFERENCES public.users(city, id);
  ALTER TABLE public.rides ADD CONSTRAINT fk_vehicle_city_ref_vehicles FOREIGN KEY (vehicle_city, vehicle_id) REFERENCES public.vehicles(city, id);
  ALTER TABLE public.vehicle_location_histories ADD CONSTRAINT fk_city_ref_rides FOREIGN KEY (city, ride_id) REFERENCES public.rides(city, id);
  ALTER TABLE public.user_promo_codes ADD CONSTRAINT fk_city_ref_users FOREIGN KEY (city, user_id) REFERENCES public.users(city, id);
  -- Validate foreign key constraints. These can fail if there was unvalidated data during the SHOW CREATE ALL TABLES
  ALTER TABLE public.vehicles VALIDATE CONSTRAINT fk_city_ref_users;
  ALTER TABLE public.rides VALIDATE CONSTRAINT fk_city_ref_users;
  ALTER TABLE public.rides VALIDATE CONSTRAINT fk_vehicle_city_ref_vehicles;
  ALTER TABLE public.vehicle_location_histories VALIDATE CONSTRAINT fk_city_ref_rides;
  ALTER TABLE public.user_promo_codes VALIDATE CONSTRAINT fk_city_ref_users;
(20 rows)
"""

# docs: hash-sharded-indexes.md, "Show hash-sharded index in SHOW CREATE TABLE"; and the
# logic test hash_sharded_index (a hash-sharded primary key, column families).
HASH_SHARDED = """\
CREATE TABLE public.events (
    product_id INT8 NOT NULL,
    owner UUID NOT NULL,
    serial_number VARCHAR NOT NULL,
    event_id UUID NOT NULL,
    ts TIMESTAMP NOT NULL,
    data JSONB NULL,
    crdb_internal_ts_shard_16 INT8 NOT VISIBLE NOT NULL AS (mod(fnv32(crdb_internal.datums_to_bytes(ts)), 16:::INT8)) VIRTUAL,
    CONSTRAINT events_pkey PRIMARY KEY (product_id ASC, owner ASC, serial_number ASC, ts ASC, event_id ASC),
    INDEX events_ts_idx (ts ASC) USING HASH WITH (bucket_count=16)
);
CREATE TABLE public.sharded_primary (
    crdb_internal_a_shard_10 INT4 NOT VISIBLE NOT NULL AS (mod(fnv32(crdb_internal.datums_to_bytes(a)), 10:::INT8)) VIRTUAL,
    a INT8 NOT NULL,
    CONSTRAINT sharded_primary_pkey PRIMARY KEY (a ASC) USING HASH WITH (bucket_count=10)
);
CREATE TABLE public.specific_family (
    a INT8 NULL,
    b INT8 NULL,
    crdb_internal_b_shard_10 INT4 NOT VISIBLE NOT NULL AS (mod(fnv32(crdb_internal.datums_to_bytes(b)), 10:::INT8)) VIRTUAL,
    rowid INT8 NOT VISIBLE NOT NULL DEFAULT unique_rowid(),
    CONSTRAINT specific_family_pkey PRIMARY KEY (rowid ASC),
    INDEX specific_family_b_idx (b ASC) USING HASH WITH (bucket_count=10),
    FAMILY a_family (a, rowid),
    FAMILY b_family (b)
);
"""

# Logic test show_create_all_tables: foreign key order, MATCH FULL and actions, computed
# columns, escaped names, comments with quotes (e'...'), COMMENT ON INDEX t@i, a database-
# qualified enum type, sequences and views.
LOGIC_TEST = """\
CREATE TABLE public.parent (
    x INT8 NULL,
    y INT8 NULL,
    z INT8 NULL,
    rowid INT8 NOT VISIBLE NOT NULL DEFAULT unique_rowid(),
    CONSTRAINT parent_pkey PRIMARY KEY (rowid ASC),
    UNIQUE INDEX parent_x_y_z_key (x ASC, y ASC, z ASC),
    UNIQUE INDEX parent_x_key (x ASC),
    FAMILY f1 (x, y, z, rowid)
);
CREATE TABLE public.full_test (
    x INT8 NULL,
    y INT8 NULL,
    z INT8 NULL,
    rowid INT8 NOT VISIBLE NOT NULL DEFAULT unique_rowid(),
    CONSTRAINT full_test_pkey PRIMARY KEY (rowid ASC),
    UNIQUE INDEX full_test_x_key (x ASC),
    FAMILY f1 (x, y, z, rowid)
);
CREATE VIEW public.vx (
                                                                                                                                                                          "?column?"
) AS SELECT 1;
CREATE SEQUENCE public.s MINVALUE 1 MAXVALUE 9223372036854775807 INCREMENT 1 START 1;
ALTER TABLE public.full_test ADD CONSTRAINT full_test_x_y_z_fkey FOREIGN KEY (x, y, z) REFERENCES public.parent(x, y, z) MATCH FULL ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE public.full_test ADD CONSTRAINT test_fk FOREIGN KEY (x) REFERENCES public.parent(x) ON DELETE CASCADE;
-- Validate foreign key constraints. These can fail if there was unvalidated data during the SHOW CREATE ALL TABLES
ALTER TABLE public.full_test VALIDATE CONSTRAINT full_test_x_y_z_fkey;
ALTER TABLE public.full_test VALIDATE CONSTRAINT test_fk;
CREATE TABLE public.t (
    a INT8 NOT NULL,
    b INT8 NULL AS (a + 1:::INT8) STORED,
    CONSTRAINT t_pkey PRIMARY KEY (a ASC),
    FAMILY f1 (a, b)
);
CREATE TABLE public.";" (
    ";" INT8 NULL,
    rowid INT8 NOT VISIBLE NOT NULL DEFAULT unique_rowid(),
    CONSTRAINT ";_pkey" PRIMARY KEY (rowid ASC),
    INDEX ";_;_idx" (";" ASC)
);
CREATE TABLE public."t   t" (
  "x'" INT8 NOT NULL,
  CONSTRAINT "t   t_pkey" PRIMARY KEY ("x'" ASC)
);
COMMENT ON TABLE public."t   t" IS e'has \\' quotes';
COMMENT ON COLUMN public."t   t"."x'" IS e'i \\' just \\' love \\' quotes';
COMMENT ON INDEX public."t   t"@"t   t_pkey" IS e'has \\' more \\' quotes';
COMMENT ON CONSTRAINT "t   t_pkey" ON public."t   t" IS 'new constraint comment';
CREATE TABLE sc1.t (
    x INT8 NULL,
    rowid INT8 NOT VISIBLE NOT NULL DEFAULT unique_rowid(),
    CONSTRAINT t_pkey PRIMARY KEY (rowid ASC)
);
CREATE SEQUENCE public.s1 MINVALUE 1 MAXVALUE 9223372036854775807 INCREMENT 123 START 1;
CREATE TABLE public.s_tbl (
    id INT8 NOT NULL DEFAULT nextval('public.s'::REGCLASS),
    v INT8 NULL,
    CONSTRAINT s_tbl_pkey PRIMARY KEY (id ASC),
    FAMILY f1 (id, v)
);
CREATE TABLE public.typed (
    x type_test.public.test NULL,
    rowid INT8 NOT VISIBLE NOT NULL DEFAULT unique_rowid(),
    CONSTRAINT typed_pkey PRIMARY KEY (rowid ASC)
);
CREATE TYPE public.test AS ENUM ('a', 'b');
"""

# Written for these tests: every type the translator maps, enums as SHOW CREATE ALL TYPES
# prints them, arrays, defaults (portable and not), checks, partial, descending, expression
# and inverted indexes, STORING, NOT VISIBLE indexes, UNIQUE WITHOUT INDEX, ON UPDATE,
# column families, partitioning, a storage parameter, a second schema, a separate CREATE
# INDEX, and comments on a column, an index and a check.
EVERY_TYPE = """\
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE shop.status AS ENUM ('new', 'it''s shipped');
CREATE TABLE public.every_type (
    id INT8 NOT NULL,
    i2 INT2 NULL,
    i4 INT4 NULL,
    f4 FLOAT4 NULL,
    f8 FLOAT8 NULL,
    d DECIMAL(12,3) NULL,
    d_any DECIMAL NULL,
    b BOOL NOT NULL DEFAULT true,
    s STRING NULL DEFAULT '':::STRING,
    s20 STRING(20) NULL,
    vc VARCHAR NULL,
    vc9 VARCHAR(9) NULL,
    ch CHAR(3) NULL,
    by BYTES NULL,
    u UUID NOT NULL DEFAULT gen_random_uuid(),
    dt DATE NULL,
    tm TIME NULL,
    ts TIMESTAMP NULL,
    tstz TIMESTAMPTZ NOT NULL DEFAULT now():::TIMESTAMPTZ,
    ts3 TIMESTAMPTZ(3) NULL,
    iv INTERVAL NULL,
    ip INET NULL,
    j JSONB NULL,
    bits BIT(4) NULL,
    vbits VARBIT NULL,
    m public.mood NULL DEFAULT 'ok':::public.mood,
    tags STRING[] NULL,
    nums INT8[] NULL,
    moods public.mood[] NULL,
    g GEOMETRY NULL,
    ordinal INT8 NOT NULL DEFAULT unique_rowid(),
    updated TIMESTAMPTZ NULL ON UPDATE now():::TIMESTAMPTZ,
    twice INT8 NULL AS (i4 * 2:::INT8) STORED,
    crdb_region STRING NOT VISIBLE NOT NULL DEFAULT gateway_region(),
    CONSTRAINT every_type_pkey PRIMARY KEY (id ASC),
    UNIQUE INDEX every_type_u_key (u ASC),
    INDEX every_type_ts_idx (ts DESC) STORING (s, d),
    INDEX every_type_partial_idx (s20 ASC) WHERE i4 > 0:::INT8,
    INDEX every_type_lower_idx (lower(s) ASC),
    INVERTED INDEX every_type_j_idx (j),
    INVERTED INDEX every_type_tags_idx (tags),
    INDEX every_type_hidden_idx (crdb_region ASC, s ASC),
    INDEX every_type_invisible_idx (dt ASC) NOT VISIBLE,
    UNIQUE WITHOUT INDEX (s20),
    CONSTRAINT check_i2 CHECK (i2 >= 0:::INT8),
    CONSTRAINT check_s CHECK (length(s) < 100:::INT8),
    CONSTRAINT check_region CHECK (crdb_region != '':::STRING),
    FAMILY "primary" (id, i2, i4, f4, f8, d, d_any, b, s, s20, vc, vc9, ch, by, u, dt, tm, ts, tstz, ts3, iv, ip, j, bits, vbits, m, tags, nums, moods, g, ordinal, updated, twice, crdb_region)
) WITH (ttl = 'on', ttl_expire_after = '90 days':::INTERVAL) PARTITION BY NOTHING;
COMMENT ON COLUMN public.every_type.d IS 'price, three decimals';
COMMENT ON INDEX public.every_type@every_type_ts_idx IS 'newest first';
COMMENT ON CONSTRAINT check_i2 ON public.every_type IS 'never negative';
CREATE TABLE shop.orders (
    id INT8 NOT NULL,
    item_id INT8 NOT NULL,
    st shop.status NOT NULL DEFAULT 'new':::shop.status,
    note STRING COLLATE de NULL,
    CONSTRAINT orders_pkey PRIMARY KEY (id ASC),
    CONSTRAINT orders_item_id_fkey FOREIGN KEY (item_id) REFERENCES public.every_type(id) ON DELETE CASCADE
);
CREATE INDEX orders_status_idx ON shop.orders (st ASC, item_id DESC);
"""

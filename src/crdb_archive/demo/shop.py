"""A small shop database as a changefeed leaves it: its schema file, its two tables, and the
sink output of an event history over them.

``SCHEMA_SQL`` is what ``SHOW CREATE ALL TABLES`` prints for the two tables; ``SCHEMA`` is the
same tables written out by hand as the model the writers encode from. What the tables hold at
any time comes from the :class:`History` that :func:`write_shop_changefeed` returns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crdb_archive.demo.changefeeds import (
    INT8,
    JSONB,
    STRING,
    STRING_ARRAY,
    TIMESTAMP,
    TIMESTAMPTZ,
    UUID,
    Feed,
    History,
    JsonRaw,
    decimal,
    hlc,
    table,
)
from crdb_archive.export.model import Column, Schema

SCHEMA_SQL = """\
CREATE TABLE public.customers (
    id INT8 NOT NULL,
    name STRING NOT NULL,
    email STRING NULL,
    balance DECIMAL(12,2) NULL,
    profile JSONB NULL,
    joined TIMESTAMPTZ NULL,
    CONSTRAINT customers_pkey PRIMARY KEY (id ASC),
    UNIQUE INDEX customers_email_key (email ASC)
);
CREATE TABLE public.orders (
    id UUID NOT NULL,
    customer_id INT8 NOT NULL,
    total DECIMAL(10,2) NOT NULL,
    placed TIMESTAMP NOT NULL,
    tags STRING[] NULL,
    CONSTRAINT orders_pkey PRIMARY KEY (id ASC),
    INDEX orders_customer_id_idx (customer_id ASC)
);
ALTER TABLE public.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) \
REFERENCES public.customers(id);
ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_id_fkey;
"""

CUSTOMERS = table("customers", [
    Column("id", INT8, nullable=False),
    Column("name", STRING, nullable=False),
    Column("email", STRING),
    Column("balance", decimal(12, 2)),
    Column("profile", JSONB),
    Column("joined", TIMESTAMPTZ),
], ("id",))
ORDERS = table("orders", [
    Column("id", UUID, nullable=False),
    Column("customer_id", INT8, nullable=False),
    Column("total", decimal(10, 2), nullable=False),
    Column("placed", TIMESTAMP, nullable=False),
    Column("tags", STRING_ARRAY),
], ("id",))
SCHEMA = Schema(tables=(CUSTOMERS, ORDERS))

# The RESOLVED timestamps the changefeed writes, oldest first.
RESOLVED = (hlc(100), hlc(200), hlc(300))


def customer(i: int, version: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"customer {i}, \"v{version}\"",
        "email": f"c{i}@example.com" if i % 3 else None,
        "balance": JsonRaw(f"{i * 10 + version}.{version % 10}0"),
        "profile": JsonRaw(f'{{"tier": "t{version}", "visits": {i * version}, '
                           '"tags": ["a", null]}'),
        "joined": datetime(2023, 3, 1, 9, 30, tzinfo=UTC) + timedelta(days=i, microseconds=version),
    }


def order(n: int, customer_id: int, version: int) -> dict[str, Any]:
    return {
        "id": uuid.UUID(int=0xC0FFEE00 + n),
        "customer_id": customer_id,
        "total": JsonRaw(f"{n * 3 + version}.{version}5"),
        "placed": datetime(2023, 6, 1, 8) + timedelta(hours=n, minutes=version),
        "tags": ["gift", None, f"q\"{n}"] if n % 2 else [],
    }


def write_shop_changefeed(root: Path, *, fmt: str = "ndjson", envelope: str = "wrapped",
                          compression: str = "none", partitioning: str = "daily") -> History:
    """A changefeed over both tables through three RESOLVED timestamps: two sink sessions, a
    restart that re-emits rows (duplicates), updates, a delete, rows newer than a RESOLVED
    time in a file that sorts before it, and a file after the last RESOLVED timestamp."""
    feed = Feed(root, SCHEMA, format=fmt, envelope=envelope, compression=compression,
                partitioning=partitioning)
    h = History(SCHEMA)
    a = feed.session(node=1, sink=1)
    b = feed.session(node=2, sink=1)
    first = [h.put("customers", customer(i, 1), hlc(10 + i)) for i in range(1, 7)]
    a.file(hlc(5), "customers", first[:4])
    a.file(hlc(5), "customers", first[4:])
    orders = [h.put("orders", order(n, 1 + n % 4, 1), hlc(30 + n)) for n in range(1, 6)]
    b.file(hlc(5), "orders", orders)
    feed.resolved(RESOLVED[0])
    # Updates and a delete; the second file holds a row newer than the next RESOLVED time.
    changed = [h.put("customers", customer(2, 2), hlc(110)),
               h.delete("customers", (6,), hlc(120)),  # customer 6 has no order
               h.put("customers", customer(7, 1), hlc(130))]
    newer = h.put("customers", customer(1, 3), hlc(210))
    a.file(hlc(101), "customers", [*changed, newer])
    b.file(hlc(101), "orders", [h.put("orders", order(3, 4, 2), hlc(140)),
                                h.put("orders", order(6, 7, 1), hlc(150))])
    feed.resolved(RESOLVED[1])
    # Session A dies after writing past 200; session C restarts from 200 and re-emits.
    lost = h.put("customers", customer(4, 2), hlc(220))
    a.file(hlc(201), "customers", [newer, lost])
    c = feed.session(node=1, sink=1)
    c.file(hlc(201), "customers", [newer, lost, lost])
    c.file(hlc(201), "orders", [h.delete("orders", (order(5, 2, 1)["id"],), hlc(230)),
                                h.put("orders", order(2, 3, 2), hlc(240))])
    feed.resolved(RESOLVED[2])
    # After the last RESOLVED timestamp: in the bundle, in no snapshot.
    c.file(hlc(301), "customers", [h.put("customers", customer(8, 1), hlc(310))])
    return h

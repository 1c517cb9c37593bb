"""A destination of real bundles for the catalog and audit tests, copied into any storage.

The bundles are made once per module by the real writer (several CockroachDB eras, both forms,
one signed, one export bundle) into a local directory, and copied object by object into the
storage under test with its plain verbs, so the same destination exists on every backend. The
test's model of the truth is that local directory: what each bundle is, its size, its files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from crdb_archive.storage import Storage
from support.bundles import make_bundle
from support.ssh import Key, make_key


@dataclass(frozen=True)
class Made:
    """One bundle of the model: its key below the destination and what it is."""

    key: str  # name, or name.tar
    form: str
    kind: str
    version: str | None
    major: str | None
    time: dt.datetime
    signed_by: str | None = None


@dataclass(frozen=True)
class Destination:
    root: Path  # the local original: every bundle's files
    bundles: list[Made]
    key: Key | None  # the key the signed bundle was signed with

    def size(self, key: str) -> int:
        path = self.root / key
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def by_version(self, version: str) -> Made:
        return next(b for b in self.bundles if b.version == version)


# (era, form, signed): the bundle time of each era is fixed by its backup's manifest.
ERAS = (("v20.1", "dir", False), ("v20.2", "tar", False), ("v21.1", "dir", False),
        ("v22.2", "tar", False), ("v23.1", "dir", True))
TIMES = {
    "v20.1.17": dt.datetime(2020, 8, 1, 12, 0, 0, 250000, tzinfo=dt.UTC),
    "v20.2.19": dt.datetime(2021, 3, 4, 5, 6, 7, 80000, tzinfo=dt.UTC),
    "v21.1.21": dt.datetime(2021, 9, 10, 1, 2, 3, 450000, tzinfo=dt.UTC),
    "v22.2.17": dt.datetime(2023, 1, 12, 3, 0, 0, 120000, tzinfo=dt.UTC),
    "v23.1.11": dt.datetime(2023, 6, 2, 9, 32, 57, 930000, tzinfo=dt.UTC),
}


def make_destination(base: Path, *, with_export: bool = True) -> Destination:
    """Bundles of five eras (two of them tars, one signed) and an export bundle, in
    ``base/dest``."""
    root = base / "dest"
    (base / "keys").mkdir(parents=True)
    key = make_key(base / "keys", "archiver")
    made = []
    for era, form, signed in ERAS:
        path = make_bundle(base / era, era=era, fmt=form, dest=root,
                           sign_key=key.private if signed else None)
        version = path.name.removesuffix(".tar").split("-")[3]
        made.append(Made(path.name, form, "backup", version, version.rsplit(".", 1)[0],
                         TIMES[version], key.fingerprint if signed else None))
    if with_export:
        made.append(_export_bundle(base, root))
    return Destination(root, made, key)


def _export_bundle(base: Path, root: Path) -> Made:
    from crdb_archive.archive import ArchiveRequest  # noqa: PLC0415
    from crdb_archive.export.archive import archive_export  # noqa: PLC0415
    from crdb_archive.export.options import ExportOptions  # noqa: PLC0415
    from support.export_demo import SCHEMA_SQL, write_shop_changefeed  # noqa: PLC0415

    write_shop_changefeed(base / "sink")
    schema = base / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    result = archive_export(ArchiveRequest(source=str(base / "sink"), dest=root),
                            ExportOptions(schema=schema))
    assert result.as_of is not None
    when = dt.datetime.fromtimestamp(result.as_of.wall // 1_000_000_000, dt.UTC)
    return Made(result.name, "dir", "export", None, None, when)


def copy_into(destination: Destination, storage: Storage) -> None:
    """Every file of the model's bundles into ``storage``, at the same keys."""
    for path in destination.files():
        storage.put_bytes(path.relative_to(destination.root).as_posix(), path.read_bytes())

"""Try crdb-archive without a cluster: a demo backup, an offline mirror and a changefeed sink.

:func:`make_demo` writes, into a new folder:

* ``backup/``: a synthetic CockroachDB v24.3.1 backup collection (three full backups with
  incremental backups; manifests encoded as CockroachDB writes them, SST contents filler);
* ``mirror/``: stand-in release archives of v24.3.1 for every platform, each with its
  ``.sha256sum``, in the official layout. Their ``cockroach`` is a small shell script that
  prints version output, not CockroachDB: never archive a real backup against this mirror;
* ``changefeed/`` and ``schema.sql``: what a changefeed's cloud-storage sink writes for a small
  shop database of two tables, and its ``SHOW CREATE ALL TABLES`` output.

The modules below are also what the project's tests and benchmarks build their fixtures from.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from crdb_archive.demo.backups import write_collection
from crdb_archive.demo.release_archives import publish
from crdb_archive.demo.shop import SCHEMA_SQL, write_shop_changefeed
from crdb_archive.errors import BadInput
from crdb_archive.versions import release_index

RELEASE = "v24.3.1"
_MADE = ("backup", "mirror", "changefeed", "schema.sql")


@dataclass(frozen=True)
class Demo:
    """Where :func:`make_demo` put each part."""

    backup: Path
    mirror: Path
    changefeed: Path
    schema: Path
    release: str = RELEASE


def make_demo(target: Path) -> Demo:
    """Write the demo into ``target`` (created if need be).

    Raises BadInput when ``target`` already holds a demo (or anything of its names).
    """
    if any((target / name).exists() for name in _MADE):
        raise BadInput(f"{target} already holds a demo; remove it first")
    backup, mirror = target / "backup", target / "mirror"
    work = target / ".building"
    work.mkdir(parents=True, exist_ok=True)
    try:
        write_collection(work / "backup", build_tag=RELEASE)
        (work / "mirror").mkdir()
        # Every platform the release shipped, so a bundle records all their published checksums.
        publish(work / "mirror", RELEASE, list(release_index().release(RELEASE).platforms))
        write_shop_changefeed(work / "changefeed")
        (work / "schema.sql").write_text(SCHEMA_SQL, encoding="utf-8")
        for name in _MADE:
            (work / name).rename(target / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Demo(backup, mirror, target / "changefeed", target / "schema.sql")

#!/usr/bin/env python3
"""Make a demo backup, an offline binaries mirror and a changefeed sink, to try crdb-archive
without a cluster.

    python scripts/make-demo.py demo
    crdb-archive archive demo/backup --dest demo/bundles --mirror demo/mirror --cache-dir demo/cache
    crdb-archive archive demo/changefeed --dest demo/exports --schema demo/schema.sql

``demo/backup`` is a synthetic CockroachDB v24.3.1 backup collection (three full backups with
incremental backups; manifests encoded as CockroachDB writes them, SST contents filler).
``demo/mirror`` holds stand-in release archives of v24.3.1 for every platform, each with its
``.sha256sum``, in the official layout: their ``cockroach`` is a small shell script that prints
version output, not CockroachDB. Never archive a real backup against this mirror, and keep the
demo's download cache in the demo folder (``--cache-dir demo/cache``): a cache entry answers
only for the mirror it came from, and a bundle records that source, but a separate cache keeps
the stand-ins out of every other run's way.

``demo/changefeed`` is what a changefeed's cloud-storage sink (ndjson, wrapped envelope, daily
partitions) writes for a small shop database of two tables: several job sessions, RESOLVED
files, updates, a delete, rows re-emitted after a restart; ``demo/schema.sql`` is its ``SHOW
CREATE ALL TABLES`` output.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from crdb_archive.versions import release_index
from support.backups import v24_3_collection
from support.export_demo import SCHEMA_SQL, write_shop_changefeed
from support.release_archives import publish

RELEASE = "v24.3.1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="where to create backup/ and mirror/")
    args = parser.parse_args(argv)
    target: Path = args.directory
    if any((target / name).exists() for name in ("backup", "mirror", "changefeed")):
        print(f"{target} already holds a demo; remove it first", file=sys.stderr)
        return 2
    work = target / ".building"
    work.mkdir(parents=True, exist_ok=True)
    era = v24_3_collection(work)
    shutil.move(str(era.path), str(target / "backup"))
    shutil.rmtree(work)
    (target / "mirror").mkdir()
    # Every platform the release shipped, so the bundle records all their published checksums.
    publish(target / "mirror", RELEASE, list(release_index().release(RELEASE).platforms))
    write_shop_changefeed(target / "changefeed")
    (target / "schema.sql").write_text(SCHEMA_SQL)
    print(f"demo backup: {target / 'backup'} (CockroachDB {era.build_tag})")
    print(f"demo mirror: {target / 'mirror'} (stand-in release archive, not CockroachDB)")
    print(f"archive it:  crdb-archive archive {target / 'backup'} --dest {target / 'bundles'} "
          f"--mirror {target / 'mirror'} --cache-dir {target / 'cache'}")
    print(f"demo sink:   {target / 'changefeed'} (changefeed output; schema "
          f"{target / 'schema.sql'})")
    print(f"archive it:  crdb-archive archive {target / 'changefeed'} --dest "
          f"{target / 'exports'} --schema {target / 'schema.sql'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

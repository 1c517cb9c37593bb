#!/usr/bin/env python3
"""Make a demo backup, an offline binaries mirror and a changefeed sink, to try crdb-archive
without a cluster.

    python scripts/make-demo.py demo
    crdb-archive archive demo/backup --dest demo/bundles --mirror demo/mirror --cache-dir demo/cache
    crdb-archive archive demo/changefeed --dest demo/exports --schema demo/schema.sql

What each part is: :mod:`crdb_archive.demo`. The mirror's release archives are stand-ins (their
``cockroach`` is a small shell script, not CockroachDB): never archive a real backup against
this mirror, and keep the demo's download cache in the demo folder (``--cache-dir
demo/cache``): a cache entry answers only for the mirror it came from, and a bundle records
that source, but a separate cache keeps the stand-ins out of every other run's way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crdb_archive.demo import make_demo
from crdb_archive.errors import CrdbArchiveError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("directory", type=Path,
                        help="where to create backup/, mirror/, changefeed/ and schema.sql")
    args = parser.parse_args(argv)
    target: Path = args.directory
    try:
        demo = make_demo(target)
    except CrdbArchiveError as error:
        print(f"make-demo: {error}", file=sys.stderr)
        return int(error.exit_code)
    print(f"demo backup: {demo.backup} (CockroachDB {demo.release})")
    print(f"demo mirror: {demo.mirror} (stand-in release archive, not CockroachDB)")
    print(f"archive it:  crdb-archive archive {demo.backup} --dest {target / 'bundles'} "
          f"--mirror {demo.mirror} --cache-dir {target / 'cache'}")
    print(f"demo sink:   {demo.changefeed} (changefeed output; schema {demo.schema})")
    print(f"archive it:  crdb-archive archive {demo.changefeed} --dest "
          f"{target / 'exports'} --schema {demo.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

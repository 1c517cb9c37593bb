"""``python -m crdb_archive.cli``."""

from crdb_archive.cli.app import main

main()

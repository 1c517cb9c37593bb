"""The ``crdb-archive`` command line: parse, call one core function, render.

Nothing here decides anything about backups, binaries or bundles. Errors raised by the core
are caught once, in :func:`crdb_archive.cli.app.main`, and mapped to their exit codes.
"""

from crdb_archive.cli.app import main

__all__ = ["main"]

"""Talking to PostgreSQL: connecting without showing the password, and its errors as ours.

The connection string is libpq's (a ``postgresql://`` URL or ``key=value`` pairs); a password
may also come from PGPASSWORD or ~/.pgpass, as libpq reads them. Messages name the server as
``user@host:port/database`` and never carry the password.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import conninfo as libpq

from crdb_archive.errors import (
    BadInput,
    CrdbArchiveError,
    DatabaseUnavailable,
    RejectedByDatabase,
)

CONNECT_TIMEOUT = 30  # seconds, unless the connection string sets connect_timeout
_SECRET_KEYS = ("password", "sslpassword")
# SQLSTATE classes that mean PostgreSQL refused what the bundle asked of it (bad input):
# data exceptions, integrity violations, syntax or access rule violations (not privileges),
# unsupported features, limits exceeded, invalid transaction state after such an error.
_REJECTED = ("22", "23", "42", "0A", "54", "2B", "P0")


class Server:
    """A connection string, parsed once; ``display`` is safe to print."""

    def __init__(self, conninfo: str) -> None:
        try:
            self.params = libpq.conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as error:
            # libpq quotes the offending piece of the string, which may be the password.
            detail = re.sub(r'"[^"]*"', '"…"', str(error).splitlines()[0])
            raise BadInput(f"not a valid PostgreSQL connection string: {detail}") from None
        port = str(self.params.get("port") or "")
        if port and not all(part.strip().isdigit() for part in port.split(",")):
            raise BadInput(f"not a valid PostgreSQL connection string: the port {port!r} is "
                           "not a number")
        self._secrets = [str(self.params[k]) for k in _SECRET_KEYS if self.params.get(k)]
        user = str(self.params.get("user") or "(default user)")
        host = str(self.params.get("host") or self.params.get("hostaddr") or "(default host)")
        database = str(self.params.get("dbname") or "(default database)")
        self.display = f"{user}@{host}{':' + port if port else ''}/{database}"

    def scrub(self, text: str) -> str:
        """``text`` with the connection's secrets replaced."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """An open connection (not in autocommit); raises DatabaseUnavailable."""
        params = dict(self.params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        params.setdefault("application_name", "crdb-archive")
        try:
            return psycopg.connect(libpq.make_conninfo("", **params))
        except psycopg.Error as error:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {self.display}: "
                f"{self.scrub(_first_line(error))}") from None

    def error(self, error: psycopg.Error, doing: str) -> CrdbArchiveError:
        """``error`` as our error with its exit code: 2 when PostgreSQL refused the bundle's
        DDL or data, 3 when the server, the connection or a privilege failed."""
        sqlstate = error.sqlstate or ""
        message = self.scrub(_describe(error))
        if sqlstate == "42501":
            return DatabaseUnavailable(f"{doing}: permission denied on {self.display}: "
                                       f"{message}")
        if sqlstate[:2] in _REJECTED:
            return RejectedByDatabase(f"PostgreSQL rejected {doing}: {message}")
        return DatabaseUnavailable(f"{doing} failed on {self.display}: {message}")


def _first_line(error: psycopg.Error) -> str:
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(error).__name__


def _describe(error: psycopg.Error) -> str:
    diag = error.diag
    parts = [diag.message_primary or _first_line(error)]
    if diag.message_detail:
        parts.append(diag.message_detail)
    if diag.context:
        parts.append(diag.context.strip().splitlines()[0])
    return " ".join(" ".join(parts).split())

"""A real PostgreSQL server on loopback for the tests, and a fresh database per test.

The server (Debian's ``postgresql`` package, installed by .ci/run) runs from a temporary data
directory on 127.0.0.1 and a free port, for the whole test session. initdb and postgres
refuse to run as root, so as root both run as ``nobody``, owning the data directory. The
superuser logs in with a password over TCP (scram-sha-256), so that tests can also present a
wrong one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

SUPERUSER = "postgres"
START_TIMEOUT = 60.0


def find_bindir() -> Path | None:
    """Where initdb and postgres are: on PATH, per pg_config, or Debian's versioned dirs."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres:
        return Path(os.path.realpath(initdb)).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                check=False)
        candidate = Path(result.stdout.strip())
        if result.returncode == 0 and (candidate / "initdb").exists() and \
                (candidate / "postgres").exists():
            return candidate
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    password: str
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres", *, user: str = SUPERUSER,
            password: str | None = None) -> str:
        secret = self.password if password is None else password
        return (f"postgresql://{quote(user, safe='')}:{quote(secret, safe='')}@{self.host}:"
                f"{self.port}/{quote(database, safe='')}")

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=10)


@dataclass(frozen=True)
class PostgresDatabase:
    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def dsn(self) -> str:
        """The database's URL without the password, as an operator passes it on a command
        line; the password goes in PGPASSWORD (see :meth:`env`)."""
        return (f"postgresql://{SUPERUSER}@{self.server.host}:{self.server.port}/"
                f"{quote(self.name, safe='')}")

    def env(self) -> dict[str, str]:
        """The environment of a process that logs in with :attr:`dsn`."""
        return {**os.environ, "PGPASSWORD": self.server.password}

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return self.server.connect(self.name)

    def query(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        with self.connect() as connection:
            return connection.execute(statement, params or None).fetchall()


@dataclass(frozen=True)
class _Identity:
    """Who runs initdb and postgres: nobody when the tests run as root, else ourselves."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_server(cls) -> _Identity:
        if os.geteuid() != 0:
            return cls()
        nobody = pwd.getpwnam("nobody")
        return cls(nobody.pw_uid, nobody.pw_gid)

    def own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    @property
    def extra_groups(self) -> list[int] | None:
        return [] if self.uid is not None else None


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """Start a server in a temporary directory; stop it and remove the directory after."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="crdb-archive-pg-"))
    identity = _Identity.for_server()
    try:
        identity.own(root)
        password = secrets.token_urlsafe(16)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        identity.own(pwfile)
        data = root / "data"
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
             "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8",
             "--locale=C", "--no-sync"],
            check=True, capture_output=True, timeout=120, user=identity.uid,
            group=identity.gid, extra_groups=identity.extra_groups,
        )
        port = _free_port()
        log = (root / "server.log").open("wb")
        process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=40"],
            stdout=log, stderr=subprocess.STDOUT, user=identity.uid, group=identity.gid,
            extra_groups=identity.extra_groups,
        )
        server = PostgresServer("127.0.0.1", port, password, process)
        try:
            _wait_ready(server, root / "server.log")
            yield server
        finally:
            process.terminate()  # SIGTERM: smart shutdown; no client is left by then
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
            log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: PostgresServer, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"PostgreSQL exited at start: {log.read_text(errors='replace')[-2000:]}")
        try:
            with server.connect():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A new, empty database on the session's server, dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    with postgres_server.connect() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PostgresDatabase(postgres_server, name)
    finally:
        with postgres_server.connect() as connection:
            connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(name)))


@pytest.fixture
def postgres_dsn(postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test database's URL without its password, which goes in PGPASSWORD for the test:
    how an operator gives `load --into` a database."""
    monkeypatch.setenv("PGPASSWORD", postgres_db.server.password)
    return postgres_db.dsn

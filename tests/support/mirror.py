"""A loopback mirror of binaries.cockroachdb.com that misbehaves on demand.

It serves the files of one directory over HTTP/1.1 on 127.0.0.1, supports Range requests (with
If-Range), and logs every request. A per-file fault plan makes the next requests for that file
fail in a chosen way, one fault per request, in order::

    mirror.fail("cockroach-v23.1.11.linux-amd64.tgz", status(500), reset_after(100_000))
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal, cast
from urllib.parse import unquote, urlsplit

import pytest

FaultKind = Literal["status", "reset", "short", "stall", "ignore_range"]

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_CHUNK = 16 << 10


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, consumed by one request."""

    kind: FaultKind
    status: int = 500
    after: int = 0  # body bytes sent before the connection breaks
    retry_after: str | None = None
    seconds: float = 0.0


def status(code: int, *, retry_after: str | None = None) -> Fault:
    """Answer with ``code`` and a short body instead of the file."""
    return Fault("status", status=code, retry_after=retry_after)


def reset_after(after: int) -> Fault:
    """Send ``after`` bytes of the body, then reset the connection (TCP RST)."""
    return Fault("reset", after=after)


def short_body(after: int) -> Fault:
    """Promise the whole body in Content-Length, send ``after`` bytes, then close cleanly."""
    return Fault("short", after=after)


def stall_after(after: int, seconds: float) -> Fault:
    """Send ``after`` bytes, then go silent for ``seconds`` and close."""
    return Fault("stall", after=after, seconds=seconds)


def ignore_range() -> Fault:
    """Answer a Range request with the whole file (200), as servers without Range do."""
    return Fault("ignore_range")


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    name: str
    range: str | None
    if_range: str | None
    user_agent: str | None
    accept_encoding: str | None


class MirrorServer:
    """The mirror of ``root``; a context manager that starts and stops its server thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._faults: dict[str, deque[Fault]] = {}
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.stalled = threading.Event()  # set when a stall fault starts holding a response
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, name: str, *faults: Fault) -> None:
        """Queue ``faults`` for the next requests of ``name``."""
        with self._lock:
            self._faults.setdefault(name, deque()).extend(faults)

    def pending_faults(self, name: str) -> int:
        with self._lock:
            return len(self._faults.get(name, ()))

    def requests(self, name: str | None = None) -> list[LoggedRequest]:
        """The requests so far (of the file ``name`` only, if given), oldest first."""
        with self._lock:
            return [r for r in self._log if name is None or r.name == name]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def next_fault(self, name: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(name)
            return queue.popleft() if queue else None

    def record(self, request: LoggedRequest) -> None:
        with self._lock:
            self._log.append(request)

    def __enter__(self) -> MirrorServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mirror: MirrorServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mirror = mirror

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hang up mid-body on purpose in these tests; that is not a server error.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection does not hold its thread forever

    def log_message(self, format: str, *args: object) -> None:
        pass

    @property
    def mirror(self) -> MirrorServer:
        return cast(_Server, self.server).mirror

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, *, body: bool) -> None:
        name = unquote(urlsplit(self.path).path).lstrip("/")
        self.mirror.record(LoggedRequest(
            method=self.command,
            name=name,
            range=self.headers.get("Range"),
            if_range=self.headers.get("If-Range"),
            user_agent=self.headers.get("User-Agent"),
            accept_encoding=self.headers.get("Accept-Encoding"),
        ))
        fault = self.mirror.next_fault(name)
        if fault is not None and fault.kind == "status":
            self._answer(fault.status, retry_after=fault.retry_after)
            return
        path = self.mirror.root / name
        if not name or "/" in name or not path.is_file():
            self._answer(404)
            return
        size = path.stat().st_size
        etag = f'"{size:x}-{path.stat().st_mtime_ns:x}"'
        start, end = 0, size - 1
        requested = self.headers.get("Range")
        match = _RANGE.fullmatch(requested or "")
        use_range = (
            match is not None
            and (fault is None or fault.kind != "ignore_range")
            and self.headers.get("If-Range", etag) == etag
        )
        if use_range and match is not None:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.end_headers()
        if body:
            self._send_body(path, start, end - start + 1, fault)

    def _send_body(self, path: Path, start: int, length: int, fault: Fault | None) -> None:
        limit = fault.after if fault is not None and fault.kind in ("reset", "short", "stall") \
            else length
        with path.open("rb") as source:
            source.seek(start)
            sent = 0
            while sent < min(limit, length):
                chunk = source.read(min(_CHUNK, min(limit, length) - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        if fault is None or sent >= length:
            return
        self.close_connection = True
        if fault.kind == "stall":
            self.mirror.stalled.set()
            self.mirror.stopping.wait(fault.seconds)
        elif fault.kind == "reset":
            # Linger 0: closing sends RST instead of FIN.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()

    def _answer(self, code: int, *, retry_after: str | None = None) -> None:
        text = f"{code} {HTTPStatus(code).phrase}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[MirrorServer]:
    """A running mirror serving ``tmp_path / "mirror"`` (created empty)."""
    root = tmp_path / "mirror"
    root.mkdir()
    with MirrorServer(root) as server:
        yield server


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> str:
    """No request can leave this machine: every HTTP(S) request but those to loopback
    mirrors goes through a proxy address on 127.0.0.1 where nothing listens (connection
    refused). Returns that address."""
    with socket.socket() as probe:  # a port that was free a moment ago; nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = f"http://127.0.0.1:{port}"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    return proxy

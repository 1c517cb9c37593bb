"""An HTTP proxy on 127.0.0.1 that forwards to a real server and breaks requests on demand.

It sits between a client (boto3, the SDK of a cloud emulator) and its server (moto, Azurite,
fake-gcs-server) and plays the network failures a long transfer meets (a server that builds
URLs from the Host header, as fake-gcs-server does for upload sessions, keeps the client on
the proxy):

- ``refuse(status)``: answer ``status`` without forwarding (the request was never applied);
- ``fail_after(status)``: forward, let the server apply the request, then answer ``status``;
- ``reset_after(n)``: forward, send the headers and ``n`` body bytes, then reset (TCP RST);
- ``truncate_after(n)``: forward, send the headers and ``n`` body bytes, then close cleanly;
- ``short_body(n)``: forward, rewrite Content-Length to ``n`` and send ``n`` bytes: a body that
  is consistent with its headers and still too short;
- ``stall(seconds)``: hold the request for ``seconds`` (or until :meth:`release`) first; a
  client that hangs up meanwhile (a process stopped while it waited) never has its request
  forwarded, as when the network never delivered it.

Faults are queued per rule: ``proxy.fail("GET", r"/bucket/key", reset_after(100))``
breaks the next matching request, and a rule may repeat (``times``). ``proxy.chaos`` breaks a
random share of all requests instead, with a seed so that a failing run can be replayed.
Every request is logged with the bytes the client received, so that a test can count what a
command downloaded.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from socketserver import BaseRequestHandler, ThreadingTCPServer
from types import TracebackType
from typing import Literal, cast
from urllib.parse import urlsplit

import pytest

from support.azure import ACCOUNT, Azurite
from support.s3 import MotoS3

FaultKind = Literal["refuse", "fail_after", "reset", "truncate", "short", "stall"]

_IO_TIMEOUT = 30.0
_MAX_HEADER = 64 << 10
_POLL = 0.05  # how often a stalled request looks whether its client is still there


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 500
    after: int = 0
    seconds: float = 0.0


def refuse(status: int = 500) -> Fault:
    """Answer ``status`` with an S3-style error body; the server never sees the request."""
    return Fault("refuse", status=status)


def fail_after(status: int = 500) -> Fault:
    """The server applies the request; the client is told it failed."""
    return Fault("fail_after", status=status)


def reset_after(after: int) -> Fault:
    """Send ``after`` bytes of the response body, then reset the connection."""
    return Fault("reset", after=after)


def truncate_after(after: int) -> Fault:
    """Send ``after`` bytes of the response body (the headers promise more), then close."""
    return Fault("truncate", after=after)


def short_body(after: int) -> Fault:
    """Send ``after`` bytes of the body with a Content-Length that says exactly that."""
    return Fault("short", after=after)


def stall(seconds: float) -> Fault:
    """Hold the request ``seconds`` before forwarding it (or until ``release()``); dropped,
    never forwarded, when the client hangs up first."""
    return Fault("stall", seconds=seconds)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # without the query
    query: str
    fault: FaultKind | None
    status: int | None  # what the client was told, None when the connection broke first
    body_bytes: int  # response body bytes the client received
    authorization: str | None = None  # the request's Authorization header, to check tokens


@dataclass
class _Rule:
    method: str | None
    path: re.Pattern[str]
    query: re.Pattern[str] | None
    faults: list[Fault]
    times: int


@dataclass
class _Chaos:
    rate: float
    kinds: tuple[Fault, ...]
    rng: random.Random
    methods: frozenset[str] | None


class FaultProxy:
    """A proxy to ``upstream`` (``http://host:port``); a context manager around its thread."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self._rules: list[_Rule] = []
        self._chaos: _Chaos | None = None
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._logged = threading.Condition(self._lock)
        self._released = threading.Event()
        self.stalled = threading.Event()  # set when a stall fault starts holding a request
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- fault plans ---------------------------------------------------------------------

    def fail(self, method: str | None, path: str, *faults: Fault, query: str | None = None,
             times: int = 1) -> None:
        """Break the next ``times`` requests whose method and path (a regex searched in the
        path) match, each with ``faults`` in turn (one fault per request)."""
        with self._lock:
            self._rules.append(_Rule(method, re.compile(path),
                                     re.compile(query) if query is not None else None,
                                     list(faults) * times, times))

    def chaos(self, rate: float, *faults: Fault, seed: int,
              methods: tuple[str, ...] | None = None) -> None:
        """Break a ``rate`` share of requests (of ``methods`` only, if given) with a fault
        chosen at random from ``faults``."""
        with self._lock:
            self._chaos = _Chaos(rate, faults, random.Random(seed),  # noqa: S311 - replayable, not secret
                                 frozenset(methods) if methods else None)

    def calm(self) -> None:
        """Forget every rule and stop the chaos; release stalled requests."""
        with self._lock:
            self._rules.clear()
            self._chaos = None
        self.release()

    def release(self) -> None:
        """Let every stalled request go on."""
        self._released.set()

    def pending(self) -> int:
        """Faults queued by :meth:`fail` and not used yet."""
        with self._lock:
            return sum(len(rule.faults) for rule in self._rules)

    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def wait_logged(self, count: int, timeout: float = 30) -> bool:
        """Wait until ``count`` requests are in the log (a request is logged once it is
        answered or dropped); whether they are."""
        with self._logged:
            return self._logged.wait_for(lambda: len(self._log) >= count, timeout)

    def _fault_for(self, method: str, path: str, query: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if not rule.faults:
                    continue
                if rule.method is not None and rule.method != method:
                    continue
                if rule.path.search(path) is None:
                    continue
                if rule.query is not None and rule.query.search(query) is None:
                    continue
                return rule.faults.pop(0)
            chaos = self._chaos
            if (chaos is not None and (chaos.methods is None or method in chaos.methods)
                    and chaos.rng.random() < chaos.rate):
                return chaos.rng.choice(chaos.kinds)
        return None

    def _record(self, entry: LoggedRequest) -> None:
        with self._logged:
            self._log.append(entry)
            self._logged.notify_all()

    def _hold(self, client: socket.socket, seconds: float) -> bool:
        """Hold a stalled request; False when its client hung up meanwhile."""
        self.stalled.set()
        deadline = time.monotonic() + seconds
        while not self._released.wait(min(_POLL, max(0.0, deadline - time.monotonic()))):
            if _hung_up(client):
                return False
            if time.monotonic() >= deadline:
                break
        return not _hung_up(client)

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _Server(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients and faults break connections on purpose


class _Broken(Exception):
    """The connection to the client is gone (or was broken on purpose)."""


@dataclass
class _Message:
    head: bytes  # start line and headers, CRLF CRLF included
    start: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _read_head(stream: socket.socket, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEADER:
            raise _Broken("header too large")
        chunk = stream.recv(65536)
        if not chunk:
            if buffer:
                raise _Broken("closed inside a header")
            return None
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


def _read_exact(stream: socket.socket, buffer: bytearray, count: int) -> bytes:
    while len(buffer) < count:
        chunk = stream.recv(max(65536, count - len(buffer)))
        if not chunk:
            raise _Broken("closed inside a body")
        buffer += chunk
    data = bytes(buffer[:count])
    del buffer[:count]
    return data


def _read_line(stream: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        chunk = stream.recv(65536)
        if not chunk:
            raise _Broken("closed inside a chunk header")
        buffer += chunk
    end = buffer.index(b"\r\n") + 2
    line = bytes(buffer[:end])
    del buffer[:end]
    return line


def _read_chunked(stream: socket.socket, buffer: bytearray) -> bytes:
    """The raw chunked body, trailers included, exactly as sent."""
    raw = bytearray()
    while True:
        line = _read_line(stream, buffer)
        raw += line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:
                trailer = _read_line(stream, buffer)
                raw += trailer
                if trailer == b"\r\n":
                    return bytes(raw)
        raw += _read_exact(stream, buffer, size + 2)


def _dechunk(raw: bytes) -> bytes:
    """The content of a chunked body (as _read_chunked keeps it), trailers dropped."""
    content = bytearray()
    position = 0
    while True:
        end = raw.index(b"\r\n", position)
        size = int(raw[position:end].split(b";", 1)[0].strip(), 16)
        if size == 0:
            return bytes(content)
        content += raw[end + 2:end + 2 + size]
        position = end + 2 + size + 2


def _read_message(stream: socket.socket, buffer: bytearray, *, request: bool,
                  method: str = "GET") -> _Message | None:
    head = _read_head(stream, buffer)
    if head is None:
        return None
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    message = _Message(head, start, headers, b"")
    if request and (message.header("Expect") or "").lower() == "100-continue":
        # Said to the client here; the server gets the request without the Expect header.
        stream.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        message.head = _without_header(head, "Expect")
    status = 0 if request else int(start.split(" ", 2)[1])
    no_body = (not request and (method == "HEAD" or status in (204, 304) or status < 200))
    if no_body:
        return message
    if (message.header("Transfer-Encoding") or "").lower() == "chunked":
        message.body = _read_chunked(stream, buffer)
        return message
    length = message.header("Content-Length")
    if length is not None:
        message.body = _read_exact(stream, buffer, int(length))
    elif not request:
        # Until the server closes: the body has no stated length.
        while chunk := stream.recv(65536):
            buffer += chunk
        message.body = bytes(buffer)
        buffer.clear()
    return message


def _header_lines(head: bytes, name: str) -> list[str]:
    lines = head.decode("latin-1").split("\r\n")
    return [lines[0], *(line for line in lines[1:]
                        if line and line.split(":", 1)[0].strip().lower() != name.lower())]


def _without_header(head: bytes, name: str) -> bytes:
    return ("\r\n".join(_header_lines(head, name)) + "\r\n\r\n").encode("latin-1")


def _with_header(head: bytes, name: str, value: str) -> bytes:
    lines = [*_header_lines(head, name), f"{name}: {value}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error_response(status: int) -> bytes:
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
            b"<Message>injected by the test proxy</Message></Error>")
    return (f"HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _hung_up(connection: socket.socket) -> bool:
    """Whether the peer closed the connection (a peek that reads end-of-stream)."""
    try:
        connection.setblocking(False)
        try:
            data = connection.recv(1, socket.MSG_PEEK)
        finally:
            connection.settimeout(_IO_TIMEOUT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return not data


def _reset(connection: socket.socket) -> None:
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        connection.close()


class _Handler(BaseRequestHandler):
    @property
    def proxy(self) -> FaultProxy:
        return cast(_Server, self.server).proxy

    def handle(self) -> None:
        client = cast(socket.socket, self.request)
        client.settimeout(_IO_TIMEOUT)
        buffer = bytearray()
        with contextlib.suppress(_Broken, OSError, ValueError):
            while self._one(client, buffer):
                pass

    def _one(self, client: socket.socket, buffer: bytearray) -> bool:
        """Serve one request; whether the client connection stays open."""
        request = _read_message(client, buffer, request=True)
        if request is None:
            return False
        method, target = request.start.split(" ", 2)[:2]
        parts = urlsplit(target)
        fault = self.proxy._fault_for(method, parts.path, parts.query)
        log = self._logger(method, parts.path, parts.query, fault,
                           request.header("Authorization"))
        if fault is not None and fault.kind == "stall" and not self.proxy._hold(
                client, fault.seconds):
            log(None, 0)
            return False
        # Each request is logged before its answer goes out, so that a client that has its
        # answer finds the request in the log.
        if fault is not None and fault.kind == "refuse":
            log(fault.status, 0)
            client.sendall(_error_response(fault.status))
            return True
        response = self._forward(request, method)
        if fault is None or fault.kind == "stall":
            log(int(response.start.split(" ", 2)[1]), len(response.body))
            client.sendall(response.head + response.body)
            return (request.header("Connection") or "").lower() != "close"
        if fault.kind == "fail_after":
            log(fault.status, 0)
            client.sendall(_error_response(fault.status))
            return True
        status = int(response.start.split(" ", 2)[1])
        sent = response.body[:fault.after]
        if fault.kind == "short":
            head = response.head
            if (response.header("Transfer-Encoding") or "").lower() == "chunked":
                # Consistent framing: the first bytes of the content, under a Content-Length.
                sent = _dechunk(response.body)[:fault.after]
                head = _without_header(head, "Transfer-Encoding")
            log(status, len(sent))
            client.sendall(_with_header(head, "Content-Length", str(len(sent))) + sent)
            return True
        log(status, len(sent))
        client.sendall(response.head + sent)
        if fault.kind == "reset":
            _reset(client)
        else:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        return False

    def _logger(self, method: str, path: str, query: str, fault: Fault | None,
                authorization: str | None) -> _Log:
        return _Log(self.proxy, method, path, query, fault, authorization)

    def _forward(self, request: _Message, method: str) -> _Message:
        upstream = socket.create_connection(self.proxy.upstream, timeout=_IO_TIMEOUT)
        with upstream:
            head = _with_header(request.head, "Connection", "close")
            upstream.sendall(head + request.body)
            response = _read_message(upstream, bytearray(), request=False, method=method)
        if response is None:
            raise _Broken("the server closed without answering")
        # The client keeps its connection to us: tell it nothing about the upstream's.
        keep = [(k, v) for k, v in response.headers if k.lower() != "connection"]
        lines = [response.start, *(f"{k}: {v}" for k, v in keep)]
        response.head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        response.headers = keep
        return response


@dataclass
class _Log:
    proxy: FaultProxy
    method: str
    path: str
    query: str
    fault: Fault | None
    authorization: str | None

    def __call__(self, status: int | None, body_bytes: int) -> None:
        self.proxy._record(LoggedRequest(self.method, self.path, self.query,
                                         self.fault.kind if self.fault else None, status,
                                         body_bytes, self.authorization))


@contextlib.contextmanager
def proxy_to(upstream: str) -> Iterator[FaultProxy]:
    """A running proxy to ``upstream`` for the duration of the block."""
    with FaultProxy(upstream) as proxy:
        yield proxy


@pytest.fixture
def s3_proxy(s3_env: MotoS3) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's moto server; ``AWS_ENDPOINT_URL`` points at it
    for the duration of the test."""
    with FaultProxy(s3_env.endpoint_url) as proxy, pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy


@pytest.fixture
def azure_proxy(azure_env: Azurite) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's Azurite; the account's endpoint through it is
    ``proxy.url + "/" + ACCOUNT`` (see :func:`through`)."""
    origin = azure_env.endpoint_url.rsplit("/", 1)[0]
    with FaultProxy(origin) as proxy:
        yield proxy


def through(proxy: FaultProxy) -> str:
    """The Azurite account's endpoint as seen through ``proxy``."""
    return f"{proxy.url}/{ACCOUNT}"

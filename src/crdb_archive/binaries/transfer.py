"""Getting bytes from a mirror: HTTP with retries and resume, or a copy from a local directory.

Every byte is hashed as it arrives (SHA-256 and BLAKE3), so nothing is read twice. The bytes are
written exactly as served: the request asks for ``Accept-Encoding: identity`` and the body is
never decoded, because a release archive must stay byte-identical to the published one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from crdb_archive import __version__
from crdb_archive.binaries.mirror import Mirror
from crdb_archive.binaries.staging import describe_os_error
from crdb_archive.errors import NetworkError, NotFoundOnMirror, StorageError
from crdb_archive.hashing import CHUNK_SIZE, Digests, DigestWriter
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress
from crdb_archive.text import exact

# Small enough that a transfer broken mid-way keeps nearly everything already received.
NETWORK_CHUNK_SIZE = 64 << 10

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MISSING_STATUSES = frozenset({403, 404, 410})  # object stores answer 403 for a missing key
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
# urllib3 files a refused connection under its timeouts; it is not one.
_REFUSALS = (requests.ConnectionError, urllib3.exceptions.NewConnectionError)


@dataclass(frozen=True)
class NetworkPolicy:
    """Timeouts and retry limits for talking to a mirror (seconds and counts)."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5  # per request: connection errors, 429 and 5xx, handled by urllib3
    resumes: int = 5  # per file: transfers broken mid-body, resumed with Range
    backoff: float = 0.5  # first wait; doubles on every further attempt
    max_backoff: float = 60.0  # also caps how long a server's Retry-After can make us wait

    @property
    def timeouts(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def delay(self, attempt: int) -> float:
        """How long to wait before retry number ``attempt`` (1-based)."""
        return float(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


DEFAULT_POLICY = NetworkPolicy()


class Sink(Protocol):
    """Where downloaded bytes go."""

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None: ...


def _retry_capped_at(cap: float) -> type[Retry]:
    # A class, not an attribute: urllib3 copies a Retry through its constructor's parameters.
    class _CappedRetry(Retry):
        def parse_retry_after(self, retry_after: str) -> float:
            return min(super().parse_retry_after(retry_after), cap)

    return _CappedRetry


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request the policy's timeouts unless the caller chose others."""

    def __init__(self, policy: NetworkPolicy, retry: Retry) -> None:
        super().__init__(max_retries=retry)
        self._timeouts = policy.timeouts

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=self._timeouts if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def http_session(policy: NetworkPolicy = DEFAULT_POLICY) -> requests.Session:
    """A session that retries connection errors, 429 and 5xx with backoff and always times out.

    Retry-After is respected up to the policy's longest backoff. Close the session when done.
    """
    retry = _retry_capped_at(policy.max_backoff)(
        total=policy.retries,
        connect=policy.retries,
        read=policy.retries,
        status=policy.retries,
        redirect=10,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=_RETRY_STATUSES,
        backoff_factor=policy.backoff,
        backoff_max=policy.max_backoff,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = _TimeoutAdapter(policy, retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"crdb-archive/{__version__}"
    session.headers["Accept-Encoding"] = "identity"
    return session


def download(
    session: requests.Session,
    mirror: Mirror,
    name: str,
    sink: Sink,
    *,
    policy: NetworkPolicy = DEFAULT_POLICY,
    progress: ProgressCallback = no_progress,
    task: str = "",
) -> Digests:
    """Copy the file ``name`` from ``mirror`` into ``sink``, hashing it on the way.

    Raises NotFoundOnMirror when the mirror does not have it, NetworkError when the transfer
    fails after its retries and resumes, StorageError when a local mirror cannot be read.
    """
    if mirror.directory is not None:
        return _copy_local(mirror.directory / name, sink, progress=progress, task=task or name)
    transfer = _HttpTransfer(session, mirror, name, sink, policy, progress, task or name)
    return transfer.run()


def copy_stream(
    source: IO[bytes],
    sink: Sink,
    *,
    total: int | None,
    progress: ProgressCallback = no_progress,
    task: str = "",
) -> Digests:
    """Copy a local stream into ``sink`` with both digests; raises OSError from reading."""
    writer = DigestWriter(size_hint=total)
    while chunk := source.read(CHUNK_SIZE):
        sink.write(chunk)
        writer.update(chunk)
        progress(ProgressEvent(task, writer.size, total))
    progress(ProgressEvent(task, writer.size, total, finished=True))
    return writer.digests()


def _copy_local(path: Path, sink: Sink, *, progress: ProgressCallback, task: str) -> Digests:
    try:
        with path.open("rb") as source:
            total = path.stat().st_size
            return copy_stream(source, sink, total=total, progress=progress, task=task)
    except FileNotFoundError:
        raise NotFoundOnMirror(f"{path} not found on the mirror") from None
    except OSError as error:
        raise StorageError(f"cannot read {path}: {describe_os_error(error)}") from None


class _BrokenTransfer(Exception):
    """The body stopped before its end; what arrived so far is kept."""


class _HttpTransfer:
    """One file over HTTP: resumed with Range after a break, restarted when that is refused."""

    def __init__(
        self,
        session: requests.Session,
        mirror: Mirror,
        name: str,
        sink: Sink,
        policy: NetworkPolicy,
        progress: ProgressCallback,
        task: str,
    ) -> None:
        self._session = session
        self._url = mirror.location(name)
        self._shown = mirror.display_url(name)
        self._sink = sink
        self._policy = policy
        self._progress = progress
        self._task = task
        self._writer = DigestWriter()
        # Sent as If-Range so that a file replaced between two attempts is sent whole again.
        self._validator: str | None = None

    def run(self) -> Digests:
        breaks = 0
        while True:
            try:
                self._attempt()
            except _BrokenTransfer as broken:
                breaks += 1
                if breaks > self._policy.resumes:
                    raise NetworkError(
                        f"download of {self._shown} broke off {breaks} times, last: {broken}"
                    ) from None
                time.sleep(self._policy.delay(breaks))
                continue
            size = self._writer.size
            self._progress(ProgressEvent(self._task, size, size, finished=True))
            return self._writer.digests()

    def _attempt(self) -> None:
        have = self._writer.size
        headers: dict[str, str] = {}
        if have:
            headers["Range"] = f"bytes={have}-"
            if self._validator is not None:
                headers["If-Range"] = self._validator
        try:
            response = self._session.get(self._url, headers=headers, stream=True)
        except requests.RequestException as error:
            raise NetworkError(
                f"cannot download {self._shown}: {describe_request_error(error)}"
            ) from None
        with response:
            if self._url.startswith("https://") and not response.url.startswith("https://"):
                # What came over HTTPS may be called official; what a redirect sent over plain
                # HTTP could come from anyone on the way.
                raise NetworkError(f"{self._shown} redirected to plain HTTP; refused")
            start, end = self._body_range(response, have)
            if start != have:
                self._restart()
            self._receive(response, end)

    def _body_range(self, response: requests.Response, have: int) -> tuple[int, int | None]:
        """Where the body starts in the file, and where it must end (None if not said)."""
        status = response.status_code
        length = _content_length(response)
        if status == 200:
            etag = response.headers.get("ETag", "")
            self._validator = (
                etag if etag and not etag.startswith("W/")
                else response.headers.get("Last-Modified")
            )
            return 0, length
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
            if match is None or int(match[1]) != have:
                # Not the part we asked for: start over from the first byte.
                self._restart()
                raise _BrokenTransfer("the server answered with another byte range")
            start, last = int(match[1]), int(match[2])
            if length is not None and length != last - start + 1:
                raise _BrokenTransfer("Content-Length disagrees with Content-Range")
            return start, last + 1
        if status == 416 and have:
            self._restart()
            raise _BrokenTransfer("the server refused to resume (HTTP 416)")
        raise http_status_error(response, self._shown)

    def _restart(self) -> None:
        self._sink.restart()
        self._writer = DigestWriter()

    def _receive(self, response: requests.Response, end: int | None) -> None:
        chunks = response.raw.stream(NETWORK_CHUNK_SIZE, decode_content=False)
        while True:
            try:
                chunk = next(chunks, None)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
                raise _BrokenTransfer(describe_request_error(error)) from None
            if chunk is None:
                break
            self._sink.write(chunk)
            self._writer.update(chunk)
            self._progress(ProgressEvent(self._task, self._writer.size, end))
        if end is not None and self._writer.size != end:
            raise _BrokenTransfer(
                f"received {self._writer.size:,} of {exact(end)} (Content-Length not reached)"
            )


def http_status_error(response: requests.Response, shown: str) -> NetworkError:
    """The error for a response that carries no usable body."""
    status = response.status_code
    if status in _MISSING_STATUSES:
        return NotFoundOnMirror(f"{shown} not found on the mirror (HTTP {status})")
    retries = response.raw.retries if response.raw is not None else None
    attempts = 1 + (len(retries.history) if retries is not None else 0)
    after = f" after {attempts} attempts" if attempts > 1 else ""
    reason = f" {response.reason}" if response.reason else ""
    return NetworkError(f"HTTP {status}{reason} from {shown}{after}")


def describe_request_error(error: BaseException) -> str:
    """One line saying why a request failed: the innermost cause, without urllib3's reprs."""
    reason = error
    for _ in range(10):  # requests wraps urllib3, which wraps the socket error
        if isinstance(reason, _TIMEOUTS) and not isinstance(reason, _REFUSALS):
            return "timed out"
        if isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
            inner: BaseException | None = reason.reason
        else:
            inner = next((a for a in reason.args if isinstance(a, BaseException)), None)
            inner = inner or reason.__cause__
        if inner is None:
            break
        reason = inner
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason.args[0]) if len(reason.args) == 1 else str(reason)
    return " ".join(text.split()) or type(reason).__name__


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)

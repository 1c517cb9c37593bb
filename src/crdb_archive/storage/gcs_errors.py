"""Cloud Storage failures turned into ours, and the bounded retries of every request.

Messages are built from our own redacted names and the HTTP status; the store's message text
is added only after every secret the storage knows has been scrubbed from it. A request is
tried up to ``$CRDB_ARCHIVE_GCS_MAX_ATTEMPTS`` times (default 10) when the store throttles or
fails (408, 429, 5xx) or a connection breaks; an endpoint that cannot be connected to at all
gets at most 3 quick attempts. The error line says how many attempts were made.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from urllib3 import exceptions as urllib3_exceptions

from crdb_archive.errors import CrdbArchiveError, ObjectNotFound, StorageError
from crdb_archive.storage.backoff import backoff as backoff  # noqa: PLC0414 - re-exported to the upload modules
from crdb_archive.storage.uri import REDACTED, redact

T = TypeVar("T")

# Statuses after which the same request may succeed.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CONNECTION_ATTEMPTS = 3
_MESSAGE_LIMIT = 300
# The SDK puts the request's method and URL before the store's message; a URL may carry an
# upload session id, which is as good as a write permission while the session lasts.
_REQUEST_LINE = re.compile(r"^(?:GET|PUT|POST|PATCH|DELETE|HEAD) \S+: ")

# What a request or a read of an answer can raise from below: the SDK's HTTP errors, the
# transport's, google-auth's while it obtains a token, and the socket's own.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    api_exceptions.GoogleAPICallError, auth_exceptions.GoogleAuthError,
    requests.RequestException, urllib3_exceptions.HTTPError, OSError,
)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every known secret value replaced, folded onto one line, without control
    characters (a store's text must not steer a terminal), and capped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def attempts_text(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def status_of(error: BaseException) -> int | None:
    """The HTTP status an SDK error carries, if any."""
    if isinstance(error, api_exceptions.GoogleAPICallError) and isinstance(error.code, int):
        return error.code
    return None


def cannot_connect(error: BaseException) -> bool:
    """Whether no connection could be made at all (refused, unresolvable, connect timeout)."""
    for seen in _chain(error):
        if isinstance(seen, requests.ConnectTimeout | urllib3_exceptions.NewConnectionError
                      | urllib3_exceptions.ConnectTimeoutError):
            return True
    return False


def is_transient(error: BaseException) -> bool:
    """Whether the same request may succeed when tried again."""
    status = status_of(error)
    if status is not None:
        return status in TRANSIENT_STATUSES
    if isinstance(error, auth_exceptions.RefreshError):
        return False  # the token endpoint refused the credentials
    # An answer cut short with a Content-Length that agrees with it arrives "whole" and
    # fails to parse: the same fault as a broken connection.
    return isinstance(error, requests.ConnectionError | requests.Timeout
                      | requests.exceptions.ChunkedEncodingError
                      | requests.exceptions.InvalidJSONError
                      | urllib3_exceptions.HTTPError | auth_exceptions.TransportError
                      | ConnectionError | TimeoutError)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (requests and urllib3 keep the reason in args and
    ``reason``), and its causes; at most a few levels."""
    pending: list[BaseException] = [error]
    seen: list[BaseException] = []
    while pending and len(seen) < 12:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        yield current
        reason = getattr(current, "reason", None)
        inner = [a for a in current.args if isinstance(a, BaseException)]
        for candidate in (reason, *inner, current.__cause__, current.__context__):
            if isinstance(candidate, BaseException):
                pending.append(candidate)


def _reason(error: BaseException) -> str:
    """The innermost operating-system reason of a transport failure, in its own words."""
    for seen in _chain(error):
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
    for seen in _chain(error):
        if isinstance(seen, urllib3_exceptions.NameResolutionError):
            return "the host name does not resolve"
        if isinstance(seen, requests.Timeout | urllib3_exceptions.TimeoutError | TimeoutError):
            return "timed out"
    return type(error).__name__


def _origin(url: str) -> str:
    parts = urlsplit(redact(url))
    if not parts.scheme or not parts.hostname:
        return "Cloud Storage"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def translate(error: BaseException, action: str, where: str, secrets: Sequence[str], *,
              attempts: int = 1, endpoint: str = "") -> CrdbArchiveError:
    """Our error for a failure while ``action``-ing ``where`` after ``attempts`` attempts."""
    if isinstance(error, CrdbArchiveError):
        return error
    head = f"cannot {action} {where}"
    after = f" after {attempts_text(attempts)}"
    status = status_of(error)
    if status is not None:
        return _status_error(error, status, head, where, secrets, after)
    if isinstance(error, auth_exceptions.RefreshError):
        code = _oauth_error(error)
        return StorageError(f"{head}: no access token could be obtained for the credentials"
                            f"{f' ({code})' if code else ''}; check CREDENTIALS or the "
                            "application default credentials")
    if isinstance(error, auth_exceptions.DefaultCredentialsError):
        return StorageError(f"{head}: no usable application default credentials")
    return StorageError(f"{head}: {_transport_problem(error, endpoint, after)}")


def _status_error(error: BaseException, status: int, head: str, where: str,
                  secrets: Sequence[str], after: str) -> CrdbArchiveError:
    """Our error for an HTTP status Cloud Storage answered with."""
    if status == 404:
        return ObjectNotFound(f"{where} does not exist")
    if status == 401:
        return StorageError(f"{head}: Cloud Storage rejected the credentials (401); check "
                            "CREDENTIALS, BEARER_TOKEN or the application default "
                            "credentials")
    if status in TRANSIENT_STATUSES:
        return StorageError(f"{head}: Cloud Storage is unavailable or throttling "
                            f"({status}){after}")
    message = scrub(_REQUEST_LINE.sub("", str(getattr(error, "message", "") or "")), secrets)
    detail = f": {message}" if message else ""
    if status == 403:
        return StorageError(f"{head}: access denied (403){detail}")
    return StorageError(f"{head}: {status}{detail}")


def _transport_problem(error: BaseException, endpoint: str, after: str) -> str:
    """What went wrong on the way to the store, or in reading its answer."""
    if cannot_connect(error) or isinstance(error, auth_exceptions.TransportError):
        return (f"cannot reach {_origin(endpoint)} ({_reason(error)}){after}; check the "
                "endpoint and the network (CRDB_ARCHIVE_GCS_MAX_ATTEMPTS sets how often a "
                "request is tried)")
    if isinstance(error, requests.exceptions.InvalidJSONError):
        return f"the store's answers could not be read (cut short or garbled){after}"
    if is_transient(error):
        return f"the connection broke ({_reason(error)}){after}"
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return type(error).__name__


def _oauth_error(error: auth_exceptions.RefreshError) -> str | None:
    # google-auth passes the token endpoint's answer along; only its error code is shown.
    for arg in error.args:
        if isinstance(arg, dict) and isinstance(arg.get("error"), str):
            code: str = arg["error"]
            return code if code.replace("_", "").isalnum() and len(code) < 64 else None
    return None


def with_retries(call: Callable[[], T], action: str, where: str, secrets: Sequence[str], *,
                 attempts: int, endpoint: str = "") -> T:
    """``call()``, tried again after transient failures, at most ``attempts`` times in all
    (3 when no connection can be made). Raises our error for the last failure; our own errors
    (Interrupted among them) pass through at once."""
    attempt = 1
    while True:
        try:
            return call()
        except CrdbArchiveError:
            raise
        except TRANSPORT_ERRORS as error:
            limit = min(CONNECTION_ATTEMPTS, attempts) if cannot_connect(error) else attempts
            if not is_transient(error) or attempt >= limit:
                raise translate(error, action, where, secrets, attempts=attempt,
                                endpoint=endpoint) from None
        attempt += 1
        time.sleep(backoff(attempt))


@contextmanager
def gcs_errors(action: str, where: str, secrets: Sequence[str], *,
               endpoint: str = "") -> Iterator[None]:
    """Translate any transport or SDK failure in the block into our errors (one attempt)."""
    try:
        yield
    except CrdbArchiveError:
        raise
    except TRANSPORT_ERRORS as error:
        raise translate(error, action, where, secrets, endpoint=endpoint) from None


def api_error(response: requests.Response) -> api_exceptions.GoogleAPICallError:
    """The SDK's error for an HTTP answer that is not a success (its status and the store's
    message), to raise."""
    error: api_exceptions.GoogleAPICallError = api_exceptions.from_http_response(  # type: ignore[no-untyped-call]
        response)
    return error

"""botocore's exceptions turned into ours: one line, naming the bucket and key, no secret.

Messages are built from our own redacted names and S3's error code; S3's message text is added
only after every secret the storage knows has been scrubbed from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ResponseStreamingError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from crdb_archive.errors import (
    BadInput,
    CrdbArchiveError,
    NeedsRestoreFromColdStorage,
    ObjectNotFound,
    StorageError,
)
from crdb_archive.storage.uri import redact, scrub

NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIALS = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AuthorizationHeaderMalformed", "InvalidClientTokenId",
})
_DENIED = frozenset({"AccessDenied", "403", "AllAccessDisabled", "Forbidden"})
_UNAVAILABLE = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "500", "502", "503", "504",
    "RequestTimeout", "Throttling", "ThrottlingException", "RequestTimeTooSkewed",
})


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) or "Unknown"


def translate_error(
    error: Exception, action: str, where: str, secrets: Sequence[str]
) -> CrdbArchiveError:
    """Our error for a botocore/boto3/urllib3 exception raised while ``action``-ing ``where``."""
    head = f"cannot {action} {where}"
    if isinstance(error, CrdbArchiveError):
        return error
    if isinstance(error, ClientError):
        return _client_error(error, head, where, secrets)
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return StorageError(
            f"{head}: no AWS credentials found; put AUTH=specified&AWS_ACCESS_KEY_ID=..."
            "&AWS_SECRET_ACCESS_KEY=... in the URI, or set up the default chain (environment, "
            "AWS_PROFILE, instance role)")
    if isinstance(error, CredentialRetrievalError):
        return StorageError(f"{head}: the AWS credentials could not be obtained "
                            f"({type(error).__name__})")
    if isinstance(error, ConnectionError | HTTPClientError):
        endpoint = _origin(str(error.kwargs.get("endpoint_url") or "S3"))
        attempts = error.kwargs.get("attempts")
        after = f" after {_attempts(attempts)}" if isinstance(attempts, int) else ""
        return StorageError(f"{head}: cannot reach {endpoint} ({_reason(error)}){after}; "
                            "check the endpoint and the network (AWS_MAX_ATTEMPTS sets how "
                            "often a request is tried)")
    if isinstance(error, ResponseStreamingError | Urllib3Error):
        return StorageError(f"{head}: the transfer broke ({type(error).__name__})")
    if isinstance(error, ParamValidationError):
        return BadInput(f"{head}: {scrub(str(error), secrets)}")
    if isinstance(error, BotoCoreError):
        return StorageError(f"{head}: {scrub(str(error), secrets)}")
    if isinstance(error, OSError):
        return StorageError(f"{head}: {error.strerror or type(error).__name__}")
    return StorageError(f"{head}: {type(error).__name__}")


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _origin(url: str) -> str:
    """scheme://host[:port] of a request URL: the endpoint, without bucket, key or query."""
    parts = urlsplit(redact(url))
    if not parts.scheme or not parts.hostname:
        return redact(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _reason(error: BaseException) -> str:
    """The innermost operating-system reason of a connection failure, in its own words."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        inner = getattr(seen, "kwargs", {}).get("error") or getattr(seen, "kwargs", {}).get(
            "reason")
        seen = inner if isinstance(inner, BaseException) else (seen.__cause__ or seen.__context__)
    text = str(error)
    if "timed out" in text.lower():
        return "timed out"
    return type(error).__name__


def _client_error(
    error: ClientError, head: str, where: str, secrets: Sequence[str]
) -> CrdbArchiveError:
    code = error_code(error)
    details = error.response.get("Error", {})
    if code in NOT_FOUND:
        return ObjectNotFound(f"{where} does not exist")
    if code == "NoSuchBucket":
        return StorageError(f"{head}: the bucket does not exist (NoSuchBucket)")
    if code == "InvalidObjectState":
        storage_class = str(details.get("StorageClass") or "an archive storage class")
        return NeedsRestoreFromColdStorage(
            f"{where} is in {storage_class} and must be restored before it can be read "
            "(crdb-archive restore-request, then wait for the restore)")
    if code in _CREDENTIALS:
        return StorageError(f"{head}: S3 rejected the credentials ({code}); check "
                            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN")
    if code in _DENIED:
        return StorageError(f"{head}: access denied ({code}); the credentials lack a "
                            "permission, or Object Lock forbids it")
    if code in _UNAVAILABLE:
        attempts = error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        return StorageError(f"{head}: S3 is unavailable or throttling ({code}) after "
                            f"{_attempts(attempts + 1)}")
    if code in ("InvalidStorageClass", "InvalidBucketName"):
        return BadInput(f"{head}: {code}")
    message = scrub(str(details.get("Message") or ""), secrets)
    return StorageError(f"{head}: {code}" + (f": {message}" if message else ""))


@contextmanager
def s3_errors(action: str, where: str, secrets: Sequence[str]) -> Iterator[None]:
    """Translate any botocore/boto3 failure in the block into our errors."""
    try:
        yield
    except (BotoCoreError, ClientError, Urllib3Error, OSError) as error:
        raise translate_error(error, action, where, secrets) from None

"""azure-core's exceptions turned into ours: one line, naming the container and blob, no secret.

Messages are built from our own redacted names and the service's error code; text from the
SDK or from azure-identity is added only after every secret the storage knows has been
scrubbed from it, and only its first line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from crdb_archive.errors import (
    BadInput,
    CrdbArchiveError,
    NeedsRestoreFromColdStorage,
    ObjectNotFound,
    StorageError,
)
from crdb_archive.storage.azure_client import last_attempts
from crdb_archive.storage.uri import scrub

_CREDENTIALS = frozenset({
    "AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation",
})
_DENIED = frozenset({
    "AuthorizationFailure", "AuthorizationPermissionMismatch", "AuthorizationSourceIPMismatch",
    "AuthorizationProtocolMismatch", "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch", "KeyBasedAuthenticationNotPermitted",
    "InsufficientAccountPermissions",
})
_IMMUTABLE = frozenset({
    "BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold", "ImmutabilityPolicyInvalid",
})
_UNAVAILABLE = frozenset({"ServerBusy", "InternalError", "OperationTimedOut"})
_AADSTS = re.compile(r"\bAADSTS\d{4,9}\b")


def error_code(error: HttpResponseError) -> str:
    """The service's error code (``BlobNotFound``), else the HTTP status, else "Unknown"."""
    code = getattr(error, "error_code", None)
    text = str(getattr(code, "value", code) or "")
    if text:
        return text
    return str(error.status_code) if error.status_code else "Unknown"


def translate_error(
    error: Exception, action: str, where: str, secrets: Sequence[str],
    endpoint: str = "the Azure endpoint",
) -> CrdbArchiveError:
    """Our error for an azure-core/azure-identity exception raised while ``action``-ing
    ``where`` (at ``endpoint``, named in connection failures)."""
    head = f"cannot {action} {where}"
    if isinstance(error, CrdbArchiveError):
        return error
    if isinstance(error, ClientAuthenticationError) and getattr(error, "error_code", None) is None:
        # From azure-identity, before any request reached the storage service.
        text = str(error)
        if "DefaultAzureCredential" in text:
            return StorageError(f"{head}: AUTH=implicit found no credential in azure-identity's "
                                "default chain (AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or "
                                "AZURE_FEDERATED_TOKEN_FILE in the environment, a managed "
                                "identity, the Azure CLI's login)")
        found = _AADSTS.search(text)
        why = f" ({found.group(0)})" if found else f" ({type(error).__name__})"
        return StorageError(f"{head}: Microsoft Entra ID refused the credentials{why}; check "
                            "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET")
    if isinstance(error, DecodeError):
        return StorageError(f"{head}: the transfer broke ({type(error).__name__})")
    if isinstance(error, HttpResponseError):
        return _response_error(error, head, where, secrets)
    if isinstance(error, ServiceRequestError):
        attempts = last_attempts()
        after = f" after {_attempts(attempts)}" if attempts else ""
        return StorageError(f"{head}: cannot reach {endpoint} ({_reason(error)}){after}; "
                            "check the endpoint and the network (AZURE_MAX_ATTEMPTS sets how "
                            "often a request is tried)")
    if isinstance(error, ServiceResponseError):
        attempts = last_attempts()
        after = f" after {_attempts(attempts)}" if attempts else ""
        return StorageError(f"{head}: the connection broke ({_reason(error)}){after}")
    if isinstance(error, AzureError):
        message = scrub(str(error).splitlines()[0] if str(error) else "", secrets)
        return StorageError(f"{head}: {type(error).__name__}" + (f": {message}" if message
                                                                   else ""))
    if isinstance(error, OSError):
        return StorageError(f"{head}: {error.strerror or type(error).__name__}")
    return StorageError(f"{head}: {type(error).__name__}")


def _response_error(error: HttpResponseError, head: str, where: str,
                     secrets: Sequence[str]) -> CrdbArchiveError:
    code = error_code(error)
    if code == "BlobNotFound" or (code == "404" and error.status_code == 404):
        return ObjectNotFound(f"{where} does not exist")
    if code == "ContainerNotFound":
        return StorageError(f"{head}: the container does not exist (ContainerNotFound)")
    if code == "BlobArchived":
        return NeedsRestoreFromColdStorage(
            f"{where} is in the Archive tier and must be rehydrated before it can be read "
            "(crdb-archive restore-request, then wait for the rehydration)")
    if code in _CREDENTIALS:
        return StorageError(f"{head}: Azure rejected the credentials ({code}); check "
                            "AZURE_ACCOUNT_NAME and AZURE_ACCOUNT_KEY (or the identity's "
                            "role on the account)")
    if code in _DENIED:
        return StorageError(f"{head}: access denied ({code}); the credentials are wrong or "
                            "lack a permission")
    if code in _IMMUTABLE:
        return StorageError(f"{head}: the blob is immutable ({code})")
    if code in _UNAVAILABLE or (error.status_code or 0) >= 500:
        return StorageError(f"{head}: Azure is unavailable or busy ({code}) after "
                            f"{_attempts(max(1, last_attempts()))}")
    if code in ("InvalidHeaderValue", "InvalidQueryParameterValue", "InvalidBlobTier",
                "InvalidResourceName", "OutOfRangeInput"):
        return BadInput(f"{head}: Azure refused the request ({code})")
    if error.status_code is None:
        # Raised by the SDK itself around a body that broke while it was read.
        return StorageError(f"{head}: the transfer broke ({type(error).__name__})")
    reason = scrub(error.reason or "", secrets)
    return StorageError(f"{head}: {code}" + (f" ({reason})" if reason and reason != code else ""))


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def origin(url: str) -> str:
    """scheme://host[:port] of an endpoint, without path or query: how messages name it."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "the Azure endpoint"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _reason(error: BaseException) -> str:
    """The innermost operating-system reason of a connection failure, in its own words."""
    seen: BaseException | None = error
    for _ in range(12):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        inner = getattr(seen, "inner_exception", None) or getattr(seen, "reason", None)
        seen = inner if isinstance(inner, BaseException) else (seen.__cause__ or seen.__context__)
    text = str(error).lower()
    if "timed out" in text or "timeout" in text:
        return "timed out"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "name or service not known"
    if "connection refused" in text:
        return "connection refused"
    return type(error).__name__


@contextmanager
def azure_errors(action: str, where: str, secrets: Sequence[str],
                 endpoint: str = "the Azure endpoint") -> Iterator[None]:
    """Translate any azure-core/azure-identity failure in the block into our errors."""
    try:
        yield
    except (AzureError, OSError) as error:
        raise translate_error(error, action, where, secrets, endpoint) from None


@dataclass(frozen=True)
class Translator:
    """What every message of one storage needs: its secrets and the endpoint's name."""

    secrets: Sequence[str]
    endpoint: str = "the Azure endpoint"

    def around(self, action: str, where: str) -> AbstractContextManager[None]:
        """:func:`azure_errors` for ``action`` on ``where``."""
        return azure_errors(action, where, self.secrets, self.endpoint)

    def translate(self, error: Exception, action: str, where: str) -> CrdbArchiveError:
        return translate_error(error, action, where, self.secrets, self.endpoint)

"""A configured azure-storage-blob client: credentials, bounded retries, timeouts, one pool.

Every request is tried at most ``AZURE_MAX_ATTEMPTS`` times (10 by default) with short,
jittered pauses; a request that cannot even connect (a refused port, a name that does not
resolve) at most three times, so that a wrong endpoint is reported in seconds. The number of
attempts the last request of a thread took is kept, so that messages can tell it.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ExponentialRetry

from crdb_archive import __version__
from crdb_archive.errors import BadInput
from crdb_archive.storage.azure_config import ENVIRONMENTS, AzureTarget, max_attempts

# Connection failures get a few quick attempts: a wrong endpoint will not come back.
CONNECTION_ATTEMPTS = 3
# Reads ask for ranges of this size: the largest the service answers with a transactional MD5.
READ_CHUNK = 4 << 20
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 10.0
_SETTINGS = "crdb_archive_retry"

# The SDK logs transport trouble as warnings; without a handler of the application's, Python
# would print them on stderr, next to the one line a failure is reported with.
logging.getLogger("azure").addHandler(logging.NullHandler())

_KNOWN_AUTHORITIES = frozenset(host for _, host in ENVIRONMENTS.values())


class _Attempts(threading.local):
    last = 0
    total = 0


_attempts = _Attempts()


def last_attempts() -> int:
    """How many attempts the last request sent from this thread took (0: none sent)."""
    return _attempts.last


def requests_sent() -> int:
    """How many HTTP requests this thread has sent so far (every attempt counts)."""
    return _attempts.total


class BoundedRetry(ExponentialRetry):
    """The storage SDK's retry policy with our attempt counts and full-jitter backoff."""

    def __init__(self, attempts: int) -> None:
        retries = attempts - 1
        super().__init__(retry_total=retries, retry_connect=min(CONNECTION_ATTEMPTS, attempts) - 1,
                         retry_read=retries, retry_status=retries)

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        count = int(settings.get("count", 0))
        return random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * (2 ** count)))  # noqa: S311 - jitter, not a secret

    def increment(self, settings: dict[str, Any], request: Any, response: Any = None,
                  error: AzureError | None = None) -> bool:
        # A credential refused by the token issuer stays refused: azure-identity has retried
        # its own requests already.
        if isinstance(error, ClientAuthenticationError):
            return False
        return bool(super().increment(settings, request, response, error))

    def configure_retries(self, request: PipelineRequest[Any]) -> dict[str, Any]:
        settings = super().configure_retries(request)
        request.context[_SETTINGS] = settings
        return settings

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        _attempts.last = 0
        try:
            response: PipelineResponse[Any, Any] = super().send(request)  # type: ignore[no-untyped-call]
        finally:
            _attempts.last = _count(request)
            _attempts.total += _attempts.last
        return response


def _count(request: PipelineRequest[Any]) -> int:
    # The settings the SDK's policy keeps for one request: "count" is the retries it made.
    settings = request.context.get(_SETTINGS)
    return int(settings["count"]) + 1 if isinstance(settings, dict) else 1


def make_service(target: AzureTarget, *, pool_size: int) -> BlobServiceClient:
    """A client of the account in ``target``; one client is safe to share between threads.

    Raises BadInput when the credential cannot be set up.
    """
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4,
                                            pool_maxsize=max(pool_size, 10))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    transport = RequestsTransport(session=session, session_owner=True, connection_timeout=10,
                                  read_timeout=60)
    try:
        return BlobServiceClient(
            target.account_url, credential=_credential(target),
            retry_policy=BoundedRetry(max_attempts()), transport=transport,
            user_agent=f"crdb-archive/{__version__}",
            max_single_get_size=READ_CHUNK, max_chunk_get_size=READ_CHUNK,
        )
    except ValueError as error:
        transport.close()
        raise BadInput(f"{target.scheme}://{target.container}: cannot configure the Azure "
                       f"client ({type(error).__name__})") from None


def _credential(target: AzureTarget) -> AzureNamedKeyCredential | TokenCredential:
    if target.auth == "key" and target.account_key is not None:
        return AzureNamedKeyCredential(target.account, target.account_key)
    # azure-identity is imported only when a token is needed: it is slow to import.
    from azure.identity import ClientSecretCredential, DefaultAzureCredential  # noqa: PLC0415

    authority = target.authority_host
    options: dict[str, Any] = {}
    if authority is not None:
        options["authority"] = authority
    # Instance discovery asks Microsoft whether an issuer is one of its clouds; a private one
    # (Azure Stack Hub, a test issuer in $AZURE_AUTHORITY_HOST) is not, and would be refused.
    chosen = authority or os.environ.get("AZURE_AUTHORITY_HOST")
    if chosen and (urlsplit(chosen if "://" in chosen else f"https://{chosen}").hostname
                   not in _KNOWN_AUTHORITIES):
        options["disable_instance_discovery"] = True
    if target.auth == "client-secret":
        if not (target.tenant_id and target.client_id and target.client_secret):
            raise BadInput(f"{target.scheme}://{target.container}: AZURE_TENANT_ID, "
                           "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are needed together")
        return ClientSecretCredential(target.tenant_id, target.client_id, target.client_secret,
                                      **options)
    return DefaultAzureCredential(**options)

"""KMS keys as CockroachDB names them in ``BACKUP ... WITH kms = '...'``, and AWS KMS through
boto3: the one place that unwraps a backup's data key.

AWS (cockroach ``pkg/cloud/amazon/aws_kms.go``): ``aws:///<key id, alias or ARN>`` (also
``aws-kms://``) with ``AUTH=specified|implicit``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``REGION`` and ``AWS_ENDPOINT``. The master
key id CockroachDB hashes into ENCRYPTION-INFO is the URI's path without its leading slash,
exactly as written: an ARN and the bare key id of the same key are different ids. Google
Cloud KMS (``gs:///``) and Azure Key Vault (``azure-kms:///``) are recognised and refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from crdb_archive import __version__
from crdb_archive.errors import (
    BadInput,
    DamagedEncryptionInfo,
    KeyServiceError,
    WrongEncryptionKey,
)
from crdb_archive.storage.cloud_config import check_aws_auth, check_params, http_endpoint
from crdb_archive.storage.uri import REDACTED, parse_location, redact

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

AWS_SCHEMES = ("aws", "aws-kms")
_REFUSED = {
    "gs": "Google Cloud KMS",
    "gcp-kms": "Google Cloud KMS",
    "azure-kms": "Azure Key Vault",
}
_UNSUPPORTED = {
    "ASSUME_ROLE": "ASSUME_ROLE is not supported; use AUTH=implicit with a profile that assumes "
                   "the role (AWS_PROFILE with role_arn)",
}
_PARAMS = ("AUTH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "REGION", "AWS_ENDPOINT")
SECRET_PARAMS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Redacted in everything we write: an access key id is not a secret, but it names an account.
_HIDDEN = ("AWS_ACCESS_KEY_ID", *SECRET_PARAMS)
_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):")
DEFAULT_REGION = "us-east-1"
# KMS answers meaning the credentials or the key's state, not the data: the world failed.
_WORLD_CODES = {
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "ExpiredTokenException", "DisabledException", "KMSInvalidStateException",
    "KeyUnavailableException", "DependencyTimeoutException", "KMSInternalException",
    "ThrottlingException",
}


@dataclass(frozen=True, repr=False)
class KmsUri:
    """A parsed KMS URI; credentials are kept out of ``repr`` and of :attr:`display`."""

    scheme: str
    key_id: str
    auth: str
    region: str | None
    endpoint: str | None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    @property
    def display(self) -> str:
        """The URI as CockroachDB takes it, credentials replaced by ``redacted``."""
        params: list[tuple[str, str]] = []
        if self.auth:
            params.append(("AUTH", self.auth))
        for name, value in (("AWS_ACCESS_KEY_ID", self.access_key_id),
                            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key),
                            ("AWS_SESSION_TOKEN", self.session_token)):
            if value:
                params.append((name, REDACTED))
        if self.region:
            params.append(("REGION", self.region))
        if self.endpoint:
            params.append(("AWS_ENDPOINT", _endpoint_display(self.endpoint)))
        query = "&".join(f"{name}={value}" for name, value in params)
        return f"{self.scheme}:///{self.key_id}" + (f"?{query}" if query else "")

    @property
    def secrets(self) -> tuple[str, ...]:
        values = (self.access_key_id, self.secret_access_key, self.session_token)
        return tuple(v for v in values if v)

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"KmsUri({self.display!r})"


def literal_secrets(text: str) -> list[str]:
    """The names of secret parameters a KMS URI carries (for refusing them on a command line)."""
    try:
        location = parse_location(text)
    except ValueError:
        return []
    return [name for name, value in location.params if name in SECRET_PARAMS and value]


def parse_kms_uri(text: str) -> KmsUri:
    """Parse a KMS URI in CockroachDB's form; raises BadInput naming what is wrong (never a
    parameter's value, nor text that is not a KMS URI: it may be a secret put in the wrong
    place)."""
    expected = "expected aws:///<key id or ARN>?REGION=... as given to BACKUP ... WITH kms"
    try:
        location = parse_location(text.strip())
    except ValueError:
        raise BadInput(f"a KMS URI cannot be parsed: {expected}") from None
    scheme = location.scheme
    shown = redact(text.strip())
    if scheme in _REFUSED:
        raise BadInput(f"{shown}: {_REFUSED[scheme]} keys ({scheme}://) are recognised but not "
                       "supported yet; crdb-archive unwraps AWS KMS keys (aws:///...)")
    if scheme not in AWS_SCHEMES:
        what = "text that is not a URI" if scheme == "file" else f"a {scheme}:// URI"
        raise BadInput(f"--kms was given {what}, not a KMS key: {expected}")
    if location.host:
        raise BadInput(f"{shown}: write the key after three slashes, aws:///<key id or ARN>; "
                       f"{location.host!r} would be read as a host")
    key_id = location.path.removeprefix("/")
    if not key_id:
        raise BadInput(f"{shown} names no key: expected aws:///<key id or ARN>")
    check_params(location, _PARAMS, _UNSUPPORTED, where=shown, kind="KMS parameter")
    auth = (location.param("AUTH") or "").lower()
    key = location.param("AWS_ACCESS_KEY_ID") or None
    # Go's query parser, like ours, reads '+' as a space; AWS secrets never hold spaces, so
    # CockroachDB turns them back into '+', and so do we.
    secret = (location.param("AWS_SECRET_ACCESS_KEY") or "").replace(" ", "+") or None
    token = location.param("AWS_SESSION_TOKEN") or None
    check_aws_auth(shown, auth, key, secret, token)
    endpoint = location.param("AWS_ENDPOINT") or None
    if endpoint is not None:
        endpoint = http_endpoint(endpoint, shown, "AWS_ENDPOINT")
    return KmsUri(scheme=scheme, key_id=key_id, auth=auth, region=location.param("REGION") or None,
                  endpoint=endpoint,
                  access_key_id=key, secret_access_key=secret, session_token=token)


def _endpoint_display(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


class AwsKmsKey:
    """One AWS KMS key given by URI: its master key id, and unwrapping through KMS Decrypt."""

    def __init__(self, uri: KmsUri) -> None:
        self.uri = uri
        self._client: KMSClient | None = None

    @property
    def master_key_id(self) -> str:
        return self.uri.key_id

    @property
    def display(self) -> str:
        return self.uri.display

    def unwrap(self, wrapped: bytes) -> bytes:
        """The data key KMS wrapped as ``wrapped``.

        Raises WrongEncryptionKey when KMS says another key wrapped it or the key does not
        exist, DamagedEncryptionInfo when KMS cannot read the wrapped key, KeyServiceError
        when KMS cannot be reached or refuses the credentials, BadInput for configuration.
        """
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        client = self._connect()
        try:
            answer = client.decrypt(KeyId=self.uri.key_id, CiphertextBlob=wrapped)
        except ClientError as error:
            raise self._translate(str(error.response.get("Error", {}).get("Code", ""))
                                  ) from None
        except BotoCoreError as error:
            raise KeyServiceError(f"AWS KMS {self.display} cannot be reached: "
                                  f"{type(error).__name__}") from None
        return answer["Plaintext"]

    def _translate(self, code: str) -> Exception:
        where = f"AWS KMS key {self.display}"
        if code == "IncorrectKeyException":
            return WrongEncryptionKey(f"{where} did not wrap this backup's data key")
        if code == "NotFoundException":
            return WrongEncryptionKey(f"{where} does not exist (check the key id and REGION)")
        if code == "InvalidCiphertextException":
            return DamagedEncryptionInfo(
                f"{where} cannot unwrap the data key that ENCRYPTION-INFO holds for it: the "
                "wrapped key is damaged")
        if code in _WORLD_CODES:
            return KeyServiceError(f"{where}: KMS refused the request ({code})")
        return KeyServiceError(f"{where}: KMS Decrypt failed ({code or 'no error code'})")

    def _connect(self) -> KMSClient:
        if self._client is not None:
            return self._client
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        from crdb_archive.storage.s3_config import (  # noqa: PLC0415
            fail_fast_on_connection_errors,
            max_attempts,
        )

        uri = self.uri
        endpoint = (uri.endpoint or os.environ.get("AWS_ENDPOINT_URL_KMS")
                    or os.environ.get("AWS_ENDPOINT_URL") or None)
        try:
            session = boto3.session.Session(
                aws_access_key_id=uri.access_key_id,
                aws_secret_access_key=uri.secret_access_key,
                aws_session_token=uri.session_token,
            )
            arn = _ARN_REGION.match(uri.key_id)
            region = uri.region or (arn.group(1) if arn else None) or session.region_name
            if region is None:
                if endpoint is None:
                    raise BadInput(f"{self.display}: give the key's region with REGION=... "
                                   "(or a key ARN, which names it)")
                region = DEFAULT_REGION
            config = Config(
                region_name=region,
                retries={"mode": "standard", "total_max_attempts": max_attempts()},
                connect_timeout=10,
                read_timeout=60,
                user_agent_extra=f"crdb-archive/{__version__}",
            )
            client = session.client("kms", endpoint_url=endpoint, config=config)
        except BotoCoreError as error:
            raise BadInput(f"{self.display}: cannot configure the KMS client: "
                           f"{type(error).__name__}") from None
        # As for S3: a refused connection or an unknown host fails in seconds.
        fail_fast_on_connection_errors(client.meta.events, max_attempts())
        self._client = client
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def open_kms_key(text: str) -> AwsKmsKey:
    """The KMS key a URI names, ready to unwrap (connecting on first use); raises BadInput."""
    return AwsKmsKey(parse_kms_uri(text))

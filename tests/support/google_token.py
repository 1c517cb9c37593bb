"""A Google OAuth2 token endpoint on 127.0.0.1, for the service account key path end to end.

A test makes a service account key of its own (an RSA key from ``cryptography``) whose
``token_uri`` names this server. google-auth signs a JWT with the key and posts it here (the
JWT bearer grant, RFC 7523); the server checks the signature with the public key and the
claims, and answers an access token that the storage requests must then carry. Every grant is
recorded, with whether it was verified.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience of every grant assertion is Google's token endpoint, wherever it is posted.
AUDIENCE = "https://oauth2.googleapis.com/token"
STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class ServiceAccount:
    """A service account key: its private key, and the JSON a console would hand out."""

    email: str
    key_id: str
    private_key: rsa.RSAPrivateKey
    token_uri: str

    @classmethod
    def make(cls, token_uri: str, name: str = "archiver") -> ServiceAccount:
        return cls(f"{name}@crdb-archive-test.iam.gserviceaccount.com", secrets.token_hex(20),
                   rsa.generate_private_key(public_exponent=65537, key_size=2048), token_uri)

    @property
    def pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()

    def info(self) -> dict[str, str]:
        return {
            "type": "service_account",
            "project_id": "crdb-archive-test",
            "private_key_id": self.key_id,
            "private_key": self.pem,
            "client_email": self.email,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def credentials_param(self) -> str:
        """The key as CockroachDB's CREDENTIALS parameter takes it: base64 of the JSON."""
        return base64.b64encode(json.dumps(self.info()).encode()).decode()


@dataclass
class Grant:
    """One token request: the claims it carried and whether it was verified."""

    verified: bool
    claims: dict[str, Any]
    reason: str = ""


@dataclass
class TokenServer:
    """The running endpoint: the keys it trusts, the tokens it issued, the grants it saw."""

    url: str
    trusted: dict[str, ServiceAccount] = field(default_factory=dict)  # by key id
    tokens: list[str] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def account(self, name: str = "archiver") -> ServiceAccount:
        """A new service account whose key this server trusts."""
        made = ServiceAccount.make(self.token_uri, name)
        self.trusted[made.key_id] = made
        return made

    def check(self, assertion: str) -> Grant:
        """Verify a JWT bearer assertion: RS256 by a trusted key, its issuer, audience, scope
        and times."""
        try:
            head, body, signature = assertion.split(".")
            header = json.loads(_b64url(head))
            claims = json.loads(_b64url(body))
        except (ValueError, binascii.Error):
            return Grant(False, {}, "malformed")
        account = self.trusted.get(str(header.get("kid")))
        if header.get("alg") != "RS256" or account is None:
            return Grant(False, claims, "unknown key")
        try:
            account.private_key.public_key().verify(
                _b64url(signature), f"{head}.{body}".encode(), padding.PKCS1v15(),
                hashes.SHA256())
        except InvalidSignature:
            return Grant(False, claims, "bad signature")
        now = time.time()
        if (claims.get("iss") != account.email or claims.get("aud") != AUDIENCE
                or STORAGE_SCOPE not in str(claims.get("scope", "")).split()
                or not claims.get("iat", now + 999) <= now + 60 < claims.get("exp", 0) + 60):
            return Grant(False, claims, "claims")
        return Grant(True, claims)


class _Handler(BaseHTTPRequestHandler):
    server_version = "token-test/1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        server = cast(_Server, self.server).token
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        assertion = (form.get("assertion") or [""])[0]
        if self.path != "/token" or (form.get("grant_type") or [""])[0] != GRANT_TYPE:
            grant = Grant(False, {}, "not a JWT bearer grant")
        else:
            grant = server.check(assertion)
        with server.lock:
            server.grants.append(grant)
            if grant.verified:
                token = f"ya29.test-{secrets.token_urlsafe(24)}"
                server.tokens.append(token)
        if grant.verified:
            self._answer(200, {"access_token": token, "expires_in": 3600,
                               "token_type": "Bearer"})
        else:
            self._answer(400, {"error": "invalid_grant",
                               "error_description": f"rejected: {grant.reason}"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    token: TokenServer


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    """A token endpoint on a free port of 127.0.0.1 for one test."""
    server = _Server(("127.0.0.1", 0), _Handler)
    host, port = server.server_address[:2]
    server.token = TokenServer(f"http://{host!s}:{port}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.token
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

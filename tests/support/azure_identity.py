"""Microsoft Entra ID on 127.0.0.1, for the app-registration and default-credential paths.

A token issuer speaks the OAuth 2.0 client-credentials flow as login.microsoftonline.com does
(an OpenID configuration, a token endpoint that checks the client id and secret) over HTTPS,
and a second Azurite serves HTTPS with ``--oauth basic``: it accepts a bearer token whose
issuer, audience and lifetime are right (it checks no signature). azure-identity finds the
issuer through ``AZURE_AUTHORITY_HOST`` and trusts the test certificate through
``REQUESTS_CA_BUNDLE``, as any private cloud would be set up.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import itertools
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from azure.storage.blob import BlobServiceClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.azure import ACCOUNT, ACCOUNT_KEY, running_azurite

TENANT = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
CLIENT_ID = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
CLIENT_SECRET = "app-secret-Zq8~never.shown"

_names = itertools.count(1)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own authority, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token(audience: str, lifetime: int = 3600) -> str:
    """A JWT with the claims Azure Storage reads (issuer, audience, lifetime)."""
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "iat": now - 60,
              "nbf": now - 60, "exp": now + lifetime, "appid": CLIENT_ID, "tid": TENANT,
              "oid": CLIENT_ID, "sub": CLIENT_ID, "ver": "1.0"}
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                     _b64(b"not-signed")])


@dataclass
class TokenRequest:
    client_id: str
    grant_type: str
    scope: str
    secret_ok: bool


@dataclass
class TokenIssuer:
    """The issuer's state: what it was asked."""

    url: str = ""
    requests: list[TokenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, payload: dict[str, object]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith(f"/{TENANT}/v2.0/.well-known/openid-configuration"):
                base = f"{issuer.url}/{TENANT}"
                self._answer(200, {
                    "issuer": f"{base}/v2.0",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                })
                return
            self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if self.path != f"/{TENANT}/oauth2/v2.0/token":
                self._answer(404, {"error": "not_found"})
                return
            got = TokenRequest(form.get("client_id", [""])[0], form.get("grant_type", [""])[0],
                               form.get("scope", [""])[0],
                               form.get("client_secret", [""])[0] == CLIENT_SECRET)
            with issuer.lock:
                issuer.requests.append(got)
            if got.client_id != CLIENT_ID or not got.secret_ok:
                self._answer(401, {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215]})
                return
            audience = got.scope.removesuffix("/.default")
            self._answer(200, {"token_type": "Bearer", "expires_in": 3600,
                               "ext_expires_in": 3600, "access_token": access_token(audience)})

    return Handler


@dataclass(frozen=True)
class EntraAzurite:
    """An HTTPS Azurite that takes bearer tokens, the issuer of those tokens, the CA file."""

    endpoint: str  # https://127.0.0.1:<port>/devstoreaccount1
    issuer: TokenIssuer
    ca_file: Path

    def container(self) -> str:
        """A new empty container (made with the account key)."""
        name = f"entra-{next(_names):05d}"
        with BlobServiceClient(self.endpoint, credential={"account_name": ACCOUNT,
                                                          "account_key": ACCOUNT_KEY},
                               connection_verify=str(self.ca_file)) as service:
            service.create_container(name)
        return name


@pytest.fixture(scope="session")
def entra_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntraAzurite]:
    """The HTTPS Azurite with OAuth and the loopback token issuer, for the whole session."""
    directory = tmp_path_factory.mktemp("entra")
    cert, key = self_signed(directory)
    issuer = TokenIssuer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(issuer))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    issuer.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        with running_azurite("--cert", str(cert), "--key", str(key), "--oauth", "basic",
                             scheme="https") as endpoint:
            yield EntraAzurite(endpoint, issuer, cert)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

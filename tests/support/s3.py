"""An S3 endpoint on 127.0.0.1: moto's server mode, talked to over HTTP by real boto3 clients.

One server per test session; each test makes its own uniquely named buckets, so tests stay
independent without resetting the server. Use from a test module::

    def test_x(s3_env: MotoS3) -> None: ...  # fixtures come from tests/conftest.py
"""

from __future__ import annotations

import itertools
import json
import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"

_names = itertools.count(1)


class MotoS3:
    """The running server: its endpoint, boto3 clients for it, fresh buckets."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def client(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> S3Client:
        """A real boto3 S3 client for this endpoint (close it, or use ``with closing``)."""
        client: S3Client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        return client

    def bucket(self, *, object_lock: bool = False, versioned: bool = False) -> str:
        """A new empty bucket with a name no other test uses."""
        name = f"test-bucket-{next(_names):05d}"
        client = self.client()
        try:
            if object_lock:
                client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
            else:
                client.create_bucket(Bucket=name)
            if versioned:
                client.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": "Enabled"}
                )
        finally:
            client.close()
        return name

    def multipart_uploads(self, bucket: str) -> list[str]:
        """Keys of the multipart uploads in progress in ``bucket``."""
        client = self.client()
        try:
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        finally:
            client.close()
        return [u["Key"] for u in uploads]

    def all_keys(self, bucket: str) -> list[str]:
        client = self.client()
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        finally:
            client.close()

    def object_bytes(self, bucket: str) -> Iterator[tuple[str, bytes]]:
        """Every object's key and content, to search stored data for things that must not be."""
        client = self.client()
        try:
            for key in self.all_keys(bucket):
                answer = client.get_object(Bucket=bucket, Key=key)
                with answer["Body"] as body:
                    yield key, body.read()
        finally:
            client.close()

    @contextmanager
    def restores_take(self, head_requests: int) -> Iterator[None]:
        """Restores stay in progress for ``head_requests`` status reads (moto's state manager)."""
        self._moto_api("state-manager/set-transition", {
            "model_name": "s3::keyrestore",
            "transition": {"progression": "manual", "times": head_requests},
        })
        try:
            yield
        finally:
            self._moto_api("state-manager/unset-transition", {"model_name": "s3::keyrestore"})

    @contextmanager
    def enforcing_credentials(self) -> Iterator[tuple[str, str]]:
        """Make the server check signatures; yields a valid (access key, secret) pair.

        moto accepts any credentials unless told otherwise; this switch is server-wide, so it
        is turned off again on the way out.
        """
        # The four requests below are the last ones moto lets through without checking.
        self._moto_api("reset-auth", 4, json_body=False)
        try:
            iam: Any = boto3.session.Session().client(
                "iam", endpoint_url=self.endpoint_url, region_name=REGION,
                aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            )
            try:
                user = f"user-{next(_names)}"
                iam.create_user(UserName=user)
                iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }))
                key = iam.create_access_key(UserName=user)["AccessKey"]
            finally:
                iam.close()
            yield key["AccessKeyId"], key["SecretAccessKey"]
        finally:
            self._moto_api("reset-auth", "inf", json_body=False)

    def _moto_api(self, path: str, body: Any, *, json_body: bool = True) -> None:
        data = json.dumps(body) if json_body else str(body)
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/{path}", data=data.encode(), method="POST",
            headers={"Content-Type": "application/json" if json_body else "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server on a free port of 127.0.0.1, for the whole session."""
    # werkzeug logs every request on stderr; tests read stderr for our own messages.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoS3(f"http://{host}:{port}")
    finally:
        server.stop()
        # stop() shuts the serving loop down but leaves the listening socket open.
        wsgi_server = getattr(server, "_server", None)
        if wsgi_server is not None:
            wsgi_server.server_close()


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoS3:
    """Point boto3's default chain at the server: credentials, region and endpoint in the
    environment, and no profile, config file or instance metadata of the machine."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
                 "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_s3

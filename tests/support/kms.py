"""AWS KMS keys in moto's server (the one support.s3 starts: it serves every AWS service).

A test creates its own keys, wraps a data key with KMS Encrypt as CockroachDB's BACKUP does,
and builds the ENCRYPTION-INFO that files the wrapped key under SHA-256(key id).
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3

from support.encryption import Encrypting, encryption_info
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient


def kms_client(env: MotoS3) -> KMSClient:
    client: KMSClient = boto3.session.Session().client(
        "kms", endpoint_url=env.endpoint_url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    return client


@dataclass(frozen=True)
class KmsKey:
    """A KMS key of moto's server: its id, ARN, and the URIs that name it."""

    key_id: str
    arn: str
    endpoint_url: str = field(repr=False)

    def uri(self, *, key: str | None = None, secret: str = SECRET_KEY,
            access_key: str = ACCESS_KEY) -> str:
        """``aws:///<id>`` with AUTH=specified credentials, as given to BACKUP."""
        return (f"aws:///{key or self.key_id}?AUTH=specified&AWS_ACCESS_KEY_ID={access_key}"
                f"&AWS_SECRET_ACCESS_KEY={secret}&REGION={REGION}"
                f"&AWS_ENDPOINT={self.endpoint_url}")

    def implicit_uri(self) -> str:
        return f"aws:///{self.key_id}?AUTH=implicit&REGION={REGION}"


def create_key(env: MotoS3) -> KmsKey:
    with closing(kms_client(env)) as client:
        meta = client.create_key(Description="crdb-archive test")["KeyMetadata"]
    return KmsKey(meta["KeyId"], meta["Arn"], env.endpoint_url)


def wrap(env: MotoS3, key: KmsKey, data_key: bytes) -> bytes:
    with closing(kms_client(env)) as client:
        return client.encrypt(KeyId=key.key_id, Plaintext=data_key)["CiphertextBlob"]


def with_kms(env: MotoS3, *keys: KmsKey, named: str | None = None, version: int = 2,
             extra: dict[str, list[KmsKey]] | None = None) -> Encrypting:
    """A random data key wrapped by each of ``keys`` into ENCRYPTION-INFO (filed under each
    key's id, or ``named`` as written in the BACKUP statement); ``extra`` adds later files
    (``ENCRYPTION-INFO-2``: keys), as ALTER BACKUP ... ADD NEW_KMS does."""
    data_key = os.urandom(32)
    infos = {"ENCRYPTION-INFO": encryption_info(
        wrapped={(named or k.key_id): wrap(env, k, data_key) for k in keys})}
    for name, added in (extra or {}).items():
        infos[name] = encryption_info(wrapped={k.key_id: wrap(env, k, data_key) for k in added})
    return Encrypting(data_key, version, infos)

"""Export bundles with object storage at either end, against moto's S3 server on 127.0.0.1:
a changefeed sink in a bucket (credentials in its URI, as CockroachDB's sink URIs carry them),
bundles written to a bucket, and a load from a bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.backups import upload
from support.cli import run_cli
from support.export_demo import (
    RESOLVED,
    SCHEMA_SQL,
    expected_rows,
    loaded_rows,
    write_shop_changefeed,
)
from support.postgres import PostgresDatabase
from support.s3 import MotoS3

TABLES = ("customers", "orders")


def test_a_sink_in_s3_with_secrets_in_its_uri(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, moto_s3: MotoS3,
        monkeypatch: pytest.MonkeyPatch, postgres_db: PostgresDatabase,
        postgres_dsn: str) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    history = write_shop_changefeed(tmp_path / "sink")
    plain = upload(moto_s3, tmp_path / "sink", "feeds/shop")
    secret = "sekrit-sink-value-5e4d3c2b1a"
    source = (f"{plain}?AWS_ACCESS_KEY_ID=testing&AWS_SECRET_ACCESS_KEY={secret}"
              f"&AWS_REGION=us-east-1&AWS_ENDPOINT={moto_s3.endpoint_url}")
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    dest = tmp_path / "bundles"

    found = run_cli(capsys, "inspect", source, "--json")
    assert found.code == 0, found.err
    assert found.json()["kind"] == "changefeed"
    result = run_cli(capsys, "archive", source, "--dest", str(dest), "--schema", str(schema),
                     "--json")
    assert result.code == 0, result.err
    outputs = found.out + found.err + result.out + result.err
    bundle = Path(str(result.json()["bundle"]))
    description = json.loads((bundle / "crdb-archive.json").read_text())
    assert description["export"]["source"] == (
        f"{plain}?AWS_ACCESS_KEY_ID=redacted&AWS_SECRET_ACCESS_KEY=redacted"
        "&AWS_REGION=redacted&AWS_ENDPOINT=redacted")
    for command in (["verify", str(bundle), "--json"], ["inspect", str(bundle), "--json"]):
        done = run_cli(capsys, *command)
        assert done.code == 0, done.err
        outputs += done.out + done.err
    loaded = run_cli(capsys, "load", str(bundle), "--into", postgres_dsn, "--json")
    assert loaded.code == 0, loaded.err
    with postgres_db.connect() as connection:
        for name in TABLES:
            assert loaded_rows(connection, name) == expected_rows(history, RESOLVED[-1], name)
    assert secret not in outputs
    for path in bundle.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    # The same sink with other credentials (moto takes any) is the same source: same bundle.
    again = run_cli(capsys, "archive", source.replace(secret, "another-secret-value"),
                    "--dest", str(dest), "--schema", str(schema), "--json")
    assert again.code == 0, again.err
    assert (again.json()["created"], again.json()["bundle"]) == (False, str(bundle))


@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_bundles_written_to_s3_and_loaded_from_there(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, s3_env: MotoS3, fmt: str,
        postgres_db: PostgresDatabase, postgres_dsn: str) -> None:
    history = write_shop_changefeed(tmp_path / "sink")
    source = upload(s3_env, tmp_path / "sink", "sink")
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    bucket = s3_env.bucket()
    dest = f"s3://{bucket}/exports"
    at = RESOLVED[1]
    result = run_cli(capsys, "archive", source, "--dest", dest, "--schema", str(schema),
                     "--format", fmt, "--as-of", at.decimal(), "--json")
    assert result.code == 0, result.err
    answer = result.json()
    location = str(answer["bundle"])
    assert location == f"{dest}/{answer['name']}" + (".tar" if fmt == "tar" else "")
    assert s3_env.multipart_uploads(bucket) == []
    verified = run_cli(capsys, "verify", location, "--json")
    assert verified.code == 0, verified.out
    loaded = run_cli(capsys, "load", location, "--into", postgres_dsn, "--json")
    assert loaded.code == 0, loaded.err
    assert loaded.json()["tables"] == answer["tables"]
    with postgres_db.connect() as connection:
        for name in TABLES:
            assert loaded_rows(connection, name) == expected_rows(history, at, name)
    # Loading again finds the tables there.
    refused = run_cli(capsys, "load", location, "--into", postgres_dsn)
    assert refused.code == 2
    assert "already exists" in refused.err
    assert run_cli(capsys, "load", location, "--into", postgres_dsn, "--replace").code == 0
    # A re-run finds the bundle in the bucket and writes nothing.
    keys = s3_env.all_keys(bucket)
    again = run_cli(capsys, "archive", source, "--dest", dest, "--schema", str(schema),
                    "--format", fmt, "--as-of", at.decimal(), "--json")
    assert again.code == 0, again.err
    assert again.json()["created"] is False
    assert s3_env.all_keys(bucket) == keys

"""How often S3 requests are tried, and what the operator hears when they all fail.

A refused connection or an unknown host fails within a few attempts and says how many; 5xx
answers are retried AWS_MAX_ATTEMPTS times in all (the first attempt included), and the
message gives that count.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from support.cli import run_subprocess
from support.faultproxy import FaultProxy, refuse
from support.s3 import MotoS3

SECRET = "wJalrXUtnFEMI-secret-never-shown"


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (it was bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def uri(endpoint: str, bucket: str = "crdb-backups") -> str:
    return (f"s3://{bucket}/nightly?AWS_ENDPOINT={endpoint}&AUTH=specified"
            f"&AWS_ACCESS_KEY_ID=AKIAEXAMPLE&AWS_SECRET_ACCESS_KEY={SECRET}")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("AWS_") and k != "CRDB_ARCHIVE_MIRROR"}
    base["AWS_EC2_METADATA_DISABLED"] = "true"
    base.update(extra)
    return base


@pytest.mark.parametrize("command", ["inspect", "verify", "archive"])
def test_a_refused_connection_fails_with_its_attempt_count(command: str, tmp_path: Path
                                                           ) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    extra = ["--dest", str(tmp_path / "out")] if command == "archive" else []
    result = run_subprocess(command, uri(endpoint), *extra, env=env(), timeout=60)
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"cannot reach {endpoint} (connection refused) after 3 attempts" in line
    assert "AWS_MAX_ATTEMPTS" in line
    assert SECRET not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_an_unknown_host_fails_with_its_attempt_count() -> None:
    result = run_subprocess("inspect", uri("http://no-such-host.invalid:9000"),
                            env=env(), timeout=60)
    assert result.returncode == 3, result.stderr
    assert "cannot reach http://no-such-host.invalid:9000" in result.stderr
    assert "after 3 attempts" in result.stderr


def test_fewer_attempts_when_asked() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = run_subprocess("inspect", uri(endpoint), env=env(AWS_MAX_ATTEMPTS="1"),
                            timeout=60)
    assert result.returncode == 3
    assert "(connection refused) after 1 attempt;" in result.stderr


@pytest.mark.parametrize("attempts", ["1", "2", "3"])
def test_server_errors_are_tried_aws_max_attempts_times(moto_s3: MotoS3,
                                                        attempts: str) -> None:
    bucket = moto_s3.bucket()
    with FaultProxy(moto_s3.endpoint_url) as proxy:
        proxy.fail(None, rf"^/{bucket}", refuse(503), times=50)
        result = run_subprocess("inspect", uri(proxy.url, bucket),
                                env=env(AWS_MAX_ATTEMPTS=attempts), timeout=120)
        # The proxy logs a request once its answer is sent: the command may have read the
        # answer and exited before the log has it.
        assert proxy.wait_logged(int(attempts))
        requests = proxy.requests()
    assert result.returncode == 3, result.stderr
    # The first request that failed is the only one made: each failure stops the command.
    assert len(requests) == int(attempts)
    assert {(r.fault, r.status) for r in requests} == {("refuse", 503)}
    noun = "attempt" if attempts == "1" else "attempts"
    assert f"after {attempts} {noun}" in result.stderr
    assert SECRET not in result.stderr


def test_a_bad_aws_max_attempts_is_bad_input() -> None:
    result = run_subprocess("inspect", uri("http://127.0.0.1:9"),
                            env=env(AWS_MAX_ATTEMPTS="many"), timeout=60)
    assert result.returncode == 2
    assert "AWS_MAX_ATTEMPTS='many'" in result.stderr

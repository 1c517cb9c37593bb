"""`verify` with several bundles: each is checked and reported, a failure of one does not stop
the others, and the exit code is the most severe outcome (damage 1, then the world 3, then bad
input 2)."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from support.bundles import make_bundle, run_cli, xor_byte
from support.faultproxy import FaultProxy, short_body
from support.s3 import MotoS3


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("many")
    return make_bundle(base / "a"), make_bundle(base / "b", fmt="tar", era="v24.3")


def damaged_copy(bundle: Path, where: Path) -> Path:
    copy = where / bundle.name
    shutil.copytree(bundle, copy)
    sst = next(p for p in sorted((copy / "data" / "backup").rglob("*.sst")))
    xor_byte(sst)
    return copy


def verify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(capsys, "verify", *args, "--json")
    assert "Traceback" not in result.err
    payload: dict[str, Any] = json.loads(result.out)
    return result.code, payload


def test_all_sound(capsys: pytest.CaptureFixture[str], made: tuple[Path, Path]) -> None:
    code, report = verify_json(capsys, *map(str, made))
    assert code == 0
    assert report["ok"] is True
    assert (report["checked"], report["damaged"], report["unchecked"]) == (2, 0, 0)
    assert [b["bundle"] for b in report["bundles"]] == [str(p) for p in made]
    assert all(b["ok"] for b in report["bundles"])
    text = run_cli(capsys, "verify", *map(str, made))
    assert text.out.splitlines()[-1] == "2 bundles: 2 OK, 0 damaged, 0 not checked"


def test_one_damaged_is_named_and_the_others_checked(
    capsys: pytest.CaptureFixture[str], made: tuple[Path, Path], tmp_path: Path,
) -> None:
    broken = damaged_copy(made[0], tmp_path)
    code, report = verify_json(capsys, str(made[0]), str(broken), str(made[1]))
    assert code == 1
    assert [b["ok"] for b in report["bundles"]] == [True, False, True]
    assert report["bundles"][1]["problems"][0]["kind"] == "digest"
    assert report["damaged"] == 1


def test_not_a_bundle_is_reported_and_counts_as_bad_input(
    capsys: pytest.CaptureFixture[str], made: tuple[Path, Path], tmp_path: Path,
) -> None:
    code, report = verify_json(capsys, str(made[0]), str(tmp_path / "nothing"))
    assert code == 2
    assert report["bundles"][1] == {
        "bundle": str(tmp_path / "nothing"), "ok": False, "checked": False,
        "error": f"{tmp_path / 'nothing'} does not exist", "exit_code": 2}
    # Damage elsewhere outranks it.
    broken = damaged_copy(made[0], tmp_path)
    code, _ = verify_json(capsys, str(tmp_path / "nothing"), str(broken))
    assert code == 1


def test_a_storage_failure_leaves_one_unchecked_exit_3(
    capsys: pytest.CaptureFixture[str], made: tuple[Path, Path], s3_env: MotoS3,
    s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    bucket = s3_env.bucket()
    with closing(s3_env.client()) as client:
        client.put_object(Bucket=bucket, Key=made[1].name, Body=made[1].read_bytes())
    s3_proxy.fail("GET", r"\.tar$", short_body(10), times=1000)
    remote = f"s3://{bucket}/{made[1].name}"
    code, report = verify_json(capsys, str(made[0]), remote)
    assert code == 3
    assert report["bundles"][0]["ok"] is True
    assert report["bundles"][1]["checked"] is False
    assert report["bundles"][1]["exit_code"] == 3
    assert report["unchecked"] == 1
    broken = damaged_copy(made[0], tmp_path)
    code, _ = verify_json(capsys, remote, str(broken))
    assert code == 1


def test_one_bundle_keeps_its_own_report_shape(
    capsys: pytest.CaptureFixture[str], made: tuple[Path, Path], tmp_path: Path,
) -> None:
    code, report = verify_json(capsys, str(made[0]))
    assert code == 0
    assert report["bundle"] == str(made[0])
    assert "bundles" not in report
    missing = run_cli(capsys, "verify", str(tmp_path / "nothing"))
    assert missing.code == 2
    assert "does not exist" in missing.err

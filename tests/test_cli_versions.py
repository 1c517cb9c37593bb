"""The compat, plan and releases commands: exit codes, JSON contract, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.cli import run_cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    result = run_cli(capsys, *args)
    return result.code, result.out, result.err


def test_compat_supported_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compat", "v24.1.5", "v24.3", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["supported"] is True
    assert payload["backup_major"] == "v24.1"
    assert payload["target_major"] == "v24.3"
    assert payload["restorable_into"] == ["v24.1", "v24.2", "v24.3"]
    assert payload["reason"]


def test_compat_not_supported_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compat", "23.2", "24.3")
    assert code == 1
    assert out.startswith("NOT supported")


def test_compat_downgrade_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compat", "v24.3.1", "v24.1.1", "--json")
    assert code == 1
    assert json.loads(out)["supported"] is False


@pytest.mark.parametrize("bad", ["", "v", "23", "latest", "v23.1.11.4"])
def test_compat_garbage_exit_2_one_line(capsys: pytest.CaptureFixture[str], bad: str) -> None:
    code, out, err = run(capsys, "compat", bad, "v23.1")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("crdb-archive: error: ")
    assert "Traceback" not in err


def test_compat_unknown_future_version_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "compat", "v99.9.9", "v23.1", "--json")
    assert code == 2
    assert "v99.9" in err
    assert "newest known" in err
    assert json.loads(out)["exit_code"] == 2


def test_compat_withdrawn_release_warns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "compat", "v23.1.0", "v23.2")
    assert code == 0
    assert "withdrawn" in err
    code, out, _ = run(capsys, "compat", "v23.1.0", "v23.2", "--json")
    assert any("withdrawn" in w for w in json.loads(out)["warnings"])


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "v24.1.2", "--target", "v25.2", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["majors"] == ["v24.1", "v24.3", "v25.2"]
    assert all(isinstance(step, str) for step in payload["steps"])
    assert len(payload["steps"]) == 3


def test_plan_no_path_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "v23.1", "--target", "v22.2")
    assert code == 1
    assert "lower version" in err


def test_releases_lists_majors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "releases", "--json")
    assert code == 0
    listing = json.loads(out)
    assert list(listing) == ["releases"]
    rows = listing["releases"]
    by_name = {r["major"]: r for r in rows}
    assert by_name["v24.2"]["type"] == "innovation"
    assert by_name["v20.2"]["binary_removal_date"] == "2025-05-12"
    assert by_name["v20.2"]["days_until_binary_removal"] < 0
    assert by_name["v26.3"]["upcoming"] is True
    assert {"release_date", "support_end", "days_until_binary_removal"} <= set(rows[0])


def test_releases_of_one_major(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "releases", "v23.1", "--json")
    assert code == 0
    rows = json.loads(out)["releases"]
    assert all(r["major"] == "v23.1" for r in rows)
    withdrawn = {r["release"] for r in rows if r["withdrawn"]}
    assert withdrawn == {"v23.1.0"}
    code, out, _ = run(capsys, "releases", "23.1.x")
    assert "v23.1.0 " in out
    assert "withdrawn" in out


def test_usage_error_exit_2_and_version() -> None:
    missing = subprocess.run([sys.executable, "-m", "crdb_archive.cli", "compat"],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2
    version = subprocess.run([sys.executable, "-m", "crdb_archive.cli", "--version"],
                             capture_output=True, text=True, check=False)
    assert version.returncode == 0
    assert version.stdout.startswith("crdb-archive ")

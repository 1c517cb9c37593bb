"""``crdb-archive inspect``: the JSON contract, the summary, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crdb_archive.cli import main
from support.backups import ERAS, T0, Manifest, write, write_backup


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.mark.parametrize("name", list(ERAS))
def test_inspect_json_for_every_era(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    era = ERAS[name](tmp_path)
    code, out, err = run(capsys, "inspect", str(era.path), "--json")
    assert code == 0
    assert err == ""
    payload = json.loads(out)
    assert payload["kind"] == era.kind
    assert payload["subdir"] == era.subdir
    assert payload["build_tag"] == era.build_tag
    assert payload["cluster_version"] == era.cluster_version
    assert payload["major_version"] == era.major_version
    assert payload["restorable_into"] == era.restorable_into
    assert payload["encrypted"] is era.encrypted
    assert payload["incrementals"] == era.incrementals
    expected_end = era.end_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if era.end_time else None
    assert payload["end_time"] == expected_end
    assert payload["cluster_id"] == (None if era.encrypted else
                                     "5f0e3c1a-8c2b-4c36-9d3e-2a1b0c9d8e7f")
    files = [p for p in era.path.rglob("*") if p.is_file()]
    if era.kind == "backup":
        assert payload["files"] == len(files)
        assert payload["bytes"] == sum(p.stat().st_size for p in files)
        assert payload["backups"] == []
    else:
        assert payload["backups"][-1]["subdir"] == era.subdir
        assert payload["backups"][-1]["latest"] is True
    for word in era.warning_words:
        assert word in " ".join(payload["warnings"])


def test_inspect_text_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    code, out, err = run(capsys, "inspect", str(era.path))
    assert code == 0
    assert "collection, full backup 2024/12/15-000000.00 (LATEST)" in out
    assert "v24.3.1 (build tag), major v24.3" in out
    assert "restorable into:  v24.3, v25.1, v25.2" in out
    assert "3 incremental backups" in out
    assert "2024/12/01-000000.00" in out
    assert err == ""


def test_inspect_subdir_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    code, out, _ = run(capsys, "inspect", str(era.path), "--subdir", "2024/12/01-000000.00",
                       "--json")
    assert code == 0
    assert json.loads(out)["subdir"] == "2024/12/01-000000.00"


def test_encrypted_says_how_to_give_the_version(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    era = ERAS["encrypted"](tmp_path)
    code, out, err = run(capsys, "inspect", str(era.path))
    assert code == 0
    assert "--version" in out
    assert err.startswith("crdb-archive: warning: the backup is encrypted")


def test_warnings_go_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "inspect", str(ERAS["mixed"](tmp_path).path))
    assert code == 0
    assert "major v22.1" in out
    assert "crdb-archive: warning: build tag v22.2.0 and cluster version 22.1 disagree" in err


def test_wrong_checksum_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    era = ERAS["v23.1"](tmp_path)
    write(era.path / "BACKUP_MANIFEST-CHECKSUM", b"\xde\xad\xbe\xef")
    code, out, err = run(capsys, "inspect", str(era.path), "--json")
    assert code == 1
    assert json.loads(out)["exit_code"] == 1
    assert err.count("\n") == 1
    assert "BACKUP_MANIFEST does not match BACKUP_MANIFEST-CHECKSUM" in err


def test_not_a_backup_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "inspect", str(tmp_path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "expected a CockroachDB backup directory" in err


def test_truncated_manifest_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    stored = write_backup(tmp_path, Manifest(end_time=T0))
    write(tmp_path / "BACKUP_MANIFEST", stored[: len(stored) // 2])
    code, _, err = run(capsys, "inspect", str(tmp_path))
    assert code == 1
    assert err.startswith("crdb-archive: error: BACKUP_MANIFEST does not match")


@pytest.mark.parametrize(
    "content", [b"\x1f\x8b\x08garbage", b"\xff" * 64, b"encrypt", b"\x0a\xff\xff\xff\xff\x0f"]
)
def test_garbage_manifest_no_traceback(tmp_path: Path, content: bytes) -> None:
    write(tmp_path / "BACKUP", content)
    result = subprocess.run(
        [sys.executable, "-m", "crdb_archive.cli", "inspect", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("crdb-archive: error: BACKUP ")
    assert result.stderr.count("\n") == 1

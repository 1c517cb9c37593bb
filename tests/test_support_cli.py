"""The in-process CLI runner shows an escaped exception as a process would: a traceback."""

from __future__ import annotations

import pytest

from crdb_archive import versions
from support.cli import run_cli


def test_an_escaped_exception_is_a_traceback_in_err(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> object:
        raise RuntimeError("a defect")

    monkeypatch.setattr(versions, "release_index", broken)
    result = run_cli(capsys, "releases")
    assert result.code == 1
    assert "Traceback" in result.err
    assert "RuntimeError: a defect" in result.err


def test_a_clean_run_has_exit_code_zero(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "releases", "v23.1")
    assert result.code == 0
    assert "Traceback" not in result.err
    assert "v23.1.0" in result.out

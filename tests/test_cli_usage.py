"""Usage errors are errors like any other: one line on stderr, and with --json one JSON object
on stdout (one compact line for `run`, whose stdout is JSON Lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.cli import run_cli, run_subprocess

USAGE_MISTAKES = [
    (["archive", "--json"], "missing SOURCE and --dest", "crdb-archive archive --help"),
    (["verify", "--bogus", "x", "--json"], "no such option: --bogus",
     "crdb-archive verify --help"),
    (["restore-request", "s3://b/n", "--days", "soon", "--json"],
     "--days 'soon': expected a whole number", "crdb-archive restore-request --help"),
    (["compat", "v23.1", "--json"], "missing TARGET_VERSION", "crdb-archive compat --help"),
    (["nonsense", "--json"], "no such command 'nonsense'", "crdb-archive --help"),
    (["releases", "v23.1", "v24.1", "--json"], "unexpected argument: v24.1",
     "crdb-archive releases --help"),
    (["archive", "src", "--dest", "d", "--retain-until", "2031-02-30", "--json"],
     "--retain-until '2031-02-30': expected a date as YYYY-MM-DD",
     "crdb-archive archive --help"),
    (["audit", "d", "--max-bundles", "0", "--json"], "--max-bundles '0'",
     "crdb-archive audit --help"),
    (["archive", "src", "--dest", "d", "--format", "zip", "--json"],
     "--format 'zip': expected dir or tar", "crdb-archive archive --help"),
]


@pytest.mark.parametrize(("args", "complaint", "where"), USAGE_MISTAKES)
def test_usage_errors_with_json_print_one_object(
    capsys: pytest.CaptureFixture[str], args: list[str], complaint: str, where: str
) -> None:
    result = run_cli(capsys, *args)
    assert result.code == 2
    payload = json.loads(result.out)
    assert payload["exit_code"] == 2
    assert complaint in payload["error"]
    assert where in payload["error"]
    [line] = result.err.splitlines()
    assert line.startswith("crdb-archive: error: ")
    assert "Usage:" not in result.err + result.out


@pytest.mark.parametrize(("args", "complaint", "where"), USAGE_MISTAKES)
def test_usage_errors_without_json_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], complaint: str, where: str
) -> None:
    result = run_cli(capsys, *[a for a in args if a != "--json"])
    assert result.code == 2
    assert result.out == ""
    [line] = result.err.splitlines()
    assert complaint in line
    assert where in line


def test_run_usage_error_is_one_json_line() -> None:
    result = run_subprocess("run", "--json", "--bogus")
    assert result.returncode == 2
    [line] = result.stdout.splitlines()
    assert json.loads(line)["exit_code"] == 2
    assert "no such option: --bogus" in json.loads(line)["error"]


def test_no_arguments_show_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys)
    assert result.code == 2
    assert result.out == ""
    assert "commands:" in result.err
    assert "usage: crdb-archive" in result.err


def test_help_and_version_still_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "verify", "--help").code == 0
    version = run_cli(capsys, "--version")
    assert version.code == 0
    assert version.out.startswith("crdb-archive ")


def test_a_reader_that_goes_away_is_one_line_not_a_traceback() -> None:
    """`crdb-archive releases | head -1`, with head gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "crdb_archive.cli", "releases"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line == ("crdb-archive: error: stdout was closed before the output was all written "
                    "(broken pipe)")

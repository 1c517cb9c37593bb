"""Running the CLI from tests: in-process (exit code, stdout, stderr) or as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from crdb_archive.cli import main


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.out)
        return loaded


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """Run the CLI in-process; returns exit code, stdout and stderr.

    An exception that escapes ``main`` is what a user would see as a traceback: it is written
    to ``err`` with exit code 1, as the interpreter does for a real process, so that a test's
    ``"Traceback" not in err`` can fail.
    """
    capsys.readouterr()
    code: int = 0
    escaped = ""
    try:
        main(list(args))
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else (
            0 if exit_info.code is None else 1)
    except BaseException:  # noqa: BLE001 - shown as the process would show it
        code = 1
        escaped = traceback.format_exc()
    out, err = capsys.readouterr()
    return CliResult(code, out, err + escaped)


def run_subprocess(*args: str, env: dict[str, str] | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a separate process, as cron would."""
    return subprocess.run(
        [sys.executable, "-m", "crdb_archive.cli", *args],
        capture_output=True, text=True, check=False, env=env, timeout=timeout,
    )


@dataclass(frozen=True)
class Signalled:
    returncode: int
    pid: int
    out: str
    err: str


def signal_while_archiving(args: list[str], signum: int, *,
                           env: dict[str, str] | None = None) -> Signalled:
    """Run the CLI as a process and send ``signum`` when its first progress line of an archive
    task arrives (the copy is under way); returns what it printed after that and its exit."""
    return signal_during_task(args, signum, "archive ", env=env)


def signal_during_task(args: list[str], signum: int, task: str, *,
                       env: dict[str, str] | None = None, group: bool = False,
                       before: Callable[[], object] | None = None) -> Signalled:
    """Run the CLI as a process and send ``signum`` when its first progress line of a task
    whose name starts with ``task`` arrives (to its whole process group with ``group``, as a
    terminal's Ctrl-C does; after calling ``before``); returns what it printed after that and
    its exit."""
    process = subprocess.Popen([sys.executable, "-m", "crdb_archive.cli", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=group)
    assert process.stderr is not None
    assert process.stdout is not None
    try:
        for line in process.stderr:
            event = json.loads(line) if line.startswith("{") else {}
            if str(event.get("task", "")).startswith(task) and not event.get("finished"):
                if before is not None:
                    before()
                if group:
                    os.killpg(process.pid, signum)
                else:
                    process.send_signal(signum)
                break
        err = process.stderr.read()
        out = process.stdout.read()
    finally:
        process.wait(timeout=60)
        process.stderr.close()
        process.stdout.close()
    return Signalled(process.returncode, process.pid, out, err)

"""Running the CLI as a child process and measuring its peak memory (resident set size)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    code: int
    out: str
    err: str
    peak_rss_mib: float  # the child's own peak, from wait4: no other process counts
    killed: bool  # the timeout ran out


def run_measured(*args: str, timeout: float = 300,
                 env: dict[str, str] | None = None) -> Measured:
    """Run ``crdb-archive ARGS`` as a child; kill it after ``timeout`` seconds (a hang guard,
    not a timing assertion)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen([sys.executable, "-m", "crdb_archive.cli", *args],
                                   stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(process.returncode, out.read().decode("utf-8", "replace"),
                        err.read().decode("utf-8", "replace"), usage.ru_maxrss / 1024,
                        process.returncode < 0)

"""Running the CLI as a child process and measuring its peak memory (resident set size).

Linux keeps a process's peak RSS across fork and exec: a child forked from a large test
process starts with that process's peak. So the CLI is started by a small wrapper process,
whose own peak is small, and the wrapper reports its child's peak from ``wait4``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_WRAPPER = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "crdb_archive.cli", *sys.argv[2:]])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


@dataclass(frozen=True)
class Measured:
    code: int
    out: str
    err: str
    peak_rss_mib: float  # the CLI process's own peak
    killed: bool  # the timeout ran out


def run_measured(*args: str, timeout: float = 300,
                 env: dict[str, str] | None = None) -> Measured:
    """Run ``crdb-archive ARGS`` as a child; kill it after ``timeout`` seconds (a hang guard,
    not a timing assertion)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "maxrss"
        process = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, str(report), *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        killed = False
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        peak_kib = int(report.read_text() or "0") if report.exists() else 0
    return Measured(process.returncode, out.decode("utf-8", "replace"),
                    err.decode("utf-8", "replace"), peak_kib / 1024, killed)


@contextlib.contextmanager
def peak_allocation() -> Iterator[Callable[[], int]]:
    """Trace this process's Python allocations inside the block; yields a function giving
    the peak in bytes above what was allocated when the block began (read after it)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    peak = 0
    try:
        yield lambda: peak
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()

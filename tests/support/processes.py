"""Processes a test may look for in /proc: running workers, children never waited for."""

from __future__ import annotations

import os
from pathlib import Path


def workers_running(module: str) -> list[int]:
    """The processes running a worker module (``hashing_worker``, ``copying_worker``), by
    their command lines."""
    found = []
    marker = module.encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def zombies() -> list[int]:
    """Children of this process that ended and were never waited for."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split() if stat else []
        if fields and fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry.name))
    return found

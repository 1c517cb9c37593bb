"""What every worker process does alike (:mod:`hashing_worker`, :mod:`copying_worker`): read its
requests whole, and run with the signals meant for its parent ignored.

A worker ignores SIGINT and SIGTERM: its parent ends it, and a signal sent to the parent's
whole process group (a terminal's Ctrl-C) must not end it first. When the parent has gone, or
sent what it never sends, it exits with status 1 and says nothing: there is nobody to tell.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn


def encode(text: str) -> bytes:
    """Text for the pipe: UTF-8, with the surrogate escapes of a name that is not UTF-8."""
    return text.encode("utf-8", "surrogateescape")


def decode(data: bytes | bytearray | memoryview) -> str:
    return bytes(data).decode("utf-8", "surrogateescape")


def read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``; None when it ends first."""
    pieces = []
    missing = size
    while missing:
        piece = os.read(fd, missing)
        if not piece:
            return None
        pieces.append(piece)
        missing -= len(piece)
    return b"".join(pieces)


def run(serve: Callable[[int, int], int]) -> NoReturn:
    """``serve(requests, answers)`` on stdin and stdout; exit with the status it returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        status = serve(sys.stdin.fileno(), sys.stdout.fileno())
    except (OSError, ValueError):
        status = 1
    os._exit(status)

"""Presentation for the CLI: JSON on stdout, messages on stderr, progress bars on a terminal.

The core reports progress through :data:`crdb_archive.progress.ProgressCallback`; this module
turns those events into a rich progress bar when stderr is a terminal, or into JSON lines on
stderr (at most one per task per second, plus each task's end) when it is not.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

from crdb_archive.progress import ProgressCallback, ProgressEvent


class OutputClosed(BrokenPipeError):
    """Whoever read stdout went away before the output was all written (``... | head``)."""


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError as error:
        raise OutputClosed(*error.args) from None


def line(text: str) -> None:
    """Print one line of text output on stdout; raises OutputClosed."""
    _write(text + "\n")


def json_line(payload: Any) -> None:
    """Print one compact JSON object as one line on stdout (JSON Lines); raises
    OutputClosed."""
    _write(json.dumps(payload, separators=(",", ":")) + "\n")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def print_json(payload: Any) -> None:
    """Print one JSON object on stdout; raises OutputClosed."""
    _write(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def error_line(message: str) -> None:
    """Print a one-line error on stderr (newlines folded, so it stays one line)."""
    text = " ".join(message.split())
    sys.stderr.write(f"crdb-archive: error: {text}\n")
    sys.stderr.flush()


def warning_line(message: str) -> None:
    sys.stderr.write(f"crdb-archive: warning: {' '.join(message.split())}\n")
    sys.stderr.flush()


class _JsonLines:
    """Progress as JSON lines, throttled to one line per task per second."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        last = self._last.get(event.task)
        if not event.finished and last is not None and now - last < 1.0:
            return
        self._last[event.task] = now
        record = {"event": "progress", "task": event.task, "done": event.done,
                  "total": event.total, "finished": event.finished}
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()


class _Bar:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        task = self._tasks.get(event.task)
        if task is None:
            task = self._progress.add_task(event.task, total=event.total)
            self._tasks[event.task] = task
        self._progress.update(task, completed=event.done, total=event.total)
        if event.finished:
            self._progress.update(task, visible=False)


@contextmanager
def progress_reporter(*, quiet: bool = False) -> Iterator[ProgressCallback]:
    """A progress callback for the duration of one command.

    A terminal gets a progress bar; anything else gets JSON lines on stderr. ``quiet`` drops
    progress (for fast commands whose progress would be noise).
    """
    if quiet:
        yield lambda event: None
        return
    if not stderr_is_terminal():
        yield _JsonLines(sys.stderr)
        return
    # rich is loaded only where a bar is drawn: plain runs start faster without it.
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        yield _Bar(progress)

"""Progress reporting from the core to whoever is watching.

The core never prints. Long operations accept a :data:`ProgressCallback` and call it with
:class:`ProgressEvent` values; the CLI turns them into a progress bar on a terminal or JSON
lines otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units (bytes unless said otherwise) of the task named ``task``."""

    task: str
    done: int
    total: int | None = None
    finished: bool = False


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """A callback that ignores every event."""

"""How long to wait between two attempts of a request to a store."""

from __future__ import annotations

import random

# Full jitter, doubling from 50 ms up to 2 s.
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (from 2): full jitter, doubling, capped."""
    return random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * (2 ** (attempt - 1))))  # noqa: S311 - jitter, not a secret

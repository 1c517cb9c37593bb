"""Reading one table of a job spec key by key: types, choices, ranges, ``${VARIABLES}``.

Each mistake is recorded with its key path in a problem list shared by the whole spec, so that
validation goes on and reports every mistake at once.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from typing import Any

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SpecTable:
    """One section of the spec (``path`` like ``destination.object_lock``) and its keys."""

    def __init__(self, values: Any, path: str, known: tuple[str, ...],
                 problems: list[str]) -> None:
        self.path = path
        self.values: dict[str, Any] = values if isinstance(values, dict) else {}
        self.problems = problems
        for key in self.values:
            if key not in known:
                problems.append(unknown(f"{path}.{key}", list(known), "key"))

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.path}.{key}: {message}")

    def typed(self, key: str, kinds: tuple[type, ...], expected: str) -> Any:
        """The value of ``key`` if it has one of ``kinds``; None (and a problem) otherwise."""
        if key not in self.values:
            return None
        value = self.values[key]
        # TOML booleans are Python ints too; an integer key must not accept true.
        if isinstance(value, bool) and bool not in kinds:
            value_ok = False
        else:
            value_ok = isinstance(value, kinds)
        if not value_ok:
            self.problem(key, f"expected {expected}, got {kind_of(value)}")
            return None
        return value

    def string(
        self, key: str, *, required: bool = False, default: str | None = None,
        expand: bool = False, allow_empty: bool = False,
    ) -> str | None:
        """The string at ``key``; with ``allow_empty``, an empty value is None, not a problem
        (so ``${VARIABLE:-}`` can leave an optional key unset)."""
        if required and key not in self.values:
            self.problem(key, "missing (required)")
            return None
        value: str | None = self.typed(key, (str,), "a string")
        if value is None:
            return default if key not in self.values else None
        if expand:
            value = self._expand(key, value)
            if value is None:
                return None
        if not value.strip():
            if allow_empty:
                return None
            self.problem(key, "must not be empty")
            return None
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value: bool | None = self.typed(key, (bool,), "true or false")
        return default if value is None else value

    def integer(self, key: str, *, minimum: int, default: int | None = None) -> int | None:
        value: int | None = self.typed(key, (int,), "an integer")
        if value is None:
            return default if key not in self.values else None
        if value < minimum:
            self.problem(key, "must be > 0" if minimum == 1 else f"must be >= {minimum}")
            return None
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, default: str | None) -> str | None:
        value = self.string(key)
        if value is None:
            return default if key not in self.values else None
        if value not in choices:
            self.problem(key, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def _expand(self, key: str, text: str) -> str | None:
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value is None or (value == "" and match.group(2) is not None):
                if match.group(2) is None:
                    missing.append(match.group(1))
                    return ""
                return match.group(2)
            return value

        expanded = _VARIABLE.sub(substitute, text)
        if missing:
            self.problem(key, f"environment variable {', '.join(missing)} is not set (write "
                         "${NAME:-default} to give a default)")
            return None
        return expanded


def unknown(path: str, known: list[str], what: str) -> str:
    leaf = path.rpartition(".")[2]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (expected one of {', '.join(known)})"
    return f"{path}: unknown {what}{hint}"


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (dt.datetime, "a date-time"),
    (dt.date, "a date"),
    (dt.time, "a time"),
    (list, "a list"),
    (dict, "a table"),
)


def kind_of(value: object) -> str:
    return next((name for kind, name in _KINDS if isinstance(value, kind)), "a value")


"""Reading one JSON object of crdb-archive.json field by field, each checked for its type.

Every problem is one line naming the key by its path (``backup.files: expected an integer,
found a string``) and raises :class:`~crdb_archive.errors.DamagedBundle`: a description is
read from a bundle, and one that does not say what the format says is damage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar

from crdb_archive import __version__
from crdb_archive.bundle.layout import DESCRIPTION
from crdb_archive.errors import DamagedBundle

T = TypeVar("T")

FORMAT = "crdb-archive-bundle"
# What every description this crdb-archive writes names as its writer.
SOFTWARE = f"crdb-archive {__version__}"

_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
    (list, "an array"), (dict, "an object"), (type(None), "null"),
)


def json_type(value: object) -> str:
    """The JSON type of ``value`` in words (``an integer``), for messages."""
    return next((words for kind, words in _JSON_TYPES if isinstance(value, kind)), "a value")


def damaged(path: str, problem: str) -> DamagedBundle:
    """The one-line error for ``path`` (a key path such as ``backup.files``)."""
    return DamagedBundle(f"{DESCRIPTION}: {path}: {problem}")


class Fields:
    """One object of the description: typed getters that say where a value is wrong.

    Each getter raises DamagedBundle for a missing key (unless it has a default) or a value
    of the wrong type; :meth:`done` raises it for a key the format does not define.
    """

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, dict):
            raise damaged(path or "(top level)", f"expected an object, found {json_type(data)}")
        self.data: Mapping[str, object] = data
        self.path = path
        self._seen: set[str] = set()

    def where(self, key: str) -> str:
        """The key's path from the top of the description."""
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        """Whether the object holds ``key`` (an optional key of older bundles)."""
        self._seen.add(key)
        return key in self.data

    def _get(self, key: str) -> object:
        self._seen.add(key)
        if key not in self.data:
            raise damaged(self.where(key), "missing")
        return self.data[key]

    def _typed(self, key: str, kind: type[T], words: str) -> T:
        return self._check(key, self._get(key), kind, words)

    def _nullable(self, key: str, kind: type[T], words: str) -> T | None:
        value = self._get(key)
        return None if value is None else self._check(key, value, kind, f"{words} or null")

    def _check(self, key: str, value: object, kind: type[T], words: str) -> T:
        # bool is an int in Python, never in JSON
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        raise damaged(self.where(key), f"expected {words}, found {json_type(value)}")

    def text(self, key: str) -> str:
        return self._typed(key, str, "a string")

    def text_or_none(self, key: str) -> str | None:
        return self._nullable(key, str, "a string")

    def matching(self, key: str, pattern: re.Pattern[str], words: str) -> str:
        """A string of the form ``pattern`` (the schema's own), described as ``words``."""
        value = self.text(key)
        if pattern.fullmatch(value) is None:
            raise damaged(self.where(key), f"expected {words}, found {value!r}")
        return value

    def count(self, key: str) -> int:
        """A non-negative integer."""
        value = self._typed(key, int, "an integer")
        if value < 0:
            raise damaged(self.where(key), f"expected a count, found {value}")
        return value

    def integer_or_none(self, key: str) -> int | None:
        return self._nullable(key, int, "an integer")

    def flag(self, key: str) -> bool:
        return self._typed(key, bool, "a boolean")

    def flag_or_none(self, key: str) -> bool | None:
        return self._nullable(key, bool, "a boolean")

    def choice(self, key: str, allowed: tuple[str | None, ...]) -> str | None:
        """One of ``allowed`` (which may include None, JSON's null)."""
        value = self._get(key)
        if value in allowed and (value is None or isinstance(value, str)):
            return value
        shown = ", ".join("null" if a is None else a for a in allowed)
        raise damaged(self.where(key), f"expected one of {shown}, found {value!r}")

    def texts(self, key: str) -> tuple[str, ...]:
        """An array of strings."""
        items: list[object] = self._typed(key, list, "an array")
        texts = []
        for n, item in enumerate(items):
            if not isinstance(item, str):
                raise damaged(f"{self.where(key)}[{n}]",
                              f"expected a string, found {json_type(item)}")
            texts.append(item)
        return tuple(texts)

    def objects(self, key: str, read: Callable[[Fields], T]) -> tuple[T, ...]:
        """An array of objects, each read by ``read``."""
        items: list[object] = self._typed(key, list, "an array")
        return tuple(_read_done(Fields(item, f"{self.where(key)}[{n}]"), read)
                     for n, item in enumerate(items))

    def object(self, key: str, read: Callable[[Fields], T]) -> T:
        """An object, read by ``read``."""
        return _read_done(Fields(self._get(key), self.where(key)), read)

    def object_or_none(self, key: str, read: Callable[[Fields], T]) -> T | None:
        value = self._get(key)
        return None if value is None else _read_done(Fields(value, self.where(key)), read)

    def keyed(self, key: str, read: Callable[[str, Fields], T]) -> tuple[T, ...]:
        """An object whose members are each read by ``read(member name, its object)``."""
        members = Fields(self._get(key), self.where(key))
        out = []
        for name, value in members.data.items():
            fields = Fields(value, f"{members.path}.{name}")
            out.append(read(name, fields))
            fields.done()
        return tuple(out)

    def done(self) -> None:
        """Raises DamagedBundle for a key no getter asked for: the format has no such key."""
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise damaged(self.where(unknown[0]), "not a key of the format")


def _read_done(fields: Fields, read: Callable[[Fields], T]) -> T:
    value = read(fields)
    fields.done()
    return value

"""Numbers as people read them: counted nouns and sizes."""

from __future__ import annotations

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 bundle``, ``2 bundles``; ``plural`` for nouns that do not just take an s."""
    word = noun if number == 1 else (plural or f"{noun}s")
    return f"{number:,} {word}"


def size(octets: int) -> str:
    """``573 MiB``: binary units, three significant digits; exact below 1 KiB, and a whole
    number of units (a limit such as ``64 KiB``) without decimals."""
    if octets < 1024:
        return count(octets, "byte")
    value = float(octets)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    digits = 0 if value >= 100 or value.is_integer() else (1 if value >= 10 else 2)
    return f"{value:.{digits}f} {_UNITS[unit]}"


def exact(octets: int) -> str:
    """``1,234,567 bytes``: for sizes whose every digit matters (a mismatch, a position)."""
    return count(octets, "byte")


def files(number: int, octets: int) -> str:
    """``1.2 GiB in 12 files``: how much a set of files holds."""
    return f"{size(octets)} in {count(number, 'file')}"

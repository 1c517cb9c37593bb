"""The keys of a job spec that make its bundles trustworthy over time: ``destination.sign_key``
and the ``[audit]`` table. Read like the rest of the spec (spec.py): every mistake recorded
with its key path, nothing raised."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crdb_archive.errors import CrdbArchiveError
from crdb_archive.jobs.audit import Budget, parse_size
from crdb_archive.jobs.spec_table import SpecTable

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners, SigningKey

# A path, never the key itself: see the CLI's --sign-key.
SIGN_KEY_ENV = "CRDB_ARCHIVE_SIGN_KEY"
AUDIT_KEYS = ("enabled", "max_bundles", "max_bytes", "allowed_signers")


@dataclass(frozen=True)
class AuditSpec:
    """``[audit]``: after retention, a run audits the destination within this budget."""

    budget: Budget
    allowed_signers: AllowedSigners | None = None
    allowed_signers_file: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.budget.to_json(),
                "allowed_signers": (str(self.allowed_signers_file)
                                    if self.allowed_signers_file else None)}


def signing_key(table: SpecTable, base: Path) -> SigningKey | None:
    """``destination.sign_key`` (relative to the spec), else the file $CRDB_ARCHIVE_SIGN_KEY
    names; loaded now, so that a bad key stops the run before anything is written."""
    text = table.string("sign_key", expand=True)
    given = f"${SIGN_KEY_ENV}: " if text is None else ""
    if text is None and "sign_key" not in table.values:
        text = os.environ.get(SIGN_KEY_ENV) or None
    if text is None:
        return None
    from crdb_archive.bundle.signature import load_signing_key  # noqa: PLC0415

    try:
        return load_signing_key(base / text)
    except CrdbArchiveError as error:
        table.problem("sign_key", f"{given}{error}")
        return None


def audit_spec(table: SpecTable, base: Path, *, present: bool) -> AuditSpec | None:
    """The ``[audit]`` table; None when it is absent or ``enabled = false``."""
    if not present:
        return None
    enabled = table.boolean("enabled", default=True)
    max_bundles = table.integer("max_bundles", minimum=1)
    max_bytes = _max_bytes(table)
    allowed, allowed_file = _allowed_signers(table, base)
    if not enabled:
        return None
    return AuditSpec(Budget(max_bundles, max_bytes), allowed, allowed_file)


def _max_bytes(table: SpecTable) -> int | None:
    value = table.typed("max_bytes", (int, str), "a size in bytes, or a string like \"50GiB\"")
    if value is None:
        return None
    if isinstance(value, int):
        if value < 1:
            table.problem("max_bytes", "must be > 0")
            return None
        return value
    try:
        return parse_size(value)
    except CrdbArchiveError as error:
        table.problem("max_bytes", str(error))
        return None


def _allowed_signers(table: SpecTable, base: Path
                     ) -> tuple[AllowedSigners | None, Path | None]:
    text = table.string("allowed_signers", expand=True)
    if text is None:
        return None, None
    from crdb_archive.bundle.signature import AllowedSigners  # noqa: PLC0415

    path = base / text
    try:
        allowed = AllowedSigners.load(path)
    except CrdbArchiveError as error:
        table.problem("allowed_signers", str(error))
        return None, None
    if not allowed.signers:
        table.problem("allowed_signers", f"{path} lists no ssh-ed25519 key: no bundle "
                      "signature could be accepted")
        return None, None
    return allowed, path

"""Verify several bundles in one command: each reported, the most severe outcome decides.

A bundle that cannot be checked (its storage fails, it is not a bundle, it waits in cold
storage) does not stop the others; it is reported with its error, and counts in the exit code
as that error would alone. An interrupt stops everything, as always.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crdb_archive.bundle.verify import VerifyReport, verify_bundle
from crdb_archive.errors import CrdbArchiveError, ExitCode, most_severe
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.uri import redact

if TYPE_CHECKING:
    from crdb_archive.backup.keys import EncryptionKeys
    from crdb_archive.bundle.signature import AllowedSigners


@dataclass(frozen=True)
class Outcome:
    """One bundle's verification: its report, or the error that left it unchecked."""

    target: str
    report: VerifyReport | None
    error: CrdbArchiveError | None = None

    @property
    def exit_code(self) -> ExitCode:
        if self.error is not None:
            return self.error.exit_code
        return ExitCode.OK if self.report is not None and self.report.ok else ExitCode.NO

    def to_json(self) -> dict[str, Any]:
        if self.report is not None:
            return self.report.to_json()
        return {"bundle": redact(self.target), "ok": False, "checked": False,
                "error": str(self.error), "exit_code": int(self.exit_code)}


@dataclass(frozen=True)
class ManyReport:
    outcomes: list[Outcome]

    @property
    def exit_code(self) -> ExitCode:
        return most_severe([o.exit_code for o in self.outcomes])

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "checked": sum(o.report is not None for o in self.outcomes),
            "damaged": sum(o.exit_code == ExitCode.NO for o in self.outcomes),
            "unchecked": sum(o.report is None for o in self.outcomes),
            "bundles": [o.to_json() for o in self.outcomes],
        }


def verify_bundles(
    targets: Sequence[str],
    *,
    fast: bool = False,
    all_digests: bool = False,
    endpoint_url: str | None = None,
    progress: ProgressCallback = no_progress,
    decrypt_check: bool = False,
    keys: EncryptionKeys | None = None,
    allowed: AllowedSigners | None = None,
) -> ManyReport:
    """Verify each of ``targets`` as :func:`verify_bundle` does, collecting what it raises."""
    outcomes = []
    for target in targets:
        try:
            report = verify_bundle(target, fast=fast, all_digests=all_digests,
                                   endpoint_url=endpoint_url, progress=progress,
                                   decrypt_check=decrypt_check, keys=keys, allowed=allowed)
        except CrdbArchiveError as error:
            outcomes.append(Outcome(target, None, error))
        else:
            outcomes.append(Outcome(target, report))
    return ManyReport(outcomes)

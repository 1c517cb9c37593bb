"""How Azure stores what we write: access tiers, rehydration, version-level immutability.

``--storage-class`` names an access tier as Azure spells it (Hot, Cool, Cold, Archive). A blob
in the Archive tier cannot be read until it is rehydrated to an online tier: ``restore-request``
moves it to Hot (for good; set it back to Archive when done), at Standard priority for the
``Standard`` and ``Bulk`` tiers of the command and at High priority for ``Expedited``.

Object Lock retention maps onto version-level immutability policies: GOVERNANCE onto an
unlocked policy (which an account owner may shorten or remove), COMPLIANCE onto a locked one
(which nobody can shorten or remove before it expires). The container must have version-level
immutability support enabled.
"""

from __future__ import annotations

from crdb_archive.errors import BadInput
from crdb_archive.storage.base import LockMode, RestoreState, WriteOptions
from crdb_archive.storage.lock_options import check_lock

TIERS = ("Hot", "Cool", "Cold", "Archive")
ARCHIVE = "Archive"
REHYDRATE_TO = "Hot"
# restore-request's tiers (S3's words) as rehydration priorities.
PRIORITIES = {"Standard": "Standard", "Bulk": "Standard", "Expedited": "High"}
POLICY_MODES: dict[LockMode, str] = {"GOVERNANCE": "Unlocked", "COMPLIANCE": "Locked"}
LOCK_MODES: dict[str, LockMode] = {"unlocked": "GOVERNANCE", "locked": "COMPLIANCE"}
_ZONE_REDUNDANT = ("ZRS", "GZRS", "RAGZRS")


def validate_options(options: WriteOptions, where: str) -> None:
    """Checks that need no request: a known tier, lock mode and date given together.

    Raises BadInput.
    """
    if options.storage_class is not None and options.storage_class not in TIERS:
        raise BadInput(f"{where}: unknown Azure access tier {options.storage_class!r} "
                       f"(expected one of {', '.join(TIERS)})")
    check_lock(options, where, lock="an immutability policy", mode="lock mode")


def tier_problem(tier: str, account: str, sku: str | None, kind: str | None) -> str | None:
    """Why the account cannot store blobs in ``tier``, from its SKU and kind; None when it
    can (or when the account's answer does not tell)."""
    if (sku or "").startswith("Premium") or kind in ("BlockBlobStorage", "FileStorage"):
        return (f"storage account {account} is a premium account ({sku or kind}), which has "
                f"no access tiers: {tier} cannot be set")
    if kind == "Storage":
        return (f"storage account {account} is general-purpose v1, which has no access tiers: "
                f"{tier} needs a general-purpose v2 account")
    if tier == ARCHIVE and (sku or "").rpartition("_")[2] in _ZONE_REDUNDANT:
        return (f"storage account {account} is zone-redundant ({sku}), which has no Archive "
                "tier")
    return None


def restore_state(tier: str | None, archive_status: str | None) -> RestoreState:
    """Whether a blob must be rehydrated before reading, from its tier and archive status."""
    if tier != ARCHIVE:
        return "not-needed"
    if archive_status and archive_status.startswith("rehydrate-pending"):
        return "in-progress"
    return "needed"

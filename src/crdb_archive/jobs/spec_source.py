"""The [source] section of a job spec: which backups or which export output, and its keys."""

from __future__ import annotations

from pathlib import Path

from crdb_archive.backup.keys import NO_KEYS, PASSPHRASE_ENV, EncryptionKeys, load_keys
from crdb_archive.errors import CrdbArchiveError
from crdb_archive.export.hlc import Hlc
from crdb_archive.jobs.spec_model import ExportSpec, IncrementalPolicy
from crdb_archive.jobs.spec_table import SpecTable, kind_of
from crdb_archive.sources import KindChoice
from crdb_archive.storage.kms import KmsUri

INCREMENTAL_POLICIES: tuple[IncrementalPolicy, ...] = ("none", "growing", "closed")


def read_incrementals(source: SpecTable) -> IncrementalPolicy:
    """source.incrementals, or the older source.with_incrementals (true meaning "growing")."""
    if "incrementals" in source.values and "with_incrementals" in source.values:
        source.problem("with_incrementals", "give incrementals alone (with_incrementals = "
                       "true is the older spelling of incrementals = \"growing\")")
        return "none"
    if "with_incrementals" in source.values:
        return "growing" if source.boolean("with_incrementals", default=False) else "none"
    text = source.choice("incrementals", INCREMENTAL_POLICIES, default="none") or "none"
    return next((p for p in INCREMENTAL_POLICIES if p == text), "none")


def read_export(source: SpecTable, kind: KindChoice, base: Path) -> ExportSpec | None:
    """The export keys of [source]: required schema for ``export``, refused for ``backup``."""
    keys = ("schema", "as_of", "allow_gaps", "table")
    if kind == "backup":
        for key in keys:
            if key in source.values:
                source.problem(key, "applies to changefeed and EXPORT output, not to "
                               "source.kind = \"backup\"")
        return None
    schema = source.string("schema", required=kind == "export", expand=True)
    as_of = source.string("as_of", default="latest") or "latest"
    if as_of != "latest":
        try:
            Hlc.parse_user(as_of)
        except ValueError:
            source.problem("as_of", f"{as_of!r} is neither latest nor an HLC timestamp "
                           "(<wall nanos>.<logical>, or the 33 digits of a RESOLVED file name)")
    allow_gaps = source.boolean("allow_gaps", default=False)
    table = source.string("table")
    if schema is None:
        if kind == "auto" and any(key in source.values for key in keys[1:]):
            source.problem("schema", "missing: as_of, allow_gaps and table are for changefeed "
                           "and EXPORT output, which needs its schema file")
        return None
    return ExportSpec(base / schema, as_of, allow_gaps, table)


def read_encryption_keys(table: SpecTable, base: Path) -> EncryptionKeys:
    """The key of encrypted backups: a passphrase file (relative to the spec) or the
    environment's passphrase, or KMS URIs (one or a list), never both."""
    passphrase_file = table.string("encryption_passphrase_file", expand=True)
    value = table.typed("kms", (list, str), "a KMS URI or a list of KMS URIs")
    items = [value] if isinstance(value, str) else list(value or [])
    kms: list[KmsUri] = []
    for i, item in enumerate(items):
        where = f"kms[{i}]" if isinstance(value, list) else "kms"
        if not isinstance(item, str):
            table.problem(where, f"expected a KMS URI, got {kind_of(item)}")
            continue
        text = table._expand(where, item)  # the table's own ${NAME} rules
        if text is None:
            continue
        try:
            kms += load_keys(kms=[text], environ={}, command_line=False).kms
        except CrdbArchiveError as error:
            table.problem(where, str(error))
    try:
        keys = load_keys(passphrase_file=base / passphrase_file if passphrase_file else None)
    except CrdbArchiveError as error:
        table.problem("encryption_passphrase_file", str(error))
        keys = NO_KEYS
    if keys.passphrase is not None and kms:
        given = ("encryption_passphrase_file" if passphrase_file
                 else f"${PASSPHRASE_ENV} in the environment")
        table.problem("kms", f"both a passphrase ({given}) and KMS keys are given: a backup is "
                      "encrypted one way, so give one of them")
    return EncryptionKeys(keys.passphrase, keys.passphrase_source, tuple(kms))

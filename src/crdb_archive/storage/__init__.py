"""Where backups are read from and bundles written to; URIs and the redaction of secrets."""

from crdb_archive.storage.base import (
    ObjectInfo,
    ObjectWriter,
    Prefix,
    RestoreRequestState,
    RestoreState,
    Storage,
    Versioned,
    WriteOptions,
    open_location,
    open_object,
    open_storage,
    validate_key,
)
from crdb_archive.storage.capabilities import (
    ColdStorage,
    LocalPaths,
    PublishCheck,
    RetentionLock,
    Staging,
)

__all__ = [
    "ColdStorage",
    "LocalPaths",
    "ObjectInfo",
    "ObjectWriter",
    "Prefix",
    "PublishCheck",
    "RestoreRequestState",
    "RestoreState",
    "RetentionLock",
    "Staging",
    "Storage",
    "Versioned",
    "WriteOptions",
    "open_location",
    "open_object",
    "open_storage",
    "validate_key",
]

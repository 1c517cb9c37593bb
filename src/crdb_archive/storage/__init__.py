"""Where backups are read from and bundles written to; URIs and the redaction of secrets."""

from crdb_archive.storage.base import (
    ObjectInfo,
    ObjectWriter,
    RestoreRequestState,
    RestoreState,
    Storage,
    WriteOptions,
    open_location,
    open_object,
    open_storage,
    validate_key,
)

__all__ = [
    "ObjectInfo",
    "ObjectWriter",
    "RestoreRequestState",
    "RestoreState",
    "Storage",
    "WriteOptions",
    "open_location",
    "open_object",
    "open_storage",
    "validate_key",
]

"""Read a CockroachDB backup: find it, decode its manifest, tell the version that took it.

The public surface: :func:`inspect_backup` for a backup directory or collection on disk or in
object storage (``s3://``), and :func:`decode_manifest` for the bytes of one manifest.
"""

from crdb_archive.backup.info import (
    ENCRYPTED_WARNING,
    BackupInfo,
    assess_versions,
    inspect_backup,
    rfc3339,
)
from crdb_archive.backup.layout import BackupFile, FullBackup
from crdb_archive.backup.manifest import (
    MANIFEST_NAMES,
    ManifestInfo,
    decode_manifest,
)
from crdb_archive.backup.manifest_file import read_manifest, read_manifest_in

__all__ = [
    "ENCRYPTED_WARNING",
    "MANIFEST_NAMES",
    "BackupFile",
    "BackupInfo",
    "FullBackup",
    "ManifestInfo",
    "assess_versions",
    "decode_manifest",
    "inspect_backup",
    "read_manifest",
    "read_manifest_in",
    "rfc3339",
]

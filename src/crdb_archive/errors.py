"""The one error hierarchy of crdb-archive.

Every failure the core reports is a subclass of :class:`CrdbArchiveError`. Each subclass fixes
its exit code, so the CLI maps an error to a code in one place:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     ok
1     a "no" answer: a bundle is damaged or incomplete, a checksum does not
      match, versions are incompatible
2     bad input or usage: an unknown version, not a backup, a wrong flag
3     the world failed: network, storage, permissions
130   interrupted (:class:`Interrupted`, deliberately outside the hierarchy)
====  ==========================================================================

:class:`Interrupted` is not a :class:`CrdbArchiveError`, nor even an :class:`Exception`: code
that turns ordinary errors into data (a backup recorded as unreadable, a failed step in a job's
report) must never swallow a stop. Cleanup runs in ``finally``; only ``cli.main`` reports it.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from crdb_archive.text import count


class ExitCode(enum.IntEnum):
    OK = 0
    NO = 1
    BAD_INPUT = 2
    WORLD = 3
    INTERRUPTED = 130


# When several steps fail, the most severe answer wins: damage (1) above the world failing (3)
# above bad input (2), so that a damaged archive is never hidden behind a network error.
_SEVERITY = {ExitCode.OK: 0, ExitCode.BAD_INPUT: 1, ExitCode.WORLD: 2, ExitCode.NO: 3}


def most_severe(codes: list[ExitCode]) -> ExitCode:
    """The exit code of several outcomes: 1, then 3, then 2, else 0."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 2), default=ExitCode.OK)


class CrdbArchiveError(Exception):
    """Root of every error crdb-archive raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.WORLD

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- exit code 1: a "no" answer -----------------------------------------------------------


class NegativeAnswer(CrdbArchiveError):
    """The question had an answer, and it is no."""

    exit_code = ExitCode.NO


class NotRestorable(NegativeAnswer):
    """A backup cannot be restored into the requested version."""


class IntegrityError(NegativeAnswer):
    """Data does not match the digest it must match."""


class ChecksumMismatch(IntegrityError):
    """A downloaded or stored archive differs from its published SHA-256."""


class DamagedManifest(IntegrityError):
    """A backup manifest does not match its -CHECKSUM file."""


class DamagedBundle(IntegrityError):
    """A bundle failed verification."""


class UntrustedSignature(IntegrityError):
    """A bundle is not signed by a key the given allowed signers list (or not validly)."""


class PlatformMissing(NegativeAnswer):
    """A bundle does not hold the binary for the requested platform."""


class MalformedChecksumFile(IntegrityError):
    """A published .sha256sum file that does not vouch for its archive in the official form."""


class NotAReleaseArchive(IntegrityError):
    """A fetched file that cannot be an official release archive (corrupt, wrong layout,
    hostile members), whatever checksum a mirror published for it."""


class MalformedExportData(NegativeAnswer):
    """Changefeed or EXPORT output that is damaged: a name that does not parse, a broken line,
    a value that is not of its column's type, a duplicate key in an EXPORT."""


class IncompleteExport(NegativeAnswer):
    """Changefeed output with a lost file: a gap in the file ids of one sink."""


class DamagedEncryptedFile(IntegrityError):
    """An encrypted backup file that fails AES-GCM authentication where the key is known to be
    right, or that is cut short (even at a chunk boundary). ``reason`` is header, version,
    tag or truncated; ``chunk`` the message that failed. A failure of the first message
    (``key_unproven``) may also mean a wrong key: the caller decides which it is."""

    def __init__(self, message: str, *, reason: str, chunk: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.chunk = chunk

    @property
    def key_unproven(self) -> bool:
        return self.reason == "tag" and self.chunk == 0


class DamagedEncryptionInfo(IntegrityError):
    """An ENCRYPTION-INFO file that is missing from an encrypted backup, cannot be decoded, or
    holds a data key that is not a 256-bit key."""


class RowCountMismatch(IntegrityError):
    """A table loaded from an export bundle does not hold the rows the bundle records."""


# --- exit code 2: bad input -----------------------------------------------------------------


class BadInput(CrdbArchiveError):
    """The user gave something the tool cannot work with."""

    exit_code = ExitCode.BAD_INPUT


class InvalidVersion(BadInput):
    """A string is not a CockroachDB release or major version."""


class UnknownVersion(BadInput):
    """A well-formed version that the embedded release index does not know."""


class UnknownPlatform(BadInput):
    """A platform name that does not exist, or that a release never shipped."""


class NotABackup(BadInput):
    """A path that holds no CockroachDB backup."""


class NotABundle(BadInput):
    """A path that holds no crdb-archive bundle."""


class MalformedManifest(BadInput):
    """A backup manifest that cannot be decoded (truncated, garbage, unknown framing)."""


class EncryptedBackup(BadInput):
    """An encrypted backup whose version must be given by the user."""


class WrongEncryptionKey(BadInput):
    """A key that does not open an encrypted backup: a passphrase that does not decrypt its
    manifest, KMS keys that none of its ENCRYPTION-INFO entries was wrapped with."""


class VersionConflict(BadInput):
    """The version given by the user differs from the one the backup records."""


class UnsafeArchive(BadInput):
    """A release archive with members that would escape the extraction directory."""


class BadReleaseArchive(BadInput):
    """A release archive that is corrupt or lacks the official layout (a folder with cockroach)."""


class UnsupportedBackupFile(BadInput):
    """A backup holds something other than regular files and directories (a link, a device)."""


class UnrecognisedExportSource(BadInput):
    """A tree that is neither changefeed nor EXPORT output, or holds both, or more than one
    format; the message names what was found."""


class UnrecognisedSource(BadInput):
    """A location that holds neither a backup nor changefeed or EXPORT output, or both; the
    message names what was found."""


class UnsupportedExport(BadInput):
    """Export output that cannot give what was asked: an ndjson feed without timestamps asked
    for a point in time, a topic the schema does not know, a delete that cannot be keyed."""


class InvalidAsOf(BadInput):
    """An --as-of that is not an HLC timestamp, or not one of the feed's resolved timestamps."""


class InvalidJobSpec(BadInput):
    """A job spec with mistakes; ``problems`` holds every one, each led by its key path."""

    def __init__(self, spec: str, problems: list[str]) -> None:
        super().__init__(f"{spec}: {count(len(problems), 'problem')}: " + "; ".join(problems))
        self.spec = spec
        self.problems = problems


class InvalidSchema(BadInput):
    """A schema file (SHOW CREATE ALL TABLES output) that cannot be parsed or translated."""


class TableExists(BadInput):
    """A table an export would create already exists, and replacing it was not asked for."""


class RejectedByDatabase(BadInput):
    """PostgreSQL refused a statement or the data of an export (its message says why)."""


# --- exit code 3: the world failed ---------------------------------------------------------


class WorldFailure(CrdbArchiveError):
    """Something outside the tool failed: network, storage, permissions."""

    exit_code = ExitCode.WORLD


class NetworkError(WorldFailure):
    """A download failed after its retries."""


class NotFoundOnMirror(NetworkError):
    """The mirror does not have the requested file (HTTP 404 or missing file)."""


class StorageError(WorldFailure):
    """Reading or writing local or object storage failed."""


class NeedsRestoreFromColdStorage(StorageError):
    """Objects sit in an archive storage class and must be restored before reading."""


class ObjectNotFound(StorageError):
    """A storage holds no object under the requested key."""


class ConditionFailed(StorageError):
    """A conditional write or delete found the object other than the caller last read it: it
    exists where it was to be created, or another writer changed or removed it since."""


class KeyServiceError(WorldFailure):
    """A key management service (AWS KMS) cannot be reached, or refuses the credentials."""


class DatabaseUnavailable(WorldFailure):
    """A PostgreSQL server cannot be reached, refuses the login, or fails while loading."""


class JobAlreadyRunning(WorldFailure):
    """Another run of the same archive job holds its lock."""


class JobLockLost(WorldFailure):
    """A run can no longer show that it holds its job lock, so it must stop changing things."""


# --- exit code 130 -----------------------------------------------------------------------------


class Interrupted(BaseException):
    """The command was stopped by SIGINT or SIGTERM; ``finally`` blocks clean up on the way out.

    A BaseException, like KeyboardInterrupt: ``except CrdbArchiveError`` and ``except Exception``
    (ours, and those with which boto3 and requests handle transport failures) let it pass.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.INTERRUPTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

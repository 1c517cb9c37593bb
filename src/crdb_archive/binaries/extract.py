"""Safe extraction of a release archive (.tgz or .zip) into a directory.

The archive is read twice through one open handle: first every member is checked and nothing
is written (members.py: names, links, devices, sparse files, member count and size, the
official layout); then it is written into a hidden staging directory, member by member,
refused if anything differs from the first read. The top folder is moved into place at the
end, so a refused or broken archive leaves nothing behind.

Nothing the command did not create is removed or replaced: an existing folder of the
archive's top-folder name is refused, and ``replace`` removes only an earlier extraction of
the same archive, recognised by the marker file each extraction leaves in its folder and by
holding nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from crdb_archive.binaries.member_rules import (
    EXTRACTION_MARKER,
    ArchiveRefusal,
    Member,
    ReleaseLayout,
)
from crdb_archive.binaries.members import MemberVisitor, read_release_archive
from crdb_archive.binaries.staging import describe_os_error
from crdb_archive.errors import (
    BadInput,
    BadReleaseArchive,
    ChecksumMismatch,
    StorageError,
    UnsafeArchive,
)
from crdb_archive.hashing import CHUNK_SIZE, same_digest

# Left in every folder an extraction creates: what it was extracted from, so that only an
# earlier extraction of the same archive is ever replaced.
MARKER = EXTRACTION_MARKER
_MARKER_FORMAT = 1
_MAX_MARKER_SIZE = 4096
# An earlier extraction holds the archive's members and the marker; a folder with many more
# entries is not one, and is not walked to its end to find that out.
_MAX_EARLIER_ENTRIES = 1000


@dataclass(frozen=True)
class ExtractedBinary:
    """Where an extracted release archive put its ``cockroach`` executable."""

    root: Path
    cockroach: Path
    lib_dir: Path | None

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "cockroach": str(self.cockroach),
            "lib_dir": str(self.lib_dir) if self.lib_dir is not None else None,
        }


def require_directory(path: Path) -> None:
    """Raise BadInput when ``path`` exists and is not a directory (nothing can go in it)."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"{path} is not a directory")


def extract_archive(
    archive: Path, dest_dir: Path, *, replace: bool = False, sha256: str | None = None
) -> ExtractedBinary:
    """Extract ``archive`` into ``dest_dir/<its top folder>``, a folder that must not exist
    yet (with ``replace``: or hold an earlier extraction of this same archive).

    ``sha256``: what the archive's bytes must hash to (the digest the caller checked), so
    that what is extracted is what was verified.

    Raises UnsafeArchive for a member that could write outside ``dest_dir``, create a device,
    or unpack to more than an official archive can (exit 2); BadReleaseArchive for a corrupt
    archive or one without the official layout (exit 2); BadInput when ``dest_dir`` is not a
    directory or the target folder exists and may not be replaced (exit 2); ChecksumMismatch
    when the archive is not the one with ``sha256`` (exit 1); StorageError when ``dest_dir``
    cannot be written (exit 3). On failure nothing is left in ``dest_dir``.
    """
    require_directory(dest_dir)
    try:
        handle = archive.open("rb")
    except OSError as error:
        raise StorageError(f"cannot read {archive}: {describe_os_error(error)}") from None
    with handle:
        layout = _read(archive, handle)
        if sha256 is not None and not same_digest(layout.sha256, sha256):
            raise ChecksumMismatch(f"{archive} has SHA-256 {layout.sha256}, not the {sha256} "
                                   "it was checked against; nothing was extracted")
        target = dest_dir / layout.top
        earlier = _earlier_extraction(target, archive.name, layout, replace=replace)
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.extract-", dir=dest_dir))
        except OSError as error:
            raise StorageError(f"cannot write {dest_dir}: {describe_os_error(error)}") from None
        try:
            handle.seek(0)
            writer = _Writer(staging, archive)
            _read(archive, handle, visit=writer.write, expect=layout.members)
            top = staging / layout.top
            _write_marker(top, archive.name, layout)
            _put_in_place(top, target, staging if earlier else None)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    lib = target / "lib"
    return ExtractedBinary(
        root=target,
        cockroach=target / layout.executable,
        lib_dir=lib if lib.is_dir() and not lib.is_symlink() else None,
    )


def _read(archive: Path, handle: BinaryIO, *, visit: MemberVisitor | None = None,
          expect: tuple[Member, ...] | None = None) -> ReleaseLayout:
    try:
        return read_release_archive(handle, archive.name, visit=visit, expect=expect)
    except ArchiveRefusal as refusal:
        error = UnsafeArchive if refusal.unsafe else BadReleaseArchive
        raise error(f"{archive}: {refusal.reason}; refusing to extract") from None
    except OSError as error:
        raise StorageError(f"cannot read {archive}: {describe_os_error(error)}") from None


# --- an earlier extraction ----------------------------------------------------------------------


def _earlier_extraction(target: Path, name: str, layout: ReleaseLayout, *,
                        replace: bool) -> bool:
    """Whether ``target`` exists; raises BadInput unless it may be replaced."""
    try:
        found = os.lstat(target)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StorageError(f"cannot read {target}: {describe_os_error(error)}") from None
    if not replace:
        raise _exists(target, name)
    why = _not_replaceable(target, found, name, layout)
    if why is not None:
        raise BadInput(f"{target} already exists and {why}; it was left as it is")
    return True


def require_free_target(target: Path, archive_name: str) -> None:
    """Raise BadInput when ``target``, where ``archive_name`` would be extracted, exists: a
    check before work that extraction would refuse anyway."""
    if target.exists() or target.is_symlink():
        raise _exists(target, archive_name)


def _exists(target: Path, name: str) -> BadInput:
    return BadInput(f"{target} already exists; nothing was extracted (pass --replace to "
                    f"replace an earlier extraction of {name})")


def _not_replaceable(target: Path, found: os.stat_result, name: str,
                     layout: ReleaseLayout) -> str | None:
    """Why ``target`` is not an earlier extraction of this archive, or None if it is one."""
    if not stat.S_ISDIR(found.st_mode):
        return "is not a folder an extraction created"
    try:
        fd = os.open(target / MARKER, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as stream:
            record = json.loads(stream.read(_MAX_MARKER_SIZE))
    except (OSError, ValueError):
        return f"was not created by extracting {name} (it has no readable {MARKER})"
    if not (isinstance(record, dict) and record.get("archive") == name
            and isinstance(record.get("sha256"), str)
            and same_digest(record["sha256"], layout.sha256)):
        return f"was extracted from another archive than this {name}"
    expected = _extracted_paths(layout)
    for extra in _entries(target):
        if extra not in expected:
            return (f"holds {extra}, which the extraction did not write (move it out first "
                    "if the folder is to be replaced)")
    return None


def _extracted_paths(layout: ReleaseLayout) -> set[str]:
    """Every path an extraction of ``layout`` creates, relative to its top folder."""
    paths = {MARKER}
    for member in layout.members:
        parts = member.path.parts[1:]
        for depth in range(1, len(parts) + 1):
            paths.add("/".join(parts[:depth]))
    return paths


def _entries(root: Path) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(Path(folder, name).relative_to(root).as_posix())
            if len(found) > _MAX_EARLIER_ENTRIES:
                return found
    return found


# --- writing -----------------------------------------------------------------------------------


class _Writer:
    """Writes members into the staging directory as they stream by."""

    def __init__(self, staging: Path, archive: Path) -> None:
        self._staging = staging
        self._archive = archive

    def write(self, member: Member, data: IO[bytes] | None) -> None:
        if member.path == PurePosixPath("."):
            return
        target = self._staging.joinpath(*member.path.parts)
        try:
            if member.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.kind == "symlink":
                target.symlink_to(member.link or "")
            elif member.kind == "hardlink":
                source = self._staging.joinpath(*PurePosixPath(member.link or "").parts)
                shutil.copyfile(source, target, follow_symlinks=False)
                shutil.copymode(source, target)
            elif data is not None:
                _write_file(target, member, data)
        except OSError as error:
            raise StorageError(
                f"cannot extract {member.path} from {self._archive}: {describe_os_error(error)}"
            ) from None


def _write_file(target: Path, member: Member, data: IO[bytes]) -> None:
    # Only the permission bits a release needs: executable or not; no setuid, no world write.
    mode = 0o755 if member.mode & 0o100 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags | getattr(os, "O_BINARY", 0), mode)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := data.read(CHUNK_SIZE):
            written += len(chunk)
            if written > member.size:  # the header's size is what the rules admitted
                raise ArchiveRefusal(f"member {str(member.path)!r} is longer than its header "
                                     "says", unsafe=True)
            out.write(chunk)
    target.chmod(mode)
    os.utime(target, (member.mtime, member.mtime))


def _write_marker(top: Path, name: str, layout: ReleaseLayout) -> None:
    record = {"format": _MARKER_FORMAT, "archive": name, "sha256": layout.sha256}
    content = (json.dumps(record, indent=2) + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        with os.fdopen(os.open(top / MARKER, flags, 0o644), "wb") as out:
            out.write(content)
    except OSError as error:
        raise StorageError(f"cannot write {top / MARKER}: {describe_os_error(error)}") from None


def _put_in_place(top: Path, target: Path, set_aside: Path | None) -> None:
    """Move the extracted ``top`` to ``target``; with ``set_aside``, first move the earlier
    extraction there (it goes with the staging directory), and back if anything stops the
    move, an interrupt included."""
    earlier = set_aside / ".earlier" if set_aside is not None else None
    try:
        if earlier is not None:
            target.rename(earlier)
        # An empty folder of our own, then a rename onto it: never onto anything another
        # process put there meanwhile (rename replaces only an empty folder, and mkdir fails
        # on anything at all).
        target.mkdir()
        placed = False
        try:
            top.rename(target)
            placed = True
        finally:
            if not placed:
                with contextlib.suppress(OSError):
                    target.rmdir()
    except BaseException as error:
        if earlier is not None and earlier.exists() and not target.exists():
            with contextlib.suppress(OSError):
                earlier.rename(target)
        if isinstance(error, FileExistsError):
            raise BadInput(f"{target} appeared while extracting; it was left as it is") from None
        if isinstance(error, OSError):
            raise StorageError(f"cannot write {target}: {describe_os_error(error)}") from None
        raise

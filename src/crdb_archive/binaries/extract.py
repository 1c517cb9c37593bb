"""Safe extraction of a release archive (.tgz or .zip) into a directory.

Every member is checked before anything is written: absolute names, ``..``, links that point
outside the archive or through other links, writes through a link, and device files are
refused. Extraction happens in a hidden staging directory that is renamed into place at the
end, so a refused or broken archive leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from crdb_archive.binaries.staging import describe_os_error
from crdb_archive.errors import BadReleaseArchive, StorageError, UnsafeArchive
from crdb_archive.hashing import CHUNK_SIZE

MemberKind = Literal["dir", "file", "symlink", "hardlink"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_EXECUTABLES = ("cockroach", "cockroach.exe")


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


@dataclass(frozen=True)
class _Member:
    path: PurePosixPath
    kind: MemberKind
    mode: int
    mtime: float
    link: str | None  # a symlink's target, or the archive path a hard link repeats
    open: Callable[[], IO[bytes]] | None


def extract_archive(archive: Path, dest_dir: Path) -> ExtractedBinary:
    """Extract ``archive`` into ``dest_dir``, replacing an earlier extraction of it.

    Raises UnsafeArchive for a member that could write outside ``dest_dir`` or create a device,
    BadReleaseArchive for a corrupt archive or one without the official layout (one top folder
    holding ``cockroach``), and StorageError when ``dest_dir`` cannot be written. On failure
    nothing is left in ``dest_dir``.
    """
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.extract-", dir=dest_dir))
    except OSError as error:
        raise StorageError(f"cannot write {dest_dir}: {describe_os_error(error)}") from None
    try:
        with _open_members(archive) as members:
            _check(archive, members)
            for member in members:
                _write(staging, member, archive)
        top = _top_folder(archive, staging)
        staged = _binary_in(top)
        target = dest_dir / top.name
        try:
            if target.exists() or target.is_symlink():
                target.replace(staging / ".previous")
            top.replace(target)
        except OSError as error:
            raise StorageError(f"cannot write {target}: {describe_os_error(error)}") from None
        return ExtractedBinary(
            root=target,
            cockroach=target / staged.cockroach.name,
            lib_dir=target / "lib" if staged.lib_dir is not None else None,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- reading members ---------------------------------------------------------------------------


@contextlib.contextmanager
def _open_members(archive: Path) -> Iterator[list[_Member]]:
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zip_file:
                yield [_zip_member(zip_file, info, archive) for info in zip_file.infolist()]
        else:
            with tarfile.open(archive, "r:*") as tar:
                members = [_tar_member(tar, info, archive) for info in tar.getmembers()]
                _read_to_end(tar)
                yield members
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise BadReleaseArchive(f"{archive} is not a readable archive: {error}") from None
    except OSError as error:
        if isinstance(error, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise StorageError(f"cannot read {archive}: {describe_os_error(error)}") from None
        raise BadReleaseArchive(
            f"{archive} is not a readable archive: {describe_os_error(error)}"
        ) from None


def _read_to_end(tar: tarfile.TarFile) -> None:
    # gzip checks its CRC only at the end of the stream, and tarfile stops reading at the
    # end-of-archive marker before it: without this, a damaged byte would go unnoticed.
    if tar.fileobj is not None:
        while tar.fileobj.read(CHUNK_SIZE):
            pass


def _tar_member(tar: tarfile.TarFile, info: tarfile.TarInfo, archive: Path) -> _Member:
    path = _member_path(info.name, archive)
    kind: MemberKind
    if info.isdir():
        kind = "dir"
    elif info.isreg():
        kind = "file"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    else:
        raise UnsafeArchive(
            f"{archive}: member {info.name!r} is a device or special file; refusing to extract"
        )

    def opener() -> IO[bytes]:
        stream = tar.extractfile(info)
        if stream is None:  # pragma: no cover - only regular files are opened
            raise BadReleaseArchive(f"{archive}: cannot read member {info.name!r}")
        return stream

    link = info.linkname if kind in ("symlink", "hardlink") else None
    return _Member(path, kind, info.mode, float(info.mtime), link,
                   opener if kind == "file" else None)


def _zip_member(zip_file: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path) -> _Member:
    path = _member_path(info.filename, archive)
    mode = info.external_attr >> 16 if info.create_system == 3 else 0  # 3: made on Unix
    file_type = stat.S_IFMT(mode)
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(
            f"{archive}: member {info.filename!r} is a link or special file; release zip "
            "archives hold only files and folders"
        )
    kind: MemberKind = "dir" if info.is_dir() else "file"
    mtime = float(_zip_mtime(info))
    return _Member(path, kind, mode & 0o7777 or 0o644, mtime, None,
                   (lambda: zip_file.open(info)) if kind == "file" else None)


def _zip_mtime(info: zipfile.ZipInfo) -> int:
    try:
        return int(dt.datetime(*info.date_time).timestamp())
    except ValueError:
        return 0


def _member_path(name: str, archive: Path) -> PurePosixPath:
    reason = _unsafe_name(name)
    if reason is not None:
        raise UnsafeArchive(f"{archive}: member {name!r} {reason}")
    return PurePosixPath(name)


def _unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot be a path inside the extraction directory, or None."""
    if not name or "\x00" in name or "\\" in name:
        return "is not a plain relative path"
    if name.startswith("/") or _DRIVE.match(name):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "climbs out with '..'"
    return None


# --- checking ----------------------------------------------------------------------------------


def _check(archive: Path, members: list[_Member]) -> None:
    """Refuse the archive unless every member stays inside the extraction directory."""
    kinds: dict[PurePosixPath, MemberKind] = {}
    symlinks: dict[PurePosixPath, str] = {}
    for member in members:
        if member.path == PurePosixPath("."):
            if member.kind != "dir":
                raise UnsafeArchive(f"{archive}: a {member.kind} takes the place of the root")
            continue
        earlier = kinds.get(member.path)
        if earlier is not None and not (earlier == "dir" == member.kind):
            raise UnsafeArchive(f"{archive}: member {str(member.path)!r} appears twice")
        if member.kind == "hardlink":
            link = member.link or ""
            reason = _unsafe_name(link)
            if reason is not None:
                raise UnsafeArchive(
                    f"{archive}: hard link {str(member.path)!r} -> {link!r}: the target {reason}"
                )
            if kinds.get(PurePosixPath(link)) != "file":
                raise UnsafeArchive(
                    f"{archive}: hard link {str(member.path)!r} -> {member.link!r} does not "
                    "repeat a file earlier in the archive"
                )
        kinds[member.path] = member.kind
        if member.kind == "symlink":
            symlinks[member.path] = member.link or ""
    # Case-folded, because on a case-insensitive file system "Lib" and "lib/x" are one path.
    not_dirs = {str(p).casefold() for p, k in kinds.items() if k != "dir"}
    links = {str(p).casefold() for p, k in kinds.items() if k == "symlink"}
    for path in kinds:
        for parent in list(path.parents)[:-1]:
            if str(parent).casefold() in not_dirs:
                raise UnsafeArchive(
                    f"{archive}: member {str(path)!r} would be written through "
                    f"{str(parent)!r}, which is not a folder"
                )
    for path, target in symlinks.items():
        _check_symlink(archive, path, target, links)


def _check_symlink(archive: Path, path: PurePosixPath, target: str, links: set[str]) -> None:
    shown = f"{archive}: symlink {str(path)!r} -> {target!r}"
    if not target or target.startswith("/") or _DRIVE.match(target) or "\\" in target:
        raise UnsafeArchive(f"{shown} points to an absolute or unusable path")
    resolved = list(path.parent.parts) if path.parent != PurePosixPath(".") else []
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not resolved:
                raise UnsafeArchive(f"{shown} points outside the archive")
            resolved.pop()
        elif part != ".":
            resolved.append(part)
            if "/".join(resolved).casefold() in links:
                raise UnsafeArchive(f"{shown} goes through another symlink")


# --- writing -----------------------------------------------------------------------------------


def _write(staging: Path, member: _Member, archive: Path) -> None:
    target = staging.joinpath(*member.path.parts)
    try:
        if member.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if member.kind == "symlink":
            target.symlink_to(member.link or "")
        elif member.kind == "hardlink":
            source = staging.joinpath(*_member_path(member.link or "", archive).parts)
            shutil.copyfile(source, target, follow_symlinks=False)
            shutil.copymode(source, target)
        else:
            _write_file(target, member)
    except OSError as error:
        raise StorageError(
            f"cannot extract {member.path} from {archive}: {describe_os_error(error)}"
        ) from None


def _write_file(target: Path, member: _Member) -> None:
    if member.open is None:  # pragma: no cover - every file member has an opener
        raise BadReleaseArchive(f"cannot read member {member.path}")
    # Only the permission bits a release needs: executable or not; no setuid, no world write.
    mode = 0o755 if member.mode & 0o100 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags | getattr(os, "O_BINARY", 0), mode)
    with os.fdopen(fd, "wb") as out, member.open() as source:
        while chunk := source.read(CHUNK_SIZE):
            out.write(chunk)
    target.chmod(mode)
    os.utime(target, (member.mtime, member.mtime))


# --- the official layout -----------------------------------------------------------------------


def _top_folder(archive: Path, staging: Path) -> Path:
    entries = list(staging.iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
        raise BadReleaseArchive(
            f"{archive} does not have the official layout: expected one top folder"
        )
    return entries[0]


def _binary_in(root: Path) -> ExtractedBinary:
    for name in _EXECUTABLES:
        candidate = root / name
        if candidate.is_file() and not candidate.is_symlink():
            lib = root / "lib"
            lib_dir = lib if lib.is_dir() and not lib.is_symlink() else None
            return ExtractedBinary(root=root, cockroach=candidate, lib_dir=lib_dir)
    raise BadReleaseArchive(
        f"{root.name} does not hold a cockroach executable: not an official release archive"
    )

"""Stand-in release archives in the official layout, generated deterministically.

For the demo's offline mirror and for the tests: never CockroachDB, and never to be archived
beside a real backup.

A generated archive looks like the real one (DESIGN 2.2): one top folder named like the archive
without its extension, holding ``cockroach`` (``cockroach.exe`` on Windows) and, on Linux and
Intel macOS, ``lib/libgeos.so`` and ``lib/libgeos_c.so``. The ``cockroach`` here is a small
shell script that prints ``cockroach version`` output for its release. The file names and
suffixes are spelled out here independently of the code under test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import blake3

# Official file suffixes (binaries.cockroachdb.com), written out independently of the product.
SUFFIXES = {
    "linux-amd64": "linux-amd64.tgz",
    "linux-arm64": "linux-arm64.tgz",
    "linux-amd64-fips": "linux-amd64-fips.tgz",
    "darwin-amd64": "darwin-10.9-amd64.tgz",
    "darwin-arm64": "darwin-11.0-arm64.tgz",
    "windows-amd64": "windows-6.2-amd64.zip",
}

FIXED_MTIME = 1_696_204_800  # 2023-10-02T00:00:00Z: every member, so archives are reproducible
_ZIP_TIME = (2023, 10, 2, 0, 0, 0)
_WITH_LIB = ("linux-amd64", "linux-arm64", "linux-amd64-fips", "darwin-amd64")
DEFAULT_PADDING = 300_000  # incompressible bytes, so that a download spans many chunks


@dataclass(frozen=True)
class ReleaseFiles:
    """A generated archive, its published checksum file (if written) and its SHA-256."""

    archive: Path
    checksum_file: Path | None
    sha256: str

    @property
    def name(self) -> str:
        return self.archive.name


def file_name(release: str, platform: str) -> str:
    return f"cockroach-{release}.{SUFFIXES[platform]}"


def top_folder(release: str, platform: str) -> str:
    return file_name(release, platform).removesuffix(".tgz").removesuffix(".zip")


def cockroach_script(release: str, platform: str, *, build_tag: str | None = None,
                     sleep: float | None = None, marker: Path | None = None) -> bytes:
    """A ``cockroach`` stand-in: ``version`` prints realistic output, ``--build-tag`` the tag.

    With ``marker``, every run first appends a line to that file: proof that it was run.
    """
    tag = build_tag or release
    system, arch = platform.split("-")[:2]
    wait = f"exec sleep {sleep}\n" if sleep is not None else ""
    ran = f"echo \"ran: $*\" >> '{marker}'\n" if marker is not None else ""
    return f"""#!/bin/sh
{ran}{wait}if [ "$1" = "version" ]; then
  if [ "$2" = "--build-tag" ]; then
    echo "{tag}"
    exit 0
  fi
  cat <<'EOF'
Build Tag:        {tag}
Build Time:       2023/09/27 18:35:21
Distribution:     CCL
Platform:         {system} {arch} (x86_64-pc-{system}-gnu)
Go Version:       go1.19.13
C Compiler:       gcc 6.5.0
Build Commit ID:  0123456789abcdef0123456789abcdef01234567
Build Type:       release
EOF
  exit 0
fi
echo "this stand-in of cockroach only knows 'version'" >&2
exit 1
""".encode()


def padding(release: str, platform: str, size: int) -> bytes:
    """Deterministic incompressible bytes (BLAKE3 in extendable-output mode)."""
    return blake3.blake3(f"{release} {platform}".encode()).digest(length=size)


def build_archive(
    directory: Path,
    release: str,
    platform: str,
    *,
    build_tag: str | None = None,
    sleep: float | None = None,
    padding_size: int = DEFAULT_PADDING,
    checksum: bool = True,
    marker: Path | None = None,
    top: str | None = None,
) -> ReleaseFiles:
    """Write the archive (and its ``.sha256sum`` unless ``checksum`` is False) into directory.

    ``marker``: the stand-in ``cockroach`` records every run there. ``top``: another top
    folder than the official one (a hostile archive).
    """
    name = file_name(release, platform)
    top = top or top_folder(release, platform)
    script = cockroach_script(release, platform, build_tag=build_tag, sleep=sleep,
                              marker=marker)
    filler = padding(release, platform, padding_size)
    members: list[tuple[str, bytes, int]] = []
    if platform.startswith("windows"):
        members.append((f"{top}/cockroach.exe", script + filler, 0o755))
    else:
        members.append((f"{top}/cockroach", script, 0o755))
        if platform in _WITH_LIB:
            members.append((f"{top}/lib/libgeos.so", filler, 0o644))
            members.append((f"{top}/lib/libgeos_c.so", b"\x7fELF libgeos_c stand-in\n", 0o644))
        else:
            members.append((f"{top}/lib-padding.bin", filler, 0o644))
    path = directory / name
    path.write_bytes(_zip(top, members) if name.endswith(".zip") else _tgz(top, members))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    checksum_file = write_checksum_file(path, sha256) if checksum else None
    return ReleaseFiles(path, checksum_file, sha256)


def write_checksum_file(archive: Path, sha256: str, *, name: str | None = None) -> Path:
    """Write ``<archive>.sha256sum`` in the official form (optionally naming another file)."""
    target = archive.with_name(archive.name + ".sha256sum")
    target.write_bytes(f"{sha256}  {name or archive.name}\n".encode())
    return target


def publish(
    directory: Path, release: str, platforms: list[str], *, checksum: bool = True
) -> dict[str, ReleaseFiles]:
    """Build the archives of ``release`` for ``platforms`` into a mirror directory."""
    return {p: build_archive(directory, release, p, checksum=checksum) for p in platforms}


def _tgz(top: str, members: list[tuple[str, bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, tarfile.open(
        fileobj=gz, mode="w", format=tarfile.GNU_FORMAT
    ) as tar:
        for directory in sorted({top} | {m[0].rsplit("/", 1)[0] for m in members}):
            info = tarfile.TarInfo(directory + "/")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = FIXED_MTIME
            tar.addfile(info)
        for member_name, content, mode in members:
            info = tarfile.TarInfo(member_name)
            info.size = len(content)
            info.mode = mode
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _zip(top: str, members: list[tuple[str, bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        folder = zipfile.ZipInfo(top + "/", date_time=_ZIP_TIME)
        folder.external_attr = (0o40755 << 16) | 0x10
        archive.writestr(folder, b"")
        for member_name, content, mode in members:
            info = zipfile.ZipInfo(member_name, date_time=_ZIP_TIME)
            info.create_system = 3
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return raw.getvalue()

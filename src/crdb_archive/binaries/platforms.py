"""Platforms, archive names and the releases they exist for (DESIGN 2.2, the release index)."""

from __future__ import annotations

import platform as _platform
import sys

from crdb_archive.errors import InvalidVersion, UnknownPlatform, UnknownVersion
from crdb_archive.versions import Release, release_index

# Platform name -> suffix of the official file name, as binaries.cockroachdb.com spells it.
PLATFORMS: dict[str, str] = {
    "linux-amd64": "linux-amd64.tgz",
    "linux-arm64": "linux-arm64.tgz",
    "linux-amd64-fips": "linux-amd64-fips.tgz",
    "darwin-amd64": "darwin-10.9-amd64.tgz",
    "darwin-arm64": "darwin-11.0-arm64.tgz",
    "windows-amd64": "windows-6.2-amd64.zip",
}

DEFAULT_PLATFORM = "linux-amd64"

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def archive_name(release: str, platform: str) -> str:
    """The official file name, e.g. ``cockroach-v23.1.11.linux-amd64.tgz``.

    Raises UnknownPlatform for a platform name that does not exist.
    """
    return f"cockroach-{release}.{_suffix(platform)}"


def archive_stem(release: str, platform: str) -> str:
    """The archive name without its extension: the name of the archive's top folder."""
    name = archive_name(release, platform)
    return name.removesuffix(".tgz").removesuffix(".zip")


def host_platform() -> str | None:
    """The platform of this machine, or None when CockroachDB publishes no binary for it."""
    arch = _ARCHITECTURES.get(_platform.machine().lower())
    if arch is None:
        return None
    if sys.platform.startswith("linux"):
        return f"linux-{arch}"
    if sys.platform == "darwin":
        return f"darwin-{arch}"
    if sys.platform == "win32" and arch == "amd64":
        return "windows-amd64"
    return None


def resolve_release(text: str) -> Release:
    """The release named by ``text`` (``v23.1.11`` or ``23.1.11``).

    Raises InvalidVersion for text that is not a release (a major such as v23.1 included) and
    UnknownVersion for a release the embedded index does not know.
    """
    spec = release_index().parse(text)
    if not spec.is_release:
        raise InvalidVersion(
            f"{text.strip()} is a major version; name one release, such as "
            f"{_example_release(spec.major.name)}"
        )
    if spec.release is None:
        raise UnknownVersion(
            f"{spec.release_name} is not a release in the embedded release index; list the "
            f"known {spec.major} releases with `crdb-archive releases {spec.major}`"
        )
    return spec.release


def check_platform(release: Release, platform: str) -> None:
    """Raise UnknownPlatform unless ``release`` was published for ``platform``."""
    _suffix(platform)
    if platform not in release.platforms:
        raise UnknownPlatform(
            f"{release.name} was never published for {platform}; its platforms are "
            f"{', '.join(release.platforms)}"
        )


def _suffix(platform: str) -> str:
    try:
        return PLATFORMS[platform]
    except KeyError:
        raise UnknownPlatform(
            f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}"
        ) from None


def _example_release(major: str) -> str:
    releases = release_index().releases_of(major)
    return releases[-1].name if releases else f"{major}.0"

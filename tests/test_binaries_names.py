"""Archive names, platforms, mirrors, the cache location and strict checksum-file parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdb_archive.binaries import (
    PLATFORMS,
    archive_name,
    archive_stem,
    default_cache_dir,
    host_platform,
    official_url,
    parse_checksum_file,
    resolve_mirror,
    resolve_release,
)
from crdb_archive.binaries.platforms import check_platform
from crdb_archive.errors import (
    BadInput,
    ExitCode,
    InvalidVersion,
    MalformedChecksumFile,
    UnknownPlatform,
    UnknownVersion,
)
from support.release_archives import SUFFIXES

SHA = "ab" * 32
NAME = "cockroach-v23.1.11.linux-amd64.tgz"


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("linux-amd64", "cockroach-v23.1.11.linux-amd64.tgz"),
        ("linux-arm64", "cockroach-v23.1.11.linux-arm64.tgz"),
        ("linux-amd64-fips", "cockroach-v23.1.11.linux-amd64-fips.tgz"),
        ("darwin-amd64", "cockroach-v23.1.11.darwin-10.9-amd64.tgz"),
        ("darwin-arm64", "cockroach-v23.1.11.darwin-11.0-arm64.tgz"),
        ("windows-amd64", "cockroach-v23.1.11.windows-6.2-amd64.zip"),
    ],
)
def test_archive_names_follow_the_official_site(platform: str, expected: str) -> None:
    assert archive_name("v23.1.11", platform) == expected
    assert archive_stem("v23.1.11", platform) == expected.rsplit(".", 1)[0]


def test_platform_table_matches_the_documented_suffixes() -> None:
    assert PLATFORMS == SUFFIXES


def test_official_url() -> None:
    assert official_url(NAME) == f"https://binaries.cockroachdb.com/{NAME}"


def test_host_platform_on_this_machine_is_a_known_platform_or_none() -> None:
    host = host_platform()
    assert host is None or host in PLATFORMS


def test_unknown_platform_lists_the_known_ones() -> None:
    with pytest.raises(UnknownPlatform) as info:
        archive_name("v23.1.11", "solaris-sparc")
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "linux-amd64" in str(info.value)
    assert "windows-amd64" in str(info.value)


def test_platform_a_release_never_shipped_lists_its_platforms() -> None:
    release = resolve_release("v22.1.8")
    with pytest.raises(UnknownPlatform) as info:
        check_platform(release, "linux-arm64")
    message = str(info.value)
    assert "v22.1.8 was never published for linux-arm64" in message
    assert "linux-amd64, darwin-amd64, windows-amd64" in message


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("v23.1", InvalidVersion, "name one release, such as v23.1."),
        ("23.1.x", InvalidVersion, "major version"),
        ("v23.1.999", UnknownVersion, "v23.1.999 is not a release"),
        ("v99.1.0", UnknownVersion, "newest known"),
        ("latest", InvalidVersion, "not a CockroachDB version"),
    ],
)
def test_release_must_be_a_known_release(
    text: str, error: type[BadInput], fragment: str
) -> None:
    with pytest.raises(error) as info:
        resolve_release(text)
    assert fragment in str(info.value)
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_release_without_v_is_canonical() -> None:
    assert resolve_release("23.1.11").name == "v23.1.11"


# --- mirrors -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.delenv("CRDB_ARCHIVE_CACHE", raising=False)


def test_default_mirror_is_the_official_site() -> None:
    mirror = resolve_mirror(None)
    assert mirror.display_url(NAME) == f"https://binaries.cockroachdb.com/{NAME}"
    assert not mirror.is_local


def test_environment_names_the_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", "https://mirror.example.com/crdb/")
    assert resolve_mirror(None).location(NAME) == f"https://mirror.example.com/crdb/{NAME}"
    # An explicit value wins over the environment.
    assert resolve_mirror("http://other.example").location(NAME) == f"http://other.example/{NAME}"


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_local_directory_mirror(tmp_path: Path, form: str) -> None:
    value = str(tmp_path) if form == "path" else tmp_path.as_uri()
    mirror = resolve_mirror(value)
    assert mirror.directory == tmp_path
    assert mirror.is_local
    assert mirror.location(NAME) == (tmp_path / NAME).as_uri()


def test_credentials_in_a_mirror_url_are_never_shown() -> None:
    mirror = resolve_mirror("https://robot:s3cr3t-token@artifacts.example.com/cockroach")
    assert "s3cr3t-token" in mirror.location(NAME)  # used for the request itself
    assert "s3cr3t" not in mirror.display_url(NAME)
    assert "s3cr3t" not in str(mirror)
    assert mirror.display_url(NAME) == f"https://artifacts.example.com/cockroach/{NAME}"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("s3://bucket/cockroach", "unsupported scheme"),
        ("ftp://mirror.example.com", "unsupported scheme"),
        ("https://mirror.example.com/?token=abc", "query"),
        ("https:///no-host", "no host"),
        ("http://mirror.example.com:port", "invalid port"),
        ("file://server/share", "local directory"),
        ("/does/not/exist/anywhere", "no such directory"),
    ],
)
def test_unusable_mirror_is_bad_input(value: str, fragment: str) -> None:
    with pytest.raises(BadInput) as info:
        resolve_mirror(value)
    assert fragment in str(info.value)
    assert "token=abc" not in str(info.value)


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def test_cache_dir_default_is_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir().name == "crdb-archive"


# --- checksum files ----------------------------------------------------------------------------


def test_official_checksum_file_parses() -> None:
    assert parse_checksum_file(f"{SHA}  {NAME}\n".encode(), NAME) == SHA


def test_upper_case_digest_is_returned_lower_case() -> None:
    assert parse_checksum_file(f"{SHA.upper()}  {NAME}\n".encode(), NAME) == SHA


@pytest.mark.parametrize(
    "content",
    [
        b"",
        f"{SHA}\n".encode(),
        f"{SHA} {NAME}\n".encode(),  # one space
        f"{SHA} *{NAME}\n".encode(),  # binary-mode marker
        f"{SHA[:-1]}  {NAME}\n".encode(),  # 63 digits
        f"{SHA}0  {NAME}\n".encode(),  # 65 digits
        f"{'g' * 64}  {NAME}\n".encode(),
        f"{SHA}  {NAME}\r\n".encode(),
        f"{SHA}  {NAME}\n{SHA}  {NAME}\n".encode(),
        f"{SHA}  {NAME}\n\n".encode(),
        f" {SHA}  {NAME}\n".encode(),
        f"{SHA}  ./{NAME}\n".encode(),
        b"<html>404 Not Found</html>\n",
    ],
)
def test_malformed_checksum_files_are_refused(content: bytes) -> None:
    with pytest.raises(MalformedChecksumFile) as info:
        parse_checksum_file(content, NAME)
    assert info.value.exit_code == ExitCode.NO
    assert f"{NAME}.sha256sum" in str(info.value)


def test_checksum_file_for_another_archive_is_refused() -> None:
    other = "cockroach-v23.1.10.linux-amd64.tgz"
    with pytest.raises(MalformedChecksumFile) as info:
        parse_checksum_file(f"{SHA}  {other}\n".encode(), NAME)
    assert other in str(info.value)

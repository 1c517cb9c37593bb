"""Downloading release archives from a loopback mirror that fails on purpose.

Every test uses a real HTTP server on 127.0.0.1 (tests/support/mirror.py) serving generated
archives in the official layout; nothing in requests or urllib3 is patched.
"""

from __future__ import annotations

import hashlib
import json
import socket
from contextlib import closing
from pathlib import Path

import blake3
import pytest
from requests.adapters import HTTPAdapter

from crdb_archive.binaries import (
    FetchedArchive,
    NetworkPolicy,
    fetch_published_checksum,
    fetch_release_archive,
    resolve_mirror,
)
from crdb_archive.binaries.transfer import http_session
from crdb_archive.errors import (
    BadInput,
    ChecksumMismatch,
    CrdbArchiveError,
    ExitCode,
    Interrupted,
    InvalidVersion,
    MalformedChecksumFile,
    NetworkError,
    NotFoundOnMirror,
    StorageError,
    UnknownPlatform,
)
from crdb_archive.progress import ProgressEvent
from support.mirror import (
    Fault,
    MirrorServer,
    ignore_range,
    reset_after,
    short_body,
    stall_after,
    status,
)
from support.release_archives import ReleaseFiles, build_archive, write_checksum_file

RELEASE = "v23.1.11"
PLATFORM = "linux-amd64"
NAME = "cockroach-v23.1.11.linux-amd64.tgz"
FAST = NetworkPolicy(
    connect_timeout=2.0, read_timeout=1.0, retries=3, resumes=3, backoff=0.01, max_backoff=0.05
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "env-cache"))


@pytest.fixture
def published(mirror: MirrorServer) -> ReleaseFiles:
    return build_archive(mirror.root, RELEASE, PLATFORM)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def fetch(
    server: MirrorServer, dest: Path, cache: Path | None, *, release: str = RELEASE,
    platform: str = PLATFORM, policy: NetworkPolicy = FAST,
) -> FetchedArchive:
    return fetch_release_archive(
        release, platform, dest, mirror=resolve_mirror(server.url), cache_dir=cache,
        use_cache=cache is not None, policy=policy,
    )


def source_dir(cache: Path, origin: str) -> Path:
    """Where the cache keeps what it fetched from ``origin`` (its documented layout)."""
    return cache / "sources" / hashlib.sha256(origin.encode()).hexdigest()[:32]


def leftovers(*directories: Path) -> list[str]:
    """Every file under ``directories`` except complete cache entries."""
    found: list[str] = []
    for directory in directories:
        if directory.exists():
            found += [str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()]
    return found


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# --- the good path -----------------------------------------------------------------------------


def test_fetch_is_byte_identical_and_verified(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    fetched = fetch(mirror, tmp_path / "out", None)
    content = fetched.path.read_bytes()
    assert content == published.archive.read_bytes()
    assert fetched.path == tmp_path / "out" / NAME
    assert fetched.sha256 == hashlib.sha256(content).hexdigest() == published.sha256
    assert fetched.blake3 == blake3.blake3(content).hexdigest()
    assert fetched.size == len(content)
    assert fetched.published_sha256 == published.sha256
    assert published.checksum_file is not None
    assert fetched.published_checksum_file == published.checksum_file.read_bytes()
    assert fetched.verified is True
    assert fetched.from_cache is False
    assert fetched.url == f"{mirror.url}/{NAME}"
    # A loopback mirror is not Cockroach Labs' site, whatever it serves.
    assert fetched.official is False
    assert fetched.to_json() == {
        "platform": PLATFORM,
        "path": str(fetched.path),
        "url": fetched.url,
        "bytes": len(content),
        "sha256": published.sha256,
        "blake3": fetched.blake3,
        "published_sha256": published.sha256,
        "published_checksum_url": f"{mirror.url}/{NAME}.sha256sum",
        "verified": True,
        "official": False,
        "release": RELEASE,
        "from_cache": False,
        "published_checksum_from_cache": False,
    }
    requests = mirror.requests()
    # The tiny checksum file first: a mirror without it costs no archive download.
    assert [r.name for r in requests] == [f"{NAME}.sha256sum", NAME]
    assert all(r.user_agent and r.user_agent.startswith("crdb-archive/") for r in requests)
    assert all(r.accept_encoding == "identity" for r in requests)
    assert leftovers(tmp_path / "out") == [NAME]


@pytest.mark.parametrize("form", ["directory", "file-url"])
def test_local_mirror(published: ReleaseFiles, tmp_path: Path, form: str) -> None:
    root = published.archive.parent
    source = resolve_mirror(str(root) if form == "directory" else root.as_uri())
    fetched = fetch_release_archive(
        RELEASE, PLATFORM, tmp_path / "out", mirror=source, use_cache=False
    )
    assert fetched.sha256 == published.sha256
    assert fetched.verified
    assert fetched.url == (root / NAME).as_uri()
    assert fetched.path.read_bytes() == published.archive.read_bytes()


def test_progress_reports_every_byte_once(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    events: list[ProgressEvent] = []
    fetch_release_archive(
        RELEASE, PLATFORM, tmp_path / "out", mirror=resolve_mirror(mirror.url),
        use_cache=False, policy=FAST, progress=events.append,
    )
    size = published.archive.stat().st_size
    done = [e.done for e in events]
    assert done == sorted(done)
    assert events[-1].finished
    assert events[-1].done == size
    assert all(e.total == size for e in events)


def test_release_without_published_checksum_is_kept_unverified(
    mirror: MirrorServer, tmp_path: Path, cache_dir: Path
) -> None:
    files = build_archive(mirror.root, "v20.2.5", PLATFORM, checksum=False)
    fetched = fetch(mirror, tmp_path / "out", cache_dir, release="v20.2.5")
    assert fetched.verified is False
    assert fetched.published_sha256 is None
    assert fetched.published_checksum_file is None
    assert fetched.sha256 == files.sha256
    assert fetched.to_json()["published_sha256"] is None
    # The index says v20.2.5 publishes no checksum: none is asked for.
    assert [r.name for r in mirror.requests()] == [files.name]


# --- a mirror that fails, then recovers --------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "resumed"),
    [
        pytest.param([status(500)], False, id="500-then-ok"),
        pytest.param([status(503), status(502), status(504)], False, id="three-5xx-then-ok"),
        pytest.param([status(429, retry_after="0")], False, id="429-retry-after"),
        pytest.param([reset_after(100_000)], True, id="reset-mid-body-resume"),
        pytest.param([short_body(150_000)], True, id="short-body-resume"),
        pytest.param([stall_after(120_000, 5.0)], True, id="read-timeout-resume"),
        pytest.param([reset_after(100_000), reset_after(50_000)], True, id="two-resets"),
        pytest.param([status(500), reset_after(100_000), status(503)], True, id="mixed"),
    ],
)
def test_transient_failures_are_survived(
    mirror: MirrorServer,
    published: ReleaseFiles,
    tmp_path: Path,
    faults: list[Fault],
    resumed: bool,
) -> None:
    mirror.fail(NAME, *faults)
    fetched = fetch(mirror, tmp_path / "out", tmp_path / "cache")
    assert fetched.path.read_bytes() == published.archive.read_bytes()
    assert fetched.verified
    assert mirror.pending_faults(NAME) == 0
    ranges = [r.range for r in mirror.requests(NAME) if r.range is not None]
    if resumed:
        assert ranges, "a broken transfer must be resumed with Range, not restarted"
        assert all(int(r.removeprefix("bytes=").rstrip("-")) > 0 for r in ranges)
        # If-Range guards the resume against a file replaced in between.
        assert all(r.if_range for r in mirror.requests(NAME) if r.range is not None)
    else:
        assert ranges == []
    assert leftovers(tmp_path / "out") == [NAME]


def test_long_retry_after_is_capped_by_the_policy(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    # The wait a Retry-After asks for is the policy's longest backoff at most: 0.05 s, not an
    # hour (checked first, so that a broken cap fails here instead of hanging below).
    with closing(http_session(FAST)) as session:
        adapter = session.get_adapter(mirror.url)
        assert isinstance(adapter, HTTPAdapter)
        retry = adapter.max_retries
        assert retry.parse_retry_after("3600") == FAST.max_backoff
        assert retry.parse_retry_after("Fri, 31 Dec 2100 23:59:59 GMT") == FAST.max_backoff
        assert retry.parse_retry_after("0") == 0
    mirror.fail(NAME, status(503, retry_after="3600"))
    fetched = fetch(mirror, tmp_path / "out", None)
    assert fetched.verified
    assert len(mirror.requests(NAME)) == 2


def test_server_ignoring_range_restarts_from_zero(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    mirror.fail(NAME, reset_after(100_000), ignore_range())
    fetched = fetch(mirror, tmp_path / "out", None)
    assert fetched.path.read_bytes() == published.archive.read_bytes()
    assert fetched.sha256 == published.sha256
    assert len(mirror.requests(NAME)) == 2


def test_file_replaced_between_attempts_is_fetched_whole(
    mirror: MirrorServer, tmp_path: Path
) -> None:
    # Without a published checksum, If-Range is what keeps a resume from splicing two files.
    old = build_archive(mirror.root, "v20.2.5", PLATFORM, checksum=False)
    new = build_archive(tmp_path, "v20.2.5", PLATFORM, checksum=False, padding_size=200_000)
    mirror.fail(old.name, reset_after(100_000))

    def replace_after_first_chunk(event: ProgressEvent) -> None:
        if event.done and new.archive.exists():
            new.archive.replace(old.archive)

    fetched = fetch_release_archive(
        "v20.2.5", PLATFORM, tmp_path / "out", mirror=resolve_mirror(mirror.url),
        use_cache=False, policy=FAST, progress=replace_after_first_chunk,
    )
    assert fetched.path.read_bytes() == old.archive.read_bytes()  # now the new file's bytes
    assert fetched.sha256 == new.sha256
    second = mirror.requests(old.name)[1]
    assert second.range is not None
    assert second.if_range is not None


# --- a mirror that fails for good: an error, and nothing left behind ---------------------------


def test_persistent_5xx_is_a_network_error(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    mirror.fail(NAME, *[status(500)] * 10)
    with pytest.raises(NetworkError) as info:
        fetch(mirror, tmp_path / "out", tmp_path / "cache")
    assert info.value.exit_code == ExitCode.WORLD
    assert "HTTP 500" in str(info.value)
    assert "after 4 attempts" in str(info.value)
    assert NAME in str(info.value)
    assert leftovers(tmp_path / "out") == []
    assert leftovers(tmp_path / "cache") == []


def test_body_that_keeps_breaking_off_is_a_network_error(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    mirror.fail(NAME, *[short_body(70_000)] * 10)
    with pytest.raises(NetworkError) as info:
        fetch(mirror, tmp_path / "out", tmp_path / "cache")
    assert "broke off 4 times" in str(info.value)
    assert "\n" not in str(info.value)
    assert leftovers(tmp_path / "out") == []
    assert leftovers(tmp_path / "cache") == []


def test_wrong_published_checksum_is_a_mismatch(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    write_checksum_file(published.archive, "0" * 64)
    with pytest.raises(ChecksumMismatch) as info:
        fetch(mirror, tmp_path / "out", tmp_path / "cache")
    assert info.value.exit_code == ExitCode.NO
    assert published.sha256 in str(info.value)
    assert "0" * 64 in str(info.value)
    assert leftovers(tmp_path / "out") == []
    # Nothing unverified enters the cache: neither the archive nor the checksum file.
    assert leftovers(tmp_path / "cache") == []


def test_corrupted_archive_on_the_mirror_is_a_mismatch(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    flip_byte(published.archive, 1000)
    with pytest.raises(ChecksumMismatch):
        fetch(mirror, tmp_path / "out", None)
    assert leftovers(tmp_path / "out") == []


def test_missing_checksum_file_is_an_error_before_any_download(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    assert published.checksum_file is not None
    published.checksum_file.unlink()
    with pytest.raises(NotFoundOnMirror) as info:
        fetch(mirror, tmp_path / "out", tmp_path / "cache")
    assert info.value.exit_code == ExitCode.WORLD
    assert f"{NAME}.sha256sum" in str(info.value)
    assert mirror.requests(NAME) == []
    assert leftovers(tmp_path / "out") == []


def test_malformed_checksum_file_is_refused(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    write_checksum_file(published.archive, published.sha256, name="cockroach-v23.1.10.tgz")
    with pytest.raises(MalformedChecksumFile):
        fetch(mirror, tmp_path / "out", tmp_path / "cache")
    assert mirror.requests(NAME) == []
    assert leftovers(tmp_path / "out", tmp_path / "cache") == []


def test_oversized_checksum_file_is_refused(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    assert published.checksum_file is not None
    published.checksum_file.write_bytes(b"x" * 100_000)
    with pytest.raises(MalformedChecksumFile) as info:
        fetch(mirror, tmp_path / "out", None)
    assert "larger than" in str(info.value)


def test_archive_missing_on_the_mirror(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    published.archive.unlink()
    with pytest.raises(NotFoundOnMirror) as info:
        fetch(mirror, tmp_path / "out", tmp_path / "cache")
    assert "HTTP 404" in str(info.value)
    assert leftovers(tmp_path / "out", tmp_path / "cache") == []


def test_missing_file_on_a_local_mirror(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundOnMirror):
        fetch_release_archive(
            RELEASE, PLATFORM, tmp_path / "out", mirror=resolve_mirror(str(tmp_path / "empty")),
            use_cache=False,
        )
    assert leftovers(tmp_path / "out") == []


def test_connection_refused_is_a_network_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NetworkError) as info:
        fetch_release_archive(
            RELEASE, PLATFORM, tmp_path / "out", mirror=resolve_mirror(f"http://127.0.0.1:{port}"),
            use_cache=False, policy=FAST,
        )
    message = str(info.value)
    assert "Connection refused" in message
    assert "\n" not in message
    assert "object at 0x" not in message
    assert leftovers(tmp_path / "out") == []


def test_interruption_mid_download_leaves_nothing(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    def interrupt(event: ProgressEvent) -> None:
        if event.done > 100_000:
            raise Interrupted("interrupted by SIGINT")

    with pytest.raises(Interrupted):
        fetch_release_archive(
            RELEASE, PLATFORM, tmp_path / "out", mirror=resolve_mirror(mirror.url),
            cache_dir=tmp_path / "cache", policy=FAST, progress=interrupt,
        )
    assert leftovers(tmp_path / "out") == []
    assert leftovers(tmp_path / "cache") == []


def test_destination_that_is_a_file_is_bad_input_before_any_request(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    (tmp_path / "out").write_text("not a directory")
    with pytest.raises(BadInput) as info:
        fetch(mirror, tmp_path / "out", None)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "not a directory" in str(info.value)
    assert (tmp_path / "out").read_text() == "not a directory"
    assert mirror.requests() == []


def test_existing_different_file_is_kept_unless_replace(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / NAME).write_bytes(b"an old partial download")
    with pytest.raises(BadInput) as info:
        fetch(mirror, tmp_path / "out", None)
    assert "--replace" in str(info.value)
    assert (tmp_path / "out" / NAME).read_bytes() == b"an old partial download"
    # Known different from the published checksum before the archive is downloaded.
    assert mirror.requests(NAME) == []
    assert leftovers(tmp_path / "out") == [NAME]
    fetched = fetch_release_archive(
        RELEASE, PLATFORM, tmp_path / "out", mirror=resolve_mirror(mirror.url),
        use_cache=False, replace=True, policy=FAST,
    )
    assert fetched.path.read_bytes() == published.archive.read_bytes()


def test_existing_identical_file_is_fine(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / NAME).write_bytes(published.archive.read_bytes())
    before = (tmp_path / "out" / NAME).stat()
    fetched = fetch(mirror, tmp_path / "out", None)
    assert fetched.path.read_bytes() == published.archive.read_bytes()
    after = (tmp_path / "out" / NAME).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert leftovers(tmp_path / "out") == [NAME]


def test_existing_folder_of_the_archive_name_is_never_replaced(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    (tmp_path / "out" / NAME).mkdir(parents=True)
    (tmp_path / "out" / NAME / "mine.txt").write_text("mine")
    for replace in (False, True):
        with pytest.raises(BadInput):
            fetch_release_archive(
                RELEASE, PLATFORM, tmp_path / "out", mirror=resolve_mirror(mirror.url),
                use_cache=False, replace=replace, policy=FAST,
            )
    assert (tmp_path / "out" / NAME / "mine.txt").read_text() == "mine"
    assert mirror.requests() == []


@pytest.mark.parametrize(
    ("release", "platform", "error"),
    [("v22.1.8", "linux-arm64", UnknownPlatform), ("v23.1", PLATFORM, InvalidVersion)],
)
def test_bad_input_fails_before_any_request(
    mirror: MirrorServer, tmp_path: Path, release: str, platform: str,
    error: type[CrdbArchiveError],
) -> None:
    with pytest.raises(error) as info:
        fetch(mirror, tmp_path / "out", None, release=release, platform=platform)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert mirror.requests() == []
    assert not (tmp_path / "out").exists()


# --- the cache ---------------------------------------------------------------------------------


def test_cache_hit_does_not_touch_the_network(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path, cache_dir: Path
) -> None:
    first = fetch(mirror, tmp_path / "one", cache_dir)
    assert not first.from_cache
    mirror.clear_log()
    second = fetch(mirror, tmp_path / "two", cache_dir)
    assert mirror.requests() == []
    assert second.from_cache
    assert second.verified
    assert second.published_checksum_file == first.published_checksum_file
    assert second.path.read_bytes() == published.archive.read_bytes()
    assert (second.sha256, second.blake3, second.size) == (first.sha256, first.blake3, first.size)
    # The copy is independent of the cache: changing it does not damage the cache.
    flip_byte(second.path, 10)
    assert fetch(mirror, tmp_path / "three", cache_dir).from_cache
    assert mirror.requests() == []


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "delete-blob", "garbage-index"])
def test_damaged_cache_entry_is_detected_and_fetched_again(
    mirror: MirrorServer,
    published: ReleaseFiles,
    tmp_path: Path,
    cache_dir: Path,
    damage: str,
) -> None:
    fetch(mirror, tmp_path / "one", cache_dir)
    blob = cache_dir / "blobs" / "sha256" / published.sha256
    index = source_dir(cache_dir, mirror.url) / "archives" / f"{NAME}.json"
    assert json.loads(index.read_text())["origin"] == mirror.url
    if damage == "flip-byte":
        flip_byte(blob, blob.stat().st_size // 2)
    elif damage == "truncate":
        blob.write_bytes(blob.read_bytes()[:-1])
    elif damage == "delete-blob":
        blob.unlink()
    else:
        index.write_text('{"format": 1, "archive": "../../etc", "sha256": 7}')
    mirror.clear_log()
    again = fetch(mirror, tmp_path / "two", cache_dir)
    assert not again.from_cache
    assert [r.name for r in mirror.requests()] == [NAME]
    assert again.path.read_bytes() == published.archive.read_bytes()
    assert blob.read_bytes() == published.archive.read_bytes()  # the cache is repaired
    mirror.clear_log()
    assert fetch(mirror, tmp_path / "three", cache_dir).from_cache
    assert mirror.requests() == []


def test_cache_entry_that_disagrees_with_the_published_checksum_is_not_used(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path, cache_dir: Path
) -> None:
    fetch(mirror, tmp_path / "one", cache_dir)
    # The release is re-published (a new archive, a new checksum) behind the cache's back.
    build_archive(mirror.root, RELEASE, PLATFORM, padding_size=1000)
    (source_dir(cache_dir, mirror.url) / "checksums" / f"{NAME}.sha256sum").unlink()
    mirror.clear_log()
    again = fetch(mirror, tmp_path / "two", cache_dir)
    assert not again.from_cache
    assert again.path.read_bytes() == published.archive.read_bytes()
    assert again.verified


def test_cached_archive_with_uncached_checksum_fetches_only_the_checksum(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path, cache_dir: Path
) -> None:
    fetch(mirror, tmp_path / "one", cache_dir)
    (source_dir(cache_dir, mirror.url) / "checksums" / f"{NAME}.sha256sum").unlink()
    mirror.clear_log()
    again = fetch(mirror, tmp_path / "two", cache_dir)
    assert again.from_cache
    assert [r.name for r in mirror.requests()] == [f"{NAME}.sha256sum"]


def test_no_cache_always_downloads_and_writes_no_cache(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path, cache_dir: Path
) -> None:
    fetch(mirror, tmp_path / "one", cache_dir)
    mirror.clear_log()
    fetched = fetch(mirror, tmp_path / "two", None)
    assert not fetched.from_cache
    assert [r.name for r in mirror.requests()] == [f"{NAME}.sha256sum", NAME]
    assert not (tmp_path / "env-cache").exists()


def test_default_cache_is_taken_from_the_environment(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    fetch_release_archive(
        RELEASE, PLATFORM, tmp_path / "out", mirror=resolve_mirror(mirror.url), policy=FAST
    )
    assert (tmp_path / "env-cache" / "blobs" / "sha256" / published.sha256).is_file()


def test_unverified_release_is_served_from_cache(
    mirror: MirrorServer, tmp_path: Path, cache_dir: Path
) -> None:
    build_archive(mirror.root, "v20.2.5", PLATFORM, checksum=False)
    fetch(mirror, tmp_path / "one", cache_dir, release="v20.2.5")
    mirror.clear_log()
    again = fetch(mirror, tmp_path / "two", cache_dir, release="v20.2.5")
    assert again.from_cache
    assert not again.verified
    assert mirror.requests() == []


def test_unwritable_cache_is_a_storage_error_naming_it(
    mirror: MirrorServer, published: ReleaseFiles, tmp_path: Path
) -> None:
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    with pytest.raises(StorageError) as info:
        fetch(mirror, tmp_path / "out", blocker)
    assert str(blocker) in str(info.value)
    assert leftovers(tmp_path / "out") == []


# --- published checksums of other platforms ----------------------------------------------------


def test_fetch_published_checksum(mirror: MirrorServer, tmp_path: Path) -> None:
    files = build_archive(mirror.root, RELEASE, "darwin-arm64")
    source = resolve_mirror(mirror.url)
    cache = tmp_path / "cache"
    first = fetch_published_checksum(
        RELEASE, "darwin-arm64", mirror=source, cache_dir=cache, policy=FAST
    )
    assert first is not None
    assert (first.sha256, first.from_cache, first.official) == (files.sha256, False, False)
    assert first.url == f"{mirror.url}/{files.name}.sha256sum"
    mirror.clear_log()
    again = fetch_published_checksum(
        RELEASE, "darwin-arm64", mirror=source, cache_dir=cache, policy=FAST
    )
    assert again is not None
    assert (again.sha256, again.from_cache, again.url) == (files.sha256, True, first.url)
    assert mirror.requests() == []


def test_fetch_published_checksum_none_for_old_releases(
    mirror: MirrorServer,
) -> None:
    assert fetch_published_checksum("v20.2.5", PLATFORM, mirror=resolve_mirror(mirror.url)) is None
    assert mirror.requests() == []


def test_fetch_published_checksum_missing_is_not_found(
    mirror: MirrorServer, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundOnMirror):
        fetch_published_checksum(
            RELEASE, "windows-amd64", mirror=resolve_mirror(mirror.url), use_cache=False,
            policy=FAST,
        )

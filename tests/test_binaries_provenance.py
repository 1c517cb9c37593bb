"""Provenance: a bundle records where each archive and checksum came from, and a cache entry
answers only for the source it was fetched from (DESIGN 3).

The scenario behind these tests: the README's demo fills the cache with stand-in archives from
its offline mirror; a later real archive of the same release must never be handed them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from crdb_archive.bundle.verify import verify_bundle
from support.backups import ERAS
from support.bundles import run_cli, tree
from support.forge import read_description, write_description
from support.mirror import MirrorServer
from support.release_archives import build_archive, file_name, publish

ROOT = Path(__file__).resolve().parent.parent
RELEASE = "v24.3.1"
PLATFORM = "linux-amd64"
NAME = file_name(RELEASE, PLATFORM)
OFFICIAL = "https://binaries.cockroachdb.com"
OTHER_PLATFORMS = ["linux-arm64", "linux-amd64-fips", "darwin-amd64", "darwin-arm64",
                   "windows-amd64"]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def files_under(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file())


def make_demo(tmp_path: Path) -> Path:
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make-demo.py"), str(demo)],
                   check=True, capture_output=True, timeout=120)
    return demo


def archive(capsys: pytest.CaptureFixture[str], source: Path, dest: Path,
            *extra: str) -> dict[str, object]:
    done = run_cli(capsys, "archive", str(source), "--dest", str(dest), "--json", *extra)
    assert done.code == 0, done.err
    return done.json()


def description_of(result: dict[str, object]) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        (Path(str(result["bundle"])) / "crdb-archive.json").read_text())
    return loaded


def binaries_of(result: dict[str, object]) -> list[dict[str, object]]:
    binaries = description_of(result)["binaries"]
    assert isinstance(binaries, list)
    return binaries


# --- the demo, then a real archive -------------------------------------------------------------


@pytest.mark.usefixtures("offline")
def test_demo_then_real_archive_offline_is_exit_3_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    demo = make_demo(tmp_path)
    # The demo as it was run before its own cache directory: into the user's cache.
    archive(capsys, demo / "backup", demo / "bundles", "--mirror", str(demo / "mirror"),
            "--with-incrementals")
    assert files_under(tmp_path / "cache") != []
    real = run_cli(capsys, "archive", str(demo / "backup"), "--dest", str(tmp_path / "real"))
    assert real.code == 3, real.err
    assert f"{OFFICIAL}/{NAME}" in real.err
    assert files_under(tmp_path / "real") == []


def test_second_mirror_of_different_content_is_what_the_bundle_holds_and_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    demo = make_demo(tmp_path)
    first = archive(capsys, demo / "backup", tmp_path / "one", "--mirror", str(demo / "mirror"))
    (served,) = [build_archive(mirror.root, RELEASE, PLATFORM, padding_size=1234)]
    publish(mirror.root, RELEASE, OTHER_PLATFORMS)
    assert served.archive.read_bytes() != (demo / "mirror" / NAME).read_bytes()
    second = archive(capsys, demo / "backup", tmp_path / "two", "--mirror", mirror.url)

    held = Path(str(second["bundle"])) / "data" / "cockroach" / NAME
    assert held.read_bytes() == served.archive.read_bytes()
    (binary,) = binaries_of(second)
    assert binary["sha256"] == served.sha256
    assert binary["url"] == f"{mirror.url}/{NAME}"
    assert binary["published_checksum_url"] == f"{mirror.url}/{NAME}.sha256sum"
    assert binary["from_cache"] is False
    assert binary["published_checksum_from_cache"] is False
    assert binary["official"] is False
    others = description_of(second)["other_platforms"]
    assert isinstance(others, list)
    for other in others:
        published = hashlib.sha256(
            (mirror.root / other["file_name"]).read_bytes()).hexdigest()
        assert other["published_sha256"] == published
        assert other["published_checksum_url"] == f"{mirror.url}/{other['file_name']}.sha256sum"
    # And the first bundle names the demo's mirror, not the official site.
    (demo_binary,) = binaries_of(first)
    assert demo_binary["url"] == str((demo / "mirror" / NAME).absolute())
    assert demo_binary["official"] is False


def test_cache_hit_records_the_source_it_was_fetched_from(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = ERAS["v24.3"](tmp_path / "backups")
    publish(mirror.root, RELEASE, [PLATFORM, *OTHER_PLATFORMS])
    archive(capsys, era.path, tmp_path / "one", "--mirror", mirror.url)
    mirror.clear_log()
    again = archive(capsys, era.path, tmp_path / "two", "--mirror", mirror.url)
    assert mirror.requests() == []
    (binary,) = binaries_of(again)
    assert binary["from_cache"] is True
    assert binary["published_checksum_from_cache"] is True
    assert binary["url"] == f"{mirror.url}/{NAME}"
    assert binary["official"] is False
    others = description_of(again)["other_platforms"]
    assert isinstance(others, list)
    assert {o["published_checksum_from_cache"] for o in others} == {True}
    assert verify_bundle(Path(str(again["bundle"]))).ok


def test_no_cache_neither_reads_nor_fills_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = ERAS["v24.3"](tmp_path / "backups")
    publish(mirror.root, RELEASE, [PLATFORM])
    done = archive(capsys, era.path, tmp_path / "one", "--mirror", mirror.url, "--no-cache")
    assert not (tmp_path / "cache").exists()
    (binary,) = binaries_of(done)
    assert binary["from_cache"] is False
    archive(capsys, era.path, tmp_path / "two", "--mirror", mirror.url)
    mirror.clear_log()
    archive(capsys, era.path, tmp_path / "three", "--mirror", mirror.url, "--no-cache")
    assert [r.name for r in mirror.requests()][:2] == [f"{NAME}.sha256sum", NAME]


def test_run_no_cache_overrides_the_spec(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = ERAS["v24.3"](tmp_path / "backups")
    publish(mirror.root, RELEASE, [PLATFORM])
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{era.path}"\nbackups = "latest"\n'
        f'[destination]\nuri = "bundles"\n[binaries]\nmirror = "{mirror.url}"\n'
        'cache_dir = "jobcache"\n')
    done = run_cli(capsys, "run", str(spec), "--no-cache")
    assert done.code == 0, done.err
    assert not (tmp_path / "jobcache").exists()
    assert not (tmp_path / "cache").exists()
    assert len(files_under(tmp_path / "bundles")) > 0


# --- the cache's keys ----------------------------------------------------------------------------


def test_name_keyed_entries_of_the_old_layout_are_never_used(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    # What a cache looked like after the demo, before entries had a source.
    stand_in = build_archive(tmp_path, RELEASE, PLATFORM, padding_size=10)
    content = stand_in.archive.read_bytes()
    cache = tmp_path / "cache"
    (cache / "blobs" / "sha256").mkdir(parents=True)
    (cache / "blobs" / "sha256" / stand_in.sha256).write_bytes(content)
    (cache / "archives").mkdir()
    (cache / "archives" / f"{NAME}.json").write_text(json.dumps({
        "format": 1, "archive": NAME, "size": len(content), "sha256": stand_in.sha256,
        "blake3": blake3.blake3(content).hexdigest()}))
    (cache / "checksums").mkdir()
    assert stand_in.checksum_file is not None
    (cache / "checksums" / f"{NAME}.sha256sum").write_bytes(stand_in.checksum_file.read_bytes())
    served = build_archive(mirror.root, RELEASE, PLATFORM)
    fetched = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url, "--to",
                      str(tmp_path / "out"), "--json")
    assert fetched.code == 0, fetched.err
    assert [r.name for r in mirror.requests()] == [f"{NAME}.sha256sum", NAME]
    assert (tmp_path / "out" / NAME).read_bytes() == served.archive.read_bytes()


def test_credentials_are_not_part_of_the_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    build_archive(mirror.root, RELEASE, PLATFORM)
    host = mirror.url.split("://", 1)[1]
    for token, out in (("token-one-5c1e", "one"), ("token-two-9a7f", "two")):
        done = run_cli(capsys, "fetch-binary", RELEASE, "--mirror",
                       f"http://user:{token}@{host}", "--to", str(tmp_path / out), "--json")
        assert done.code == 0, done.err
        files = done.json()["files"]
        assert isinstance(files, list)
        assert files[0]["url"] == f"{mirror.url}/{NAME}"
        assert files[0]["from_cache"] is (out == "two")
    for name, content in tree(tmp_path / "cache").items():
        assert b"token-" not in content, name
    (statement,) = (tmp_path / "cache" / "sources").glob("*/source.json")
    assert json.loads(statement.read_text())["origin"] == mirror.url


def test_a_different_mirror_of_the_same_name_is_not_served_from_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    (tmp_path / "local").mkdir()
    local = build_archive(tmp_path / "local", RELEASE, PLATFORM, padding_size=99)
    served = build_archive(mirror.root, RELEASE, PLATFORM)
    one = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", str(tmp_path / "local"),
                  "--to", str(tmp_path / "one"))
    assert one.code == 0, one.err
    two = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url, "--to",
                  str(tmp_path / "two"), "--json")
    assert two.code == 0, two.err
    assert (tmp_path / "one" / NAME).read_bytes() == local.archive.read_bytes()
    assert (tmp_path / "two" / NAME).read_bytes() == served.archive.read_bytes()
    assert [r.name for r in mirror.requests()] == [f"{NAME}.sha256sum", NAME]


# --- bundles made before provenance was recorded ---------------------------------------------


def test_bundle_without_the_provenance_fields_still_verifies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = ERAS["v24.3"](tmp_path / "backups")
    publish(mirror.root, RELEASE, [PLATFORM])
    bundle = Path(str(archive(capsys, era.path, tmp_path / "one", "--mirror",
                              mirror.url)["bundle"]))
    description = read_description(bundle)
    for binary in description["binaries"]:
        for key in ("published_checksum_url", "from_cache", "published_checksum_from_cache",
                    "official"):
            del binary[key]
    for other in description["other_platforms"]:
        for key in ("published_checksum_url", "published_checksum_from_cache"):
            del other[key]
    write_description(bundle, description)
    assert verify_bundle(bundle).ok
    retrieved = run_cli(capsys, "binary", str(bundle), "--to", str(tmp_path / "restore"),
                        "--platform", PLATFORM)
    assert retrieved.code == 0, retrieved.err

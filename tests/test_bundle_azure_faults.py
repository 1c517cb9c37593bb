"""Bundles in Azure through a network that breaks: an intact bundle is never called DAMAGED
(exit 0, or 3 when the network wins), a damaged one still is, and an upload that the network
stops leaves no half blob."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.azure import Azurite
from support.bundles import era_with_binaries, run_cli
from support.fault_bundles import (
    assert_damage_found,
    assert_never_damaged,
    assert_retries_run_out,
    bundle_objects,
    damaged_tar,
)
from support.faultproxy import (
    Fault,
    FaultProxy,
    fail_after,
    refuse,
    reset_after,
    short_body,
    through,
    truncate_after,
)
from support.mirror import MirrorServer


@pytest.fixture(autouse=True)
def _attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_MAX_ATTEMPTS", raising=False)


def upload(env: Azurite, bundles: tuple[Path, Path], *, damage: bool = False) -> str:
    """Both forms in a new container, straight to Azurite (no proxy); returns the container."""
    container = env.container()
    with env.service() as service:
        client = service.get_container_client(container)
        for name, data in bundle_objects(bundles, damage=damage):
            client.get_blob_client(name).upload_blob(data)
    return container


def uris(env: Azurite, proxy: FaultProxy, container: str, bundles: tuple[Path, Path]
         ) -> list[str]:
    directory, tar = bundles
    endpoint = through(proxy)
    return [env.uri(container, f"dir/{directory.name}").replace(env.endpoint_url, endpoint),
            env.uri(container, f"tar/{tar.name}").replace(env.endpoint_url, endpoint)]


BODY_FAULTS = [short_body(100), reset_after(100), truncate_after(100), short_body(0)]


@pytest.mark.parametrize("fault", BODY_FAULTS, ids=lambda f: f"{f.kind}-{f.after}")
def test_every_get_broken_once_still_verifies(capsys: pytest.CaptureFixture[str],
                                              azure_env: Azurite, azure_proxy: FaultProxy,
                                              bundles: tuple[Path, Path], fault: Fault
                                              ) -> None:
    container = upload(azure_env, bundles)
    for uri, prefix in zip(uris(azure_env, azure_proxy, container, bundles), ("dir/", "tar/"),
                           strict=True):
        for name in azure_env.keys(container):
            if name.startswith(prefix):
                azure_proxy.fail("GET", f"/{container}/{name}$", fault)
        result = run_cli(capsys, "verify", uri, "--all-digests")
        assert result.code == 0, result.out + result.err
        assert azure_proxy.pending() == 0


def test_retries_running_out_are_exit_3_not_damage(capsys: pytest.CaptureFixture[str],
                                                   azure_env: Azurite,
                                                   azure_proxy: FaultProxy,
                                                   bundles: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_MAX_ATTEMPTS", "2")
    container = upload(azure_env, bundles)
    assert_retries_run_out(capsys, azure_proxy, uris(azure_env, azure_proxy, container, bundles),
                           r"\.(tar|sst)$", reset_after(10), "the transfer broke 2 times")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(16))
def test_intact_bundles_under_chaos_are_never_damaged(capsys: pytest.CaptureFixture[str],
                                                      azure_env: Azurite,
                                                      azure_proxy: FaultProxy,
                                                      bundles: tuple[Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      seed: int) -> None:
    monkeypatch.setenv("AZURE_MAX_ATTEMPTS", "4")
    container = upload(azure_env, bundles)
    assert_never_damaged(capsys, azure_proxy, uris(azure_env, azure_proxy, container, bundles),
                         seed)


def test_damage_is_still_found_through_faults(capsys: pytest.CaptureFixture[str],
                                              azure_env: Azurite, azure_proxy: FaultProxy,
                                              bundles: tuple[Path, Path], tmp_path: Path
                                              ) -> None:
    container = upload(azure_env, bundles, damage=True)
    tar = damaged_tar(bundles, tmp_path)
    with azure_env.service() as service:
        service.get_container_client(container).get_blob_client(
            f"tar/{tar.name}").upload_blob(tar.read_bytes(), overwrite=True)
    azure_proxy.fail("GET", r"/(dir|tar)/", short_body(50), times=5)
    assert_damage_found(capsys, uris(azure_env, azure_proxy, container, bundles))


@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_an_archive_through_a_breaking_network_is_whole_or_absent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite, azure_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, fmt: str,
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = azure_env.container()
    dest = azure_env.uri(container, "a").replace(azure_env.endpoint_url, through(azure_proxy))
    # The first writes break, each its own way, and retries see them through.
    azure_proxy.fail("PUT", r"/a/", refuse(503), fail_after(500), reset_after(0))
    result = run_cli(capsys, "archive", str(era.path), "--dest", dest, "--mirror", mirror.url,
                     "--format", fmt, "--json")
    assert result.code == 0, result.err
    assert azure_proxy.pending() == 0
    azure_proxy.calm()
    bundle = azure_env.uri(container, f"a/{result.json()['name']}" +
                           (".tar" if fmt == "tar" else ""))
    assert run_cli(capsys, "verify", bundle, "--all-digests").code == 0
    # Every write fails from now on: the upload stops with exit 3 and leaves nothing.
    monkeypatch.setenv("AZURE_MAX_ATTEMPTS", "2")
    azure_proxy.fail("PUT", r"/a/", refuse(503), times=10_000)
    before = azure_env.keys(container)
    failed = run_cli(capsys, "archive", str(era.path), "--dest", dest, "--mirror", mirror.url,
                     "--format", fmt, "--name", "crdb-second-copy")
    assert failed.code == 3, failed.err
    assert "Traceback" not in failed.err
    assert azure_env.keys(container) == before

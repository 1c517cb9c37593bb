"""The install path the README gives for servers: a wheel built from the clone, and the
examples that run what it installs.

The wheel is built offline (no build isolation) and run from a directory of its own, so a
file the package needs at run time but the wheel lacks (the release index, the JSON schema)
fails here, not on a server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from crdb_archive import __version__

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "archive-specs" / "examples"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
         str(ROOT)], capture_output=True, text=True, check=False, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("*.whl")
    return found


def test_the_wheel_has_the_name_the_readme_gives(wheel: Path) -> None:
    assert wheel.name == f"crdb_archive-{__version__}-py3-none-any.whl"
    readme = (ROOT / "README.md").read_text()
    assert f"dist/crdb_archive-{__version__}-py3-none-any.whl" in readme
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(
            f"crdb_archive-{__version__}.dist-info/entry_points.txt").decode()
    assert {"crdb_archive/releases.json", "crdb_archive/schemas/bundle-manifest.schema.json",
            "crdb_archive/py.typed"} <= names
    assert "crdb-archive = crdb_archive.cli.app:main" in entry_points


def test_the_installed_wheel_runs_on_its_own(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(target), str(wheel)], check=True,
                   timeout=300)
    # The installed copy comes first on the path: not the clone's sources.
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = ("import crdb_archive, sys; from crdb_archive.cli import main; "
              "print(crdb_archive.__file__, file=sys.stderr); main()")

    def crdb_archive(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                              text=True, check=False, env=env, cwd=tmp_path, timeout=120)

    version = crdb_archive("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"crdb-archive {__version__}"
    assert version.stderr.startswith(str(target))
    releases = crdb_archive("releases", "v23.1", "--json")  # the index in the wheel
    assert releases.returncode == 0, releases.stderr
    assert "v23.1.11" in releases.stdout
    # The schema in the wheel is the one verify checks a description against.
    not_a_bundle = tmp_path / "empty"
    not_a_bundle.mkdir()
    verify = crdb_archive("verify", str(not_a_bundle))
    assert verify.returncode == 2
    assert "Traceback" not in verify.stderr


def test_cron_and_systemd_call_where_pipx_global_installs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pipx install --global" in readme
    assert "/usr/local/bin/crdb-archive" in readme
    crontab = (EXAMPLES / "crontab").read_text()
    service = (EXAMPLES / "crdb-archive-nightly.service").read_text()
    for text in (crontab, service):
        commands = re.findall(r"(/\S*crdb-archive) run ", text)
        assert commands
        assert set(commands) == {"/usr/local/bin/crdb-archive"}


def test_kubernetes_runs_the_image_the_containerfile_builds() -> None:
    cronjob = (EXAMPLES / "k8s-cronjob.yaml").read_text()
    containerfile = (EXAMPLES / "Containerfile").read_text()
    (image,) = re.findall(r"image: (\S+)", cronjob)
    assert image == f"registry.example.com/crdb-archive:{__version__}"
    assert f"-t {image} " in containerfile
    assert "pip install crdb-archive" not in cronjob + containerfile
    assert re.search(r"COPY dist/crdb_archive-\*-py3-none-any\.whl", containerfile)
    assert 'ENTRYPOINT ["crdb-archive"]' in containerfile

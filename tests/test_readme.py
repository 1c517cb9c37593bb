"""The README's quick start works as written (minus the install step, already done here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from support.export_demo import RESOLVED, expected_rows, loaded_rows, write_shop_changefeed
from support.postgres import PostgresDatabase

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def shell_blocks(section: str) -> list[str]:
    """The commands of the ```sh blocks under a README heading."""
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```sh\n(.*?)```", body, re.DOTALL)
            for line in block.strip().splitlines()]


def localize(command: str) -> str:
    """Run the README's command with this interpreter, from any directory."""
    steps = [step for step in command.split(" && ")
             if not step.startswith("python3 -m venv") and "pip install" not in step]
    line = " && ".join(steps)
    line = line.replace(".venv/bin/python scripts/", f"{sys.executable} {ROOT}/scripts/")
    return line.replace(".venv/bin/crdb-archive", f"{sys.executable} -m crdb_archive.cli")


def inline_commands(section: str) -> list[str]:
    """The `.venv/bin/crdb-archive ...` commands quoted inline under a README heading."""
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [c.replace("\n", " ") for c in re.findall(r"`(\.venv/bin/crdb-archive [^`]+)`", body)]


def test_quick_start_runs(tmp_path: Path) -> None:
    (command,) = shell_blocks("Quick start")
    assert command.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert "crdb-archive archive demo/backup" in command
    follow_ups = inline_commands("Quick start")
    assert [c.split()[1] for c in follow_ups] == ["verify", "binary"]
    # The user's own download cache: the demo must leave it alone.
    user_cache = tmp_path / "user-cache"
    env = {**os.environ, "CRDB_ARCHIVE_CACHE": str(user_cache)}
    env.pop("CRDB_ARCHIVE_MIRROR", None)
    for step in [command, *follow_ups]:
        done = subprocess.run(["bash", "-c", localize(step)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 0, (step, done.stderr)
    assert not user_cache.exists()
    assert list((tmp_path / "demo" / "cache" / "blobs" / "sha256").iterdir())
    bundles = list((tmp_path / "demo" / "bundles").iterdir())
    assert len(bundles) == 1
    checked = subprocess.run(
        [sys.executable, "-m", "crdb_archive.cli", "verify", str(bundles[0]), "--json"],
        capture_output=True, text=True, check=False)
    assert json.loads(checked.stdout)["ok"] is True
    description = json.loads((bundles[0] / "crdb-archive.json").read_text())
    (binary,) = description["binaries"]
    assert binary["official"] is False
    assert binary["url"].endswith("demo/mirror/cockroach-v24.3.1.linux-amd64.tgz")
    cockroach = tmp_path / "demo" / "restore" / "cockroach-v24.3.1.linux-amd64" / "cockroach"
    assert "v24.3.1" in subprocess.run([str(cockroach), "version"], capture_output=True,
                                       text=True, check=True).stdout


def test_readme_test_command_is_the_ci_command() -> None:
    (command,) = shell_blocks("Run the tests")
    assert command.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest" in ci
    assert "pip install -q -e '.[test]'" in ci
    # Azurite lives where tests/support/azure.py looks for it, in both.
    assert "npm install --silent --prefix .venv/node azurite" in command
    assert "--prefix .venv/node azurite" in ci


def test_a_copy_that_needs_no_cockroachdb_runs(tmp_path: Path,
                                               postgres_db: PostgresDatabase) -> None:
    """The export section's commands, in one shell as a reader would type them, against the
    tests' PostgreSQL (its URL in place of the README's, the password in PGPASSWORD)."""
    section = "A copy that needs no CockroachDB"
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", body, re.DOTALL)
    assert len(blocks) == 2
    script = "\n".join(blocks)
    readme_url = "PGURL=postgresql://postgres@localhost:5432/postgres"
    assert readme_url in script
    server = postgres_db.server
    script = script.replace(readme_url, f"PGURL=postgresql://postgres@{server.host}:"
                                        f"{server.port}/{postgres_db.name}")
    script = script.replace(".venv/bin/python -c", f"{sys.executable} -c")
    script = script.replace(".venv/bin/crdb-archive", f"{sys.executable} -m crdb_archive.cli")
    demo = subprocess.run([sys.executable, str(ROOT / "scripts" / "make-demo.py"), "demo"],
                          cwd=tmp_path, capture_output=True, text=True, check=False,
                          timeout=120)
    assert demo.returncode == 0, demo.stderr
    env = {**os.environ, "PGPASSWORD": server.password}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "orders" in done.stdout  # DuckDB printed the snapshot
    # Both loads hold exactly the rows of the demo's history at its newest resolved time.
    history = write_shop_changefeed(tmp_path / "again")
    with postgres_db.connect() as connection:
        for schema in ("shop", "public"):
            for name in ("customers", "orders"):
                assert loaded_rows(connection, name, schema) == \
                    expected_rows(history, RESOLVED[-1], name), (schema, name)

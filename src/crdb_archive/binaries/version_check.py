"""Asking an extracted ``cockroach`` which release it is (``cockroach version``, DESIGN 2.2)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from crdb_archive.binaries.platforms import host_platform

# Printed by every release: "Build Tag:        v23.1.11".
_BUILD_TAG = re.compile(r"^Build Tag:\s+(\S+)\s*$", re.MULTILINE)
_OUTPUT_LIMIT = 64 << 10


@dataclass(frozen=True)
class VersionCheck:
    """The outcome of running ``cockroach version``.

    ``checked`` is False when the binary was not run (nothing vouches for it, or it cannot
    run here) or could not be (a failure to start, a timeout); ``matches`` is None then.
    ``detail`` says what happened, in one line; ``command`` is how to run the check by hand.
    """

    checked: bool
    build_tag: str | None
    matches: bool | None
    detail: str
    command: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "build_tag": self.build_tag,
            "matches": self.matches,
            "detail": self.detail,
            "command": self.command,
        }


def version_command(cockroach: Path) -> str:
    """The shell command that runs the check by hand."""
    return shlex.join([str(cockroach), "version"])


def version_not_run(cockroach: Path, reason: str) -> VersionCheck:
    """The check skipped on purpose: ``reason`` says why, and the result how to run it."""
    command = version_command(cockroach)
    return VersionCheck(False, None, None,
                        f"not run: {reason}; to check it yourself: {command}", command)


def check_binary_version(
    cockroach: Path, expected_release: str, *, platform: str, timeout: float = 20.0
) -> VersionCheck:
    """Run ``cockroach version`` where ``platform`` is this host's, and compare its Build Tag.

    This runs the binary's code: call it only when its archive's source is established (a
    checksum from the official site over HTTPS); otherwise report :func:`version_not_run`.
    A mismatch is reported in the result, not raised; the caller decides what it means.
    """
    host = host_platform()
    command = version_command(cockroach)
    if platform != host:
        return VersionCheck(
            checked=False,
            build_tag=None,
            matches=None,
            detail=f"not checked: a {platform} binary does not run on this "
            f"{host or 'unsupported'} host",
            command=command,
        )
    try:
        output = _run_version(cockroach, timeout)
    except subprocess.TimeoutExpired:
        return VersionCheck(False, None, None, f"not checked: `cockroach version` did not "
                            f"finish within {timeout:g} s", command)
    except _Failed as failure:
        return VersionCheck(False, None, None, f"not checked: {failure}", command)
    match = _BUILD_TAG.search(output)
    if match is None:
        return VersionCheck(True, None, False,
                            "`cockroach version` ran but printed no Build Tag line", command)
    tag = match[1]
    if tag == expected_release:
        return VersionCheck(True, tag, True, f"cockroach version reports {tag}", command)
    return VersionCheck(True, tag, False,
                        f"cockroach version reports {tag}, expected {expected_release}",
                        command)


class _Failed(Exception):
    pass


def _run_version(cockroach: Path, timeout: float) -> str:
    posix = sys.platform != "win32"
    try:
        process = subprocess.Popen(
            [str(cockroach), "version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own process group, so a timeout ends anything it started, not only itself.
            start_new_session=posix,
        )
    except OSError as error:
        raise _Failed(f"cannot run {cockroach.name}: {error.strerror or error}") from None
    with process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process, posix)
            process.communicate()
            raise
    if process.returncode != 0:
        first = next(iter(err.decode("utf-8", "replace").strip().splitlines()), "")
        raise _Failed(
            f"`cockroach version` exited with status {process.returncode}"
            + (f": {first[:200]}" if first else "")
        )
    return out[:_OUTPUT_LIMIT].decode("utf-8", "replace")


def _kill(process: subprocess.Popen[bytes], posix: bool) -> None:
    with contextlib.suppress(OSError):
        if posix:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()

"""Starting and stopping the stores' emulators (fake-gcs-server, Azurite) on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import closing, suppress


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until_serving(name: str, process: subprocess.Popen[bytes], answers: Callable[[], None],
                       *, seconds: float) -> None:
    """Wait until ``answers`` returns without an OSError; raises RuntimeError when ``process``
    exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        with suppress(OSError):
            answers()
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start within {seconds:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the emulator, and kill it when it does not stop within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

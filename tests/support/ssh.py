"""OpenSSH as the independent signature checker: keys made by ssh-keygen, and its -Y verbs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from crdb_archive.bundle.signature import NAMESPACE


@dataclass(frozen=True)
class Key:
    private: Path
    public_line: str  # "ssh-ed25519 AAAA... comment"

    @property
    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.private)],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]

    @property
    def public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` without the comment."""
        return " ".join(self.public_line.split()[:2])


def make_key(directory: Path, name: str, kind: str = "ed25519",
             passphrase: str = "") -> Key:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", name, "-f",
                    str(path)], check=True)
    return Key(path, (directory / f"{name}.pub").read_text().strip())


def allowed_file(directory: Path, *lines: str, name: str = "allowed_signers") -> Path:
    path = directory / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def ssh_verify(allowed: Path, principal: str, signature: Path, message: bytes,
               namespace: str = NAMESPACE) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", namespace,
         "-s", str(signature)], input=message, capture_output=True, check=False)


def ssh_sign(key: Key, message: Path, namespace: str = NAMESPACE) -> Path:
    """Sign ``message`` with ssh-keygen; the signature is ``<message>.sig`` (replaced)."""
    target = message.with_name(message.name + ".sig")
    target.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key.private), "-n", namespace,
                    str(message)], capture_output=True, check=True)
    return target

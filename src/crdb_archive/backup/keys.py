"""The keys a user gives to open encrypted backups: a passphrase or KMS URIs, never literals.

A passphrase comes from a file (read once; one trailing newline, ``\\n`` or ``\\r\\n``, is
removed, as ``echo`` and editors add one) or from the environment variable
``CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE``; a file given explicitly wins. KMS keys are URIs in
CockroachDB's form. On a command line a URI that carries a secret (``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``) is refused, because every user of the machine can read the process
list: such a URI is given as ``@FILE`` (one URI a line), or with ``AUTH=implicit`` and the
credentials in the environment or a profile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from crdb_archive.errors import BadInput
from crdb_archive.storage.kms import KmsUri, literal_secrets, parse_kms_uri
from crdb_archive.text import size

PASSPHRASE_ENV = "CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE"  # noqa: S105 - a variable name
# A passphrase file holds one line; a larger file is the wrong file.
_MAX_PASSPHRASE_FILE = 64 << 10
_MAX_KMS_FILE = 1 << 20


@dataclass(frozen=True)
class EncryptionKeys:
    """What may open an encrypted backup: a passphrase or KMS keys (never both).

    ``passphrase_source`` names where the passphrase came from, for messages; the passphrase
    itself is kept out of ``repr``.
    """

    passphrase: bytes | None = field(default=None, repr=False)
    passphrase_source: str | None = None
    kms: tuple[KmsUri, ...] = ()

    @property
    def mode(self) -> Literal["passphrase", "kms"] | None:
        if self.passphrase is not None:
            return "passphrase"
        return "kms" if self.kms else None

    @property
    def given(self) -> bool:
        return self.mode is not None


NO_KEYS = EncryptionKeys()


def load_keys(
    *,
    passphrase_file: Path | None = None,
    kms: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    command_line: bool = True,
) -> EncryptionKeys:
    """The keys given by options (``command_line``) or a job spec, and the environment.

    Raises BadInput for an unreadable or empty passphrase file, a malformed KMS URI, a secret
    in a KMS URI on the command line, or both a passphrase and KMS keys.
    """
    env = os.environ if environ is None else environ
    passphrase: bytes | None = None
    source: str | None = None
    if passphrase_file is not None:
        passphrase = read_passphrase_file(passphrase_file)
        source = f"the passphrase in {passphrase_file}"
    elif env.get(PASSPHRASE_ENV):
        passphrase = os.fsencode(env[PASSPHRASE_ENV])
        source = f"the passphrase in ${PASSPHRASE_ENV}"
    uris = [uri for text in kms for uri in _kms_texts(text, command_line)]
    if passphrase is not None and uris:
        where = "--encryption-passphrase-file" if passphrase_file else f"${PASSPHRASE_ENV}"
        raise BadInput(f"both a passphrase ({where}) and KMS keys are given: a backup is "
                       "encrypted one way, so give one of them")
    return EncryptionKeys(passphrase, source, tuple(parse_kms_uri(uri) for uri in uris))


def read_passphrase_file(path: Path) -> bytes:
    """The passphrase a file holds, without one trailing newline; raises BadInput."""
    data = _read_small(path, "encryption passphrase file", _MAX_PASSPHRASE_FILE)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise BadInput(f"encryption passphrase file {path} is empty")
    return data


def _kms_texts(text: str, command_line: bool) -> list[str]:
    if text.startswith("@"):
        path = Path(text[1:])
        content = _read_small(path, "KMS URI file", _MAX_KMS_FILE)
        try:
            lines = content.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise BadInput(f"KMS URI file {path} is not UTF-8 text") from None
        uris = [line.strip() for line in lines
                if line.strip() and not line.lstrip().startswith("#")]
        if not uris:
            raise BadInput(f"KMS URI file {path} holds no URI")
        return uris
    secrets = literal_secrets(text)
    if command_line and secrets:
        raise BadInput(
            f"--kms: the URI carries {' and '.join(secrets)} on the command line, where the "
            "process list shows it to every user of this machine; put the URI in a file and "
            "give --kms @FILE, or use AUTH=implicit with the credentials in the environment")
    return [text]


def _read_small(path: Path, what: str, limit: int) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise BadInput(f"cannot read {what} {path}: {error.strerror or error}") from None
    if len(data) > limit:
        raise BadInput(f"{what} {path} is larger than {size(limit)}: not such a file")
    return data

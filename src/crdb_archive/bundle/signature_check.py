"""What a verification says about a bundle's signature (tagmanifest-sha256.txt.sig).

A signature is only a verdict against keys the checker trusts. With an allowed_signers file
(``verify --allowed-signers``), a signature that is missing, malformed, by a key the file does
not list, or over another tag manifest is a ``signature`` problem. Without one, nothing about
the signature is a problem: it is reported (present, and the key it names) as not checked,
because a signature that anyone with write access could have replaced proves nothing by
itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crdb_archive.bundle import layout, tagfiles

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners


@dataclass(frozen=True)
class SignatureStatus:
    """The signature as one verification saw it.

    ``fingerprint`` is the key the signature names (None when there is none, or it cannot be
    read); ``signing_key`` the fingerprint bag-info.txt names. ``valid`` is None unless the
    signature was checked against allowed signers (``checked``).
    """

    present: bool
    fingerprint: str | None
    signing_key: str | None
    checked: bool
    valid: bool | None
    principals: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str:
        """One line for people."""
        by = f" by {self.fingerprint}" if self.fingerprint else ""
        if self.checked and self.valid:
            return f"valid{by} ({', '.join(self.principals)})"
        if self.checked:
            return f"INVALID: {self.problems[0]}" if self.problems else "INVALID"
        if not self.present:
            named = (f" (bag-info.txt names {self.signing_key})" if self.signing_key else "")
            return f"none{named}"
        return f"present{by}, not checked (give --allowed-signers to check it)"

    def to_json(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "fingerprint": self.fingerprint,
            "signing_key": self.signing_key,
            "checked": self.checked,
            "valid": self.valid,
            "principals": list(self.principals),
        }


def signing_key_label(bag_info: bytes | None) -> str | None:
    """The fingerprint bag-info.txt names as the bundle's signing key, if any."""
    if bag_info is None:
        return None
    try:
        values = tagfiles.parse_bag_info(bag_info).get(layout.SIGNING_KEY_LABEL, [])
    except tagfiles.TagFileError:
        return None
    return values[0] if len(values) == 1 and values[0] else None


def check_signature(
    tag_manifest: bytes | None,
    armored: bytes | None,
    *,
    oversized: bool = False,
    bag_info: bytes | None = None,
    allowed: AllowedSigners | None = None,
) -> SignatureStatus:
    """The status of the signature ``armored`` (None: absent) of ``tag_manifest``.

    ``problems`` are filled only when ``allowed`` is given: the signature must then be a valid
    one by a key ``allowed`` lists, over this very tag manifest.
    """
    label = signing_key_label(bag_info)
    present = armored is not None or oversized
    if not present and allowed is None:
        return SignatureStatus(False, None, label, False, None)
    # Imported here: unsigned bundles are verified without loading the crypto library.
    from crdb_archive.bundle import signature  # noqa: PLC0415

    fingerprint: str | None = None
    unreadable: str | None = "larger than any SSH signature" if oversized else None
    if armored is not None:
        try:
            fingerprint = signature.parse_signature(armored).fingerprint
        except signature.SignatureProblem as error:
            unreadable = str(error)
    if allowed is None:
        return SignatureStatus(present, fingerprint, label, False, None)
    problems: list[str] = []
    principals: tuple[str, ...] = ()
    if not present:
        named = f" although bag-info.txt names {label}" if label else ""
        problems.append(f"the bundle is not signed{named}: it has no {layout.SIGNATURE}")
    elif unreadable is not None:
        problems.append(unreadable)
    elif tag_manifest is None:
        problems.append(f"cannot be checked: {layout.TAGMANIFEST_SHA256} is missing or "
                        "unreadable")
    elif armored is not None:
        principals = _verify(tag_manifest, armored, allowed, label, fingerprint, problems)
    return SignatureStatus(present, fingerprint, label, True, not problems, principals,
                           problems)


def _verify(tag_manifest: bytes, armored: bytes, allowed: AllowedSigners, label: str | None,
            fingerprint: str | None, problems: list[str]) -> tuple[str, ...]:
    """The principals of a valid signature over ``tag_manifest`` by a key ``allowed`` lists;
    what is wrong otherwise goes to ``problems``."""
    from crdb_archive.bundle import signature  # noqa: PLC0415

    try:
        principals = signature.verify_signature(tag_manifest, armored, allowed).principals
    except signature.SignatureProblem as error:
        problems.append(str(error))
        return ()
    if label is not None and label != fingerprint:
        problems.append(f"{layout.BAG_INFO} names the signing key {label}, and the signature "
                        f"is by {fingerprint}")
    return principals

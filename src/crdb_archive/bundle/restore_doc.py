"""RESTORE.md: restore steps for a reader who has the bundle and standard tools, nothing else."""

from __future__ import annotations

from crdb_archive.bundle.description import BackupDescription, BackupFacts, BinaryEntry
from crdb_archive.text import count
from crdb_archive.versions import release_index


def _binary_section(binary: BinaryEntry) -> list[str]:
    file_name = binary.file_name
    folder = file_name.removesuffix(".tgz").removesuffix(".zip")
    executable = "cockroach.exe" if binary.platform.startswith("windows") else "cockroach"
    unpack = (f'unzip "$BUNDLE/data/cockroach/{file_name}"' if file_name.endswith(".zip")
              else f'tar xzf "$BUNDLE/data/cockroach/{file_name}"')
    lines = [f"### {binary.platform}", ""]
    if not binary.official:
        checksum = binary.published_checksum_url
        with_checksum = f", with the checksum published at {checksum}" if checksum else ""
        lines += [f"Fetched from {binary.url}{with_checksum}: not from "
                  "https://binaries.cockroachdb.com itself.", ""]
    lines.append("```sh")
    if binary.published_checksum_file:
        lines += [
            "# the archive against its published checksum (checksum file kept verbatim):",
            f'(cd "$BUNDLE/data/cockroach" && sha256sum -c {file_name}.sha256sum)',
        ]
    else:
        lines.append("# no published checksum exists for this release; compare with "
                     f"{binary.sha256}")
        lines.append(f'sha256sum "$BUNDLE/data/cockroach/{file_name}"')
    lines += [unpack, f"./{folder}/{executable} version", "```", ""]
    lines.append(
        f"The binary is `{folder}/{executable}`; its spatial libraries (libgeos), where the "
        f"release ships them, are in `{folder}/lib/`: pass `--spatial-libs={folder}/lib` to "
        "`cockroach start-single-node` if you need spatial features."
    )
    lines.append("")
    return lines


_KMS_PLACEHOLDER = "aws:///<the KMS key id or ARN given to BACKUP>?AUTH=implicit&REGION=<region>"


def _encryption(backup: BackupFacts) -> tuple[str, list[str]]:
    """The RESTORE option that opens the backup, and lines that say what it needs."""
    mode = backup.encryption_mode
    if mode == "none":
        return "", ["- Encrypted: no"]
    if mode == "passphrase":
        return (" WITH encryption_passphrase = '<your passphrase>'",
                ["- Encrypted: yes, with a passphrase: RESTORE needs the passphrase given to "
                 "BACKUP (it is not stored in this bundle)"])
    if mode == "kms":
        recorded = backup.encryption.kms if backup.encryption is not None else ()
        uri = (recorded or (_KMS_PLACEHOLDER,))[0]
        lines = ["- Encrypted: yes, with a KMS key: RESTORE needs access to a KMS key that "
                 "BACKUP used (ENCRYPTION-INFO in the backup holds the data key it wrapped)"]
        if "=redacted" in uri:
            lines.append("  (replace each `redacted` in the URI below with your credentials, or "
                         "use AUTH=implicit)")
        return f" WITH kms = '{_sql_string(uri)}'", lines
    return (" WITH encryption_passphrase = '<your passphrase>'",
            ["- Encrypted: yes, and how is unknown: use `WITH encryption_passphrase = '...'` "
             "below, or `WITH kms = '<KMS URI>'` if BACKUP was given a KMS key"])


def signature_lines(fingerprint: str | None) -> list[str]:
    """How to check a signed bundle's signature with OpenSSH alone (nothing for an unsigned
    one); markdown lines, read from the bundle folder."""
    if fingerprint is None:
        return []
    return [
        "The bundle is signed: `tagmanifest-sha256.txt.sig` is an OpenSSH signature "
        "(namespace `crdb-archive`) of `tagmanifest-sha256.txt`, which pins every other file. "
        f"It was made with the key {fingerprint}. Check it with OpenSSH 8.1 or later and "
        "nothing else: put the signer's public key, obtained from its owner (not from this "
        "bundle), in a file `allowed_signers` as one line `archive ssh-ed25519 AAAA...` "
        "(`ssh-keygen -l -f` of the public key must print the fingerprint above), then:",
        "",
        "```sh",
        "ssh-keygen -Y verify -f allowed_signers -I archive -n crdb-archive "
        "-s tagmanifest-sha256.txt.sig < tagmanifest-sha256.txt",
        "```",
        "",
        "It prints `Good \"crdb-archive\" signature for archive` when the tag manifest is the "
        "one the key signed; the `sha256sum -c` lines above then tie every file to it.",
        "",
    ]


def _sql_string(text: str) -> str:
    return text.replace("'", "''")


def render_restore_md(description: BackupDescription, *,
                      signing_key: str | None = None) -> bytes:
    """The RESTORE.md of a backup bundle, generated from its crdb-archive.json content; with
    ``signing_key`` (the key's fingerprint), how to check its signature too."""
    backup = description.backup
    crdb = description.cockroachdb
    name = description.name
    version = crdb.version
    major = crdb.major_version
    folder = description.binaries[0].file_name.removesuffix(".tgz").removesuffix(".zip")
    options, encryption_lines = _encryption(backup)
    if backup.kind == "collection":
        target = f"'/{(backup.subdir or '').lstrip('/')}' IN 'nodelocal://1/backup'"
        show = f"SHOW BACKUP FROM {target}{options};"
    else:
        target = "'nodelocal://1/backup'"
        show = f"SHOW BACKUP {target}{options};"
    restore_into = ", ".join(crdb.restorable_into)

    out = [
        f"# Restoring {name}",
        "",
        f"This bundle holds a CockroachDB backup taken by CockroachDB **{version}** "
        f"(major version {major}) and the "
        f"{count(len(description.binaries), 'CockroachDB release archive')} of that version, "
        + ("downloaded from Cockroach Labs (https://binaries.cockroachdb.com) and checked "
           "against their published SHA-256."
           if all(b.official for b in description.binaries) else
           "checked against the SHA-256 published where they were fetched from (recorded "
           "below and in crdb-archive.json)."),
        "Nothing but standard tools (`sha256sum`, `tar`, a shell) is needed to restore it.",
        "",
        f"- Backup end time: {backup.end_time or 'unknown (encrypted manifest)'}",
        f"- Cluster ID: {backup.cluster_id or 'unknown'}",
        f"- Backup kind: {backup.kind}"
        + (f", full backup `{backup.subdir}`" if backup.subdir else ""),
        f"- Incremental backups included: {len(backup.incrementals)}",
        *encryption_lines,
        f"- Restorable into CockroachDB {restore_into}"
        + (" (and possibly a later major released after this bundle was made)"
           if crdb.restorable_into_may_grow else ""),
        "",
        "## 1. Check the bundle",
        "",
        "The bundle is a BagIt 1.0 bag (RFC 8493). If you have the single-file form, unpack it "
        f"first: `tar xf {name}.tar`. Then, from the bundle folder:",
        "",
        "```sh",
        "sha256sum -c tagmanifest-sha256.txt   # the tag files",
        "sha256sum -c manifest-sha256.txt      # every payload file",
        "b3sum -c manifest-blake3.txt          # the same, faster, where b3sum is installed",
        "```",
        "",
        *signature_lines(signing_key),
        "## 2. Unpack the CockroachDB binary",
        "",
        "Work in a directory outside the bundle, so that the bundle stays as it was made and "
        "keeps verifying:",
        "",
        "```sh",
        f"BUNDLE=/path/to/{name}    # the bundle folder",
        "mkdir crdb-restore && cd crdb-restore",
        "```",
        "",
    ]
    for binary in description.binaries:
        out += _binary_section(binary)
    if description.other_platforms:
        out += [
            "Checksums published for the release's other platforms, recorded so that a later "
            "download can be checked:",
            "",
        ]
        out += [f"- {p.file_name}: `{p.published_sha256 or 'none published'}`"
                for p in description.other_platforms]
        out.append("")
    out += [
        "## 3. Start a temporary single-node cluster on this version",
        "",
        "`nodelocal://1/...` then names files under the bundle's `data/` folder, which "
        "RESTORE only reads.",
        "",
        "```sh",
        f"./{folder}/cockroach start-single-node --insecure --store=./store \\",
        "    --external-io-dir=\"$BUNDLE/data\" --listen-addr=localhost:26257 \\",
        "    --http-addr=localhost:8080 --background",
        f"./{folder}/cockroach sql --insecure --host=localhost:26257",
        "```",
        "",
        "## 4. Restore",
        "",
        "See what the backup holds, then restore it (a cluster backup restores whole; for a "
        "database or table backup use `RESTORE DATABASE <name> FROM ...` or "
        "`RESTORE TABLE <db.table> FROM ...`):",
        "",
        "```sql",
        show,
        f"RESTORE FROM {target}{options};",
        "```",
        "",
        "## 5. Going further: newer versions",
        "",
        f"CockroachDB restores a backup taken on major version N only into N or N+1, or N+2 "
        f"when N+1 is an innovation release; never into an older version. A {major} backup "
        f"restores into {restore_into}.",
        "",
    ]
    out += _upgrade_lines(major)
    return ("\n".join(out).rstrip() + "\n").encode("utf-8")


def _upgrade_lines(major_name: str) -> list[str]:
    """The upgrade chain from the backup's major to the newest released regular major."""
    index = release_index()
    start = index.major(major_name)
    newest = next(
        (m for m in reversed(index.majors) if not m.upcoming and not m.is_innovation), None
    )
    if newest is None or newest.position <= start.position:
        return []
    path = index.upgrade_path(start, newest)
    return [
        "To bring the data into a newer cluster, restore it into a cluster on this version "
        "(above), upgrade that cluster one allowed step at a time, finalizing each upgrade, "
        "then take a new backup and restore it into the target:",
        "",
        "    " + " -> ".join(m.name for m in path),
        "",
        "Each step needs the binary of that major version. Innovation releases can be "
        "skipped; an innovation release can only be upgraded to the next regular release.",
        "",
    ]

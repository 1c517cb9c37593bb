"""Text output of the commands: what a person reads in place of the JSON, in counted words and
human sizes. Presentation only; every fact comes from the core's result."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crdb_archive import ui
from crdb_archive.text import count, files, size

if TYPE_CHECKING:
    from crdb_archive.binaries import FetchResult
    from crdb_archive.bundle.verify import VerifyReport


def emit(payload: dict[str, Any], text: list[str], json_output: bool) -> None:
    """The payload as one JSON object with --json, else the text lines."""
    if json_output:
        ui.print_json(payload)
    else:
        for line in text:
            ui.line(line)


def warn_all(warnings: list[str], json_output: bool) -> None:
    """Warnings on stderr, unless --json carries them in its object."""
    if not json_output:
        for warning in warnings:
            ui.warning_line(warning)


def payload_oxum(oxum: str) -> str:
    """A Payload-Oxum (``octets.files``) in words; as written when it is not one."""
    octets, _, number = oxum.partition(".")
    if not (octets.isdigit() and number.isdigit()):
        return oxum
    return files(int(number), int(octets))


# --- versions ------------------------------------------------------------------------------------


def majors_lines(rows: list[dict[str, Any]]) -> list[str]:
    text = [f"{'major':7} {'type':10} {'released':10}  {'support end':11}  "
            f"{'binaries removed':16}  days left"]
    for r in rows:
        left = r["days_until_binary_removal"]
        left_text = "" if left is None else ("removed" if left < 0 else str(left))
        text.append(
            f"{r['major']:7} {r['type']:10} {r['release_date'] or 'upcoming':10}  "
            f"{r['support_end'] or '-':11}  {r['binary_removal_date'] or '-':16}  "
            f"{left_text}"
        )
    return text


def releases_lines(rows: list[dict[str, Any]]) -> list[str]:
    text = []
    for r in rows:
        flags = [f for f in ("withdrawn", "cloud_only") if r[f]]
        text.append(f"{r['release']:24} {r['date']}  {r['type']:10} {' '.join(flags)}".rstrip())
    return text


def fetch_lines(result: FetchResult) -> list[str]:
    lines = []
    for f in result.files:
        a = f.archive
        verdict = (
            f"verified against published SHA-256 from {a.published.url}" if a.published
            else f"NOT verified: no published checksum for {a.release}"
        )
        cached = " (from cache)" if a.from_cache else ""
        lines.append(f"{a.path}  sha256 {a.sha256}  {verdict}{cached}")
        if f.extracted is not None and f.version_check is not None:
            lines.append(f"  extracted {f.extracted.root}: {f.version_check.detail}")
    return lines


# --- inspect -------------------------------------------------------------------------------------


def export_source_lines(p: dict[str, Any]) -> list[str]:
    what = "changefeed output" if p["kind"] == "changefeed" else "EXPORT output"
    resolved = p["resolved"]
    lines = [
        f"source:           {p['source']}",
        f"kind:             {what}, format {p['format']}"
        + (f", {p['partitioning']} partitions" if p["partitioning"] else ""),
        f"files:            {files(p['files'], p['bytes'])}, "
        f"{count(p['data_files'], 'data file')}"
        + (f" from {count(p['sessions'], 'session')}" if p["kind"] == "changefeed" else ""),
    ]
    if p["kind"] == "changefeed":
        lines.append(f"topics:           {', '.join(p['topics'])}")
        lines.append(f"resolved:         {count(len(resolved), 'timestamp')}"
                     + (f", newest {resolved[-1]['hlc']} ({resolved[-1]['time']})"
                        if resolved else ": the output can only be taken as a whole"))
        lines.append("complete:         " + ("yes, no file id is missing" if p["complete"]
                                             else f"NO, {count(len(p['gaps']), 'gap')}"))
        lines += [f"  gap: {gap}" for gap in p["gaps"]]
    return lines


def backup_lines(p: dict[str, Any]) -> list[str]:
    where = "single backup" if p["kind"] == "backup" else (
        f"collection, full backup {p['subdir']}"
        + (" (LATEST)" if p["subdir"] == p["latest"] else "")
    )
    encryption = p["encryption"]
    if p["encrypted"] and not encryption["decrypted"]:
        version = ("unknown: encrypted backup; give its key (--encryption-passphrase-file or "
                   "--kms), or the version with --version when archiving")
    else:
        version = f"{p['build_tag'] or 'unknown'} (build tag), major {p['major_version'] or '?'}"
    lines = [
        f"backup:           {where}",
        f"version:          {version}",
        f"encryption:       {_encryption_text(encryption)}",
        f"cluster version:  {p['cluster_version'] or '-'}",
        f"end time:         {p['end_time'] or '-'}",
        f"cluster id:       {p['cluster_id'] or '-'}",
        f"files:            {files(p['files'], p['bytes'])}, "
        f"{count(len(p['incrementals']), 'incremental backup')}"
        + (" (archived with --with-incrementals)" if p["incrementals"] else ""),
        f"restorable into:  {', '.join(p['restorable_into']) or '-'}",
    ]
    if p.get("left_out_count"):
        why = ", ".join(f"{reason}: {n:,}" for reason, n in p["left_out_reasons"].items())
        lines.append(f"left out:         "
                     f"{files(p['left_out_count'], p['left_out_bytes'])} ({why})")
    if p["kind"] == "collection":
        lines.append(f"full backups:     {len(p['backups'])}")
        lines += [
            f"  {b['subdir']}  {b['end_time'] or '-'}{'  LATEST' if b['latest'] else ''}"
            for b in p["backups"]
        ]
    return lines


def _encryption_text(e: dict[str, Any]) -> str:
    if e["mode"] == "none":
        return "none"
    how = {"passphrase": "a passphrase", "kms": "KMS", "unknown": "an unknown key"}[e["mode"]]
    if not e["decrypted"]:
        return f"encrypted with {how}, not decrypted"
    return f"encrypted with {how}, decrypted" + (f" with {e['kms'][0]}" if e["kms"] else "")


def bundle_lines(p: dict[str, Any]) -> list[str]:
    if p["bundle_kind"] == "export":
        return _export_bundle_lines(p)
    backup = p["backup"]
    return [
        f"bundle:           {p['bundle']} ({p['form']})",
        f"version:          {p['version']} (major {p['major_version']})",
        f"restorable into:  {', '.join(p['restorable_into'])}",
        f"binaries:         {', '.join(p['platforms'])}",
        f"backup:           {backup['kind']}"
        + (f", full backup {backup['subdir']}" if backup["subdir"] else "")
        + f", {count(len(backup['incrementals']), 'incremental backup')}"
        + (f", encrypted ({backup['encryption']})" if backup["encrypted"] else ""),
        f"end time:         {backup['end_time'] or '-'}",
        f"cluster id:       {backup['cluster_id'] or '-'}",
        f"payload:          {payload_oxum(p['payload_oxum'])}, bagged {p['bagging_date']}",
    ] + [f"archived with warning: {warning}" for warning in p["warnings"]]


def _export_bundle_lines(p: dict[str, Any]) -> list[str]:
    as_of = p["as_of"]
    lines = [
        f"bundle:           {p['bundle']} ({p['form']}), export",
        f"source:           {p['source']} ({p['source_kind']} output, {p['format']})",
        "as of:            " + (f"{as_of['time']} (HLC {as_of['hlc']})" if as_of
                                else "the output as a whole"),
        f"tables:           {len(p['tables'])}",
    ]
    lines += [f"  {name}: {count(rows, 'row')}" for name, rows in p["tables"].items()]
    lines += [f"lost file:        {gap}" for gap in p["gaps"]]
    lines.append(f"payload:          {payload_oxum(p['payload_oxum'])}, bagged "
                 f"{p['bagging_date']}")
    lines += [f"note: {note}" for note in p["notes"]]
    return lines + [f"archived with warning: {warning}" for warning in p["warnings"]]


# --- bundles -------------------------------------------------------------------------------------


def verify_lines(report: VerifyReport) -> list[str]:
    decrypted = ("" if report.decrypted is None
                 else f", {count(report.decrypted, 'encrypted file')} authenticated")
    # A bundle sound in every other respect whose signature fails is not damaged: it is not
    # vouched for by a key the auditor trusts.
    verdict = ("OK" if report.ok else "NOT TRUSTED"
               if all(p.kind == "signature" for p in report.problems) else "DAMAGED")
    lines = [f"{report.bundle}: {verdict} ({files(report.files, report.bytes)}, "
             f"{report.mode} check{decrypted})"]
    if report.signature is not None and (report.signature.present or report.signature.checked):
        lines.append(f"  signature: {report.signature.detail}")
    lines += [f"  {problem}" for problem in report.problems]
    return lines


# --- jobs ----------------------------------------------------------------------------------------


def job_text(kind: str, e: dict[str, Any]) -> str | None:
    """One event of a job run as text; None for events that print nothing."""
    render = _JOB_TEXT.get(kind)
    return render(e) if render is not None else None


def _plan_text(e: dict[str, Any]) -> str:
    verb = "would archive" if e["dry_run"] else "to archive"
    text = (f"plan: {len(e['to_archive'])} {verb}, {len(e['archived'])} already archived, "
            f"{len(e['skipped']) + len(e.get('open_chains', []))} skipped; {e['source']} -> "
            f"{e['destination']}")
    lock = e.get("object_lock")
    if lock and lock["bundles"]:
        lock_verb = "would lock" if e["dry_run"] else "locks"
        text += (f"\nplan: {lock_verb} {count(lock['bundles'], 'new bundle')} in "
                 f"{lock['mode']} mode until {lock['retain_until']}")
    return text


def _archive_text(e: dict[str, Any]) -> str:
    if not e["created"]:
        return f"already archived: {e['bundle']}"
    took = f"{files(e['files'], e['bytes'])}, {e['seconds']:.1f} s"
    if e.get("kind") == "export":
        rows = sum(e["tables"].values())
        return (f"archived {e['bundle']}: {count(len(e['tables']), 'table')}, "
                f"{count(rows, 'row')} as of {e['as_of'] or 'the whole output'}, {took}")
    return f"archived {e['bundle']}: CockroachDB {e['version']}, {took}"


def _retention_text(e: dict[str, Any]) -> str:
    if "reason" in e:
        return f"retention: {e['reason']}"
    plan = "" if e["applied"] else " (dry run)"
    return f"retention: keep {e['keep']}, delete {e['delete']} of {e['considered']}{plan}"


def _delete_text(e: dict[str, Any]) -> str:
    if e.get("resumed"):
        return f"finished deleting {e['bundle']} (a delete an earlier run started)"
    return f"{'would delete' if e['dry_run'] else 'deleted'} {e['bundle']}"


def _done_text(e: dict[str, Any]) -> str:
    return (f"done: exit {e['exit_code']}; {count(e['bundles_written'], 'bundle')} written "
            f"({size(e['bytes_written'])}), {e['bundles_deleted']} deleted, "
            f"{count(e['failures'], 'failure')}, {count(e['warnings'], 'warning')}, "
            f"{e['seconds']:.1f} s")


def _verdict(e: dict[str, Any]) -> str:
    return "OK" if e["ok"] else f"DAMAGED: {e['problems'][0]}"


_JOB_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "plan": _plan_text,
    "skip": lambda e: f"skip {e['bundle'] or e['backup']}: {e['reason']}",
    "archive": _archive_text,
    "verify": lambda e: f"verified {e['bundle']} ({e['mode']}): {_verdict(e)}",
    "retention": _retention_text,
    "keep": lambda e: f"keep {e['bundle']}: {', '.join(e['reasons'])}",
    "delete": _delete_text,
    "audit": lambda e: f"audited {e['bundle']}: {_verdict(e)}",
    "audit_skip": lambda e: f"audit passed by {e['bundle']}: {e['reason']}",
    "audited": lambda e: (f"audit: {e['checked']} checked, {e['damaged']} damaged, "
                          f"{e['skipped']} skipped, {e['remaining']} left for later runs, "
                          f"{e['never_verified']} never verified"),
    "done": _done_text,
}

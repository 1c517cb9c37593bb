"""``inspect`` of changefeed or EXPORT output: what its names say, without a snapshot.

The same checks as an archive runs first (every name parses, RESOLVED bodies agree with their
names), with lost files reported instead of refused, and no schema: topics are shown as the
sink named them.
"""

from __future__ import annotations

from typing import Any

from crdb_archive.export.scan import scan_export
from crdb_archive.export.source_files import open_export_source


def summarize_export_source(source: str, *, endpoint_url: str | None = None) -> dict[str, Any]:
    """What the output at ``source`` holds; raises what scan_export raises (except for
    gaps), StorageError."""
    with open_export_source(source, endpoint_url=endpoint_url) as opened:
        scan = scan_export(opened.listing, None, opened.open_small, allow_gaps=True)
        display = opened.display
    resolved = sorted(scan.resolved, key=lambda r: r.time)
    sizes = dict(scan.sizes)
    data_paths = [f.path for f in scan.data_files] + [f.path for f in scan.export_files]
    return {
        "kind": scan.kind,
        "source": display,
        "format": scan.format,
        "partitioning": scan.partitioning,
        "files": len(scan.sizes),
        "bytes": sum(size for _, size in scan.sizes),
        "data_files": len(data_paths),
        "data_bytes": sum(sizes[path] for path in data_paths),
        "topics": list(scan.feed_topics),
        "sessions": len({f.session for f in scan.data_files}),
        "resolved": [{"hlc": r.time.decimal(), "time": r.time.iso(), "file": r.file.path}
                     for r in resolved],
        "latest_resolved": resolved[-1].time.decimal() if resolved else None,
        "gaps": [gap.describe() for gap in scan.gaps],
        "complete": not scan.gaps,
    }

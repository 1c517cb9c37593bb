"""Export bundles: changefeed and EXPORT output, its schema, a consolidated snapshot.

The data engine, in the order a caller uses it:

- :func:`crdb_archive.export.scan.recognise` tells changefeed from EXPORT output by file
  names (None when neither shows);
- :func:`crdb_archive.export.scan.scan_export` checks a listing of ``(relative path, size)``:
  every name parses, no file id is missing in any sink, RESOLVED bodies agree with their
  names, every topic is a table of the :class:`~crdb_archive.export.model.Schema`;
- :func:`crdb_archive.export.plan.plan_snapshot` chooses T (``latest``, an explicit RESOLVED
  HLC, or the output as a whole) and the files before ``T.RESOLVED``;
- :func:`crdb_archive.export.snapshot.build_snapshot` validates every line or row of local
  copies of the files and writes ``<schema>.<table>.parquet`` and ``<schema>.<table>.csv.gz``
  per table, consolidated by DuckDB under a memory limit.

Values stay exact: numbers are kept as their digits from the JSON text (:mod:`values`), DuckDB
types them only on the way out (:mod:`sqltypes`).
"""

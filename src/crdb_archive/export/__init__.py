"""Export bundles: changefeed and EXPORT output, its schema, a consolidated snapshot."""

"""Where backups are read from and bundles written to; URIs and the redaction of secrets."""

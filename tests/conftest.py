"""Fixtures shared by every test module: the loopback servers of tests/support."""

pytest_plugins = [
    "support.mirror",
    "support.s3",
    "support.azure",
    "support.azure_identity",
    "support.faultproxy",
    "support.postgres",
    "support.gcs",
    "support.google_token",
    "support.storage_backends",
    "support.clouds",
    "support.fault_bundles",
]

"""Test support: a loopback mirror of the binaries site and generated release archives."""

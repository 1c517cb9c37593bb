"""Bundle format 1: a BagIt 1.0 bag holding a backup and the binaries that can restore it."""

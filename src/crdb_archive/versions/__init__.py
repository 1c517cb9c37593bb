"""CockroachDB versions: the values (:mod:`.model`), the embedded release index and the order
of majors (:mod:`.index`), and the restore policy's answers (:mod:`.policy`). The names other
modules use are importable from here."""

from crdb_archive.versions.index import ReleaseIndex, release_index, releases_listing
from crdb_archive.versions.model import Major, MajorType, Release, VersionSpec
from crdb_archive.versions.policy import Compatibility, RestorePlan, compatibility, restore_plan

__all__ = [
    "Compatibility", "Major", "MajorType", "Release", "ReleaseIndex", "RestorePlan",
    "VersionSpec", "compatibility", "release_index", "releases_listing", "restore_plan",
]

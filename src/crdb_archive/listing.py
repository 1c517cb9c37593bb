"""A directory's entries sorted into regular files, subdirectories and the rest, by the entry
types the file system gives: no file is opened or stat'ed where it gives them (Linux file
systems do), so that a directory of 100k files costs one listing, not 100k system calls.

Imported by the hashing workers too: nothing here may import more than the standard library.
"""

from __future__ import annotations

import os


def list_directory(directory: int | str) -> tuple[list[str], list[str], list[tuple[str, bool]]]:
    """The names of the regular files and of the subdirectories of ``directory`` (a path, or
    an open descriptor), each sorted, and of what is neither, each with whether it is a
    symbolic link. Links are never followed. Raises OSError."""
    files: list[str] = []
    directories: list[str] = []
    others: list[tuple[str, bool]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                files.append(entry.name)
            elif entry.is_dir(follow_symlinks=False):
                directories.append(entry.name)
            else:
                others.append((entry.name, entry.is_symlink()))
    files.sort()
    directories.sort()
    return files, directories, others

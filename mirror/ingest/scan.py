"""Which files an ingest reads: the ones named, and what folders hold.

A file named directly is always read, and its content decides (a page
dump goes in, anything else is refused with the reason). A folder is
searched recursively and its files are read the same way when their names
could be a saved page (TEXT_SUFFIXES); the others are skipped by name,
and the scan says so, for an operator who wonders where a file went.
Hidden files and folders (a dot in front) and anything that is not a
regular file (a named pipe, a socket) are passed over without a word:
nobody saves a page there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

#: Names read in a folder: what browsers and copy-paste save page text as.
#: An HTML page among them is refused by its content, as a named one is.
TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".dump", ".html", ".htm", ""})


@dataclass
class Scan:
    """The files to read, in order, and what was passed over by name."""

    files: list[Path] = field(default_factory=list)
    #: Bytes of each file to read (0 for a pipe or a file that vanished).
    sizes: dict[Path, int] = field(default_factory=dict)
    #: Files in folders skipped by their names, with the reason.
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: The files named on the command line (the rest came from folders).
    named: set[Path] = field(default_factory=set)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def scan(paths: Iterable[Path]) -> Scan:
    """The files under ``paths``: named files as they are, folders searched."""
    found = Scan()
    for path in paths:
        if not path.is_dir():
            found.files.append(path)
            found.named.add(path)
            found.sizes[path] = _size(path)
            continue
        for candidate in sorted(path.rglob("*")):
            if any(part.startswith(".") for part in candidate.relative_to(path).parts):
                continue
            try:
                stat = candidate.stat()
            except OSError:  # vanished, or a broken link: nothing to read
                continue
            if not S_ISREG(stat.st_mode):
                continue
            suffix = candidate.suffix.lower()
            if suffix in TEXT_SUFFIXES:
                found.files.append(candidate)
                found.sizes[candidate] = stat.st_size
            else:
                found.skipped.append((candidate, f"name ends in {suffix}"))
    return found


def find_dump_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and the files folders hold that could be page dumps."""
    yield from scan(paths).files


def _size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return os.stat(path).st_size
    return 0

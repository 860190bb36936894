"""An ingest's running totals, from its file reports: what the progress and summary show.

A file is stored, skipped or failed. Skipped: found in a folder and, by
its name or its content, no page dump (a picture, an HTML page); the
ingest goes on and says how many and why. Failed: named on the command
line and refused, or not readable or not storable at all; the operator
has to look at it, so the exit status says so.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from mirror.ingest.batch import FileReport
from mirror.ingest.scan import Scan

#: The details a reason names per file (offsets, sizes, the kind tried), which
#: would make every count a 1: "binary file (NUL byte at offset 8)" counts as
#: "binary file", "not UTF-8: invalid byte 0xe9 at offset 6" as "not UTF-8".
_DETAIL = re.compile(r" \(.*\)$|: invalid byte .*$")


def reason_kind(reason: str) -> str:
    """A refusal's reason without what differs from file to file."""
    return _DETAIL.sub("", reason)


@dataclass
class Tally:
    """Totals over the reports seen so far (``add`` each batch's)."""

    scan: Scan
    files: int = 0  # files read (whatever became of them)
    bytes: int = 0
    posts: int = 0
    comments: int = 0
    merged: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    #: Every file read, in order.
    reports: list[FileReport] = field(default_factory=list)
    stored: list[FileReport] = field(default_factory=list)
    #: Skipped by content, then (``skipped_by_name``) by name.
    skipped: list[FileReport] = field(default_factory=list)
    skipped_by_name: list[FileReport] = field(default_factory=list)
    failed: list[FileReport] = field(default_factory=list)
    #: Stored files whose relative times were counted back from their mtime.
    guessed_capture: list[FileReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.skipped_by_name = [
            FileReport(path, error=reason, not_a_dump=True) for path, reason in self.scan.skipped
        ]
        self.skipped = list(self.skipped_by_name)

    @property
    def items(self) -> int:
        """Copies of posts and comments read: new ones and those merged into known ones."""
        return self.posts + self.comments + self.merged

    def add(self, reports: Iterable[FileReport]) -> None:
        for report in reports:
            self.reports.append(report)
            self.files += 1
            self.bytes += self.scan.sizes.get(report.path, 0)
            if report.ok:
                self.stored.append(report)
                self.kinds[report.kind or "?"] += 1
                self.posts += report.posts
                self.comments += report.comments
                self.merged += report.merged
                if report.counted_from_mtime is not None:
                    self.guessed_capture.append(report)
            elif self.is_skip(report):
                self.skipped.append(report)
            else:
                self.failed.append(report)

    def is_skip(self, report: FileReport) -> bool:
        """Whether a file that did not go in was passed over (else it failed)."""
        return not report.ok and report.not_a_dump and report.path not in self.scan.named

    def skipped_reasons(self) -> list[tuple[str, int]]:
        """Each reason files were skipped for, with how many, the commonest first."""
        counts = Counter(reason_kind(r.error or "") for r in self.skipped)
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    @property
    def unread(self) -> int:
        """Files of the scan not read (yet, or at all: the ingest was stopped)."""
        return len(self.scan.files) - self.files

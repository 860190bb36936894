"""What `mirror ingest` shows: progress on a terminal, a summary, warnings, the per-file table.

The progress bar goes to stderr and only to a terminal; everything else is
plain lines, whole: a path is never cut to fit a width (output that is not
a terminal is read by programs and by grep, which cannot undo an ellipsis).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mirror.ingest.batch import FileReport
from mirror.ingest.tally import Tally

#: Up to this many files are named one per line (a warning, a skip); beyond
#: that one line says how many, and `-v` lists them all.
FEW_FILES = 3

OnBatch = Callable[[list[FileReport]], None]


@contextlib.contextmanager
def progress_shown(tally: Tally, console: Console) -> Iterator[OnBatch]:
    """A callback that adds a batch's reports to ``tally`` and, on a terminal, shows them.

    Refreshed by the batches, not by a timer: a refresh thread would keep
    the ingest from forking its partner (a process running other threads
    does not fork).
    """
    if not console.is_terminal:
        yield tally.add
        return
    total = decimal(tally.scan.total_bytes)
    bar = Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files, {task.fields[size]}, {task.fields[items]} items"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        auto_refresh=False,
    )
    task = bar.add_task(
        "ingest", total=len(tally.scan.files), size=f"{decimal(0)}/{total}", items=0
    )

    def shown(reports: list[FileReport]) -> None:
        tally.add(reports)
        size = f"{decimal(tally.bytes)}/{total}"
        bar.update(task, completed=tally.files, size=size, items=f"{tally.items:,}")
        bar.refresh()

    with bar, _logs_above_the_bar():
        bar.refresh()
        yield shown


@contextlib.contextmanager
def _logs_above_the_bar() -> Iterator[None]:
    """Log lines written while the bar shows go through rich, which prints them above it.

    The log handler holds the stderr it was set up with; writing there
    directly would tear the bar (rich redirects ``sys.stderr`` only).
    """
    moved = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
            moved.append((handler, handler.setStream(sys.stderr)))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


def summary(tally: Tally, seconds: float) -> list[str]:
    """The ingest in a line, and a second one for what did not go in."""
    stored, found = len(tally.stored), len(tally.scan.files) + len(tally.skipped_by_name)
    read = f"{stored:,}" if stored == found else f"{stored:,} of {found:,}"
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in tally.kinds.most_common())
    lines = [
        f"ingested {read} {_plural(found, 'file')} "
        f"({decimal(tally.bytes)} in {seconds:.1f} s)"
        + (f": {kinds}" if kinds else "")
        + f"; {_count(tally.posts, 'new post')}, {_count(tally.comments, 'new comment')}, "
        f"{_count(tally.merged, 'copy', 'copies')} merged into items already stored"
    ]
    missed = []
    if tally.failed:
        missed.append(f"{_count(len(tally.failed), 'file')} refused (named above)")
    if tally.skipped:
        reasons = ", ".join(f"{reason} ({n:,})" for reason, n in tally.skipped_reasons())
        missed.append(f"{len(tally.skipped):,} skipped: {reasons}")
    if missed:
        hint = " (`mirror ingest -v` lists every file)" if len(tally.skipped) > FEW_FILES else ""
        lines.append("not ingested: " + "; ".join(missed) + hint)
    return lines


def named_problems(tally: Tally) -> list[str]:
    """One stderr line per refused file, and per skipped one when they are few."""
    lines = [f"mirror: refused {r.path}: {r.error}" for r in tally.failed]
    if len(tally.skipped) <= FEW_FILES:
        skipped = sorted(tally.skipped, key=lambda r: r.path)
        lines += [f"mirror: skipped {r.path}: {r.error}" for r in skipped]
    return lines


def capture_time_warnings(tally: Tally) -> list[str]:
    """Say when relative times were counted back from file modification times.

    A copied file's modification time is when it was copied: "4 hours ago"
    then dates a comment to the day of the copy, which nothing else shows.
    """
    guessed = tally.guessed_capture
    advice = "if the pages were saved at another time, give it with --captured-at ISO8601"
    if not guessed:
        return []
    if len(guessed) <= FEW_FILES:
        return [
            f'mirror: warning: {r.path}: relative times ("4 hours ago") were counted back '
            f"from the file's modification time, {_when(r.counted_from_mtime)}; {advice}"
            for r in guessed
        ]
    first, last = (_when(t) for t in _ends(r.counted_from_mtime for r in guessed))
    span = first if first == last else f"{first} to {last}"
    return [
        f'mirror: warning: relative times ("4 hours ago") in {len(guessed):,} files were '
        f"counted back from the files' modification times ({span}); {advice}"
    ]


def file_table(tally: Tally, console: Console) -> None:
    """Every file with what became of it: a table on a terminal, else tab-separated lines."""
    rows = [
        (
            str(r.path),
            r.kind or "-",
            str(r.posts),
            str(r.comments),
            str(r.merged),
            _outcome(r, tally),
        )
        for r in tally.reports + tally.skipped_by_name
    ]
    header = ("file", "kind", "posts", "comments", "merged", "outcome")
    if not console.is_terminal:
        for row in (header, *rows):
            console.file.write("\t".join(row) + "\n")
        return
    table = Table(title="ingest")
    for column in header:
        numeric = column in ("posts", "comments", "merged")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _outcome(report: FileReport, tally: Tally) -> str:
    if report.ok:
        return "stored"
    if tally.is_skip(report):
        return f"skipped: {report.error}"
    return f"refused: {report.error}"


def _ends(moments: Iterable[datetime | None]) -> tuple[datetime | None, datetime | None]:
    known = sorted(m for m in moments if m is not None)
    return (known[0], known[-1]) if known else (None, None)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "?"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return one if n == 1 else many or one + "s"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {_plural(n, one, many)}"

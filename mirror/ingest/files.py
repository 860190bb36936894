"""Ingest dump files: find them (:mod:`mirror.ingest.scan`), then parse and store them in batches.

Each batch is one transaction and each dump all or nothing
(:mod:`mirror.ingest.batch`). With many batches a partner process takes
every other one, parsing while this process stores
(:mod:`mirror.ingest.turns`); either way the database gets the batches in
file order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from importlib import resources
from pathlib import Path

from sqlalchemy.engine import Engine

from mirror.clock import Clock
from mirror.ingest.batch import FileReport
from mirror.ingest.scan import find_dump_files
from mirror.ingest.turns import Partner, can_fork, can_share, ingest_in_turns
from mirror.reconstruct import DumpKind

__all__ = ["FileReport", "find_dump_files", "ingest_file", "ingest_files", "ingest_paths"]

log = logging.getLogger(__name__)

#: Dumps parsed and stored per transaction.
BATCH_FILES = 128


def sample_files() -> list[Path]:
    """The sample dumps shipped with the package."""
    folder = resources.files("mirror") / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".txt"))


def ingest_paths(
    engine: Engine,
    paths: Iterable[Path],
    *,
    clock: Clock,
    kind: DumpKind | None = None,
    captured_at: datetime | None = None,
    batch_files: int = BATCH_FILES,
) -> list[FileReport]:
    """Ingest every dump under ``paths``; one report per file, in file order."""
    return ingest_files(
        engine,
        find_dump_files(paths),
        clock=clock,
        kind=kind,
        captured_at=captured_at,
        batch_files=batch_files,
    )


def ingest_files(
    engine: Engine,
    files: Iterable[Path],
    *,
    clock: Clock,
    kind: DumpKind | None = None,
    captured_at: datetime | None = None,
    batch_files: int = BATCH_FILES,
    on_batch: Callable[[list[FileReport]], None] | None = None,
    stop: threading.Event | None = None,
) -> list[FileReport]:
    """Ingest these files (no folder search); one report per file, in order.

    ``on_batch`` gets the reports of each batch once it is stored. Once
    ``stop`` is set, no further batch is stored: the reports returned are
    then those of the files stored (whole batches), the first of ``files``.
    """
    paths = list(files)
    batches = _batches(paths, max(1, batch_files))
    with contextlib.ExitStack() as stack:
        partner = None
        worth_it = len(batches) >= 2 and (os.cpu_count() or 1) >= 2
        if worth_it and can_share(engine) and can_fork(engine):
            partner = stack.enter_context(Partner(engine, kind, captured_at))
        log.info(
            "ingesting %d files in %d batches%s",
            len(paths),
            len(batches),
            " with a partner process" if partner else "",
        )
        reports = ingest_in_turns(
            engine,
            partner,
            batches,
            kind=kind,
            captured_at=captured_at,
            clock=clock,
            on_batch=on_batch,
            stop=stop,
        )
    for report in reports:
        if report.ok:
            # DEBUG: `mirror -v ingest` lists every file in its table already.
            log.debug(
                "ingested %s as %s: %d new posts, %d new comments, %d merged",
                report.path,
                report.kind,
                report.posts,
                report.comments,
                report.merged,
            )
    return reports


def _batches(paths: list[Path], size: int) -> list[list[Path]]:
    """Batches of ``size`` files, but smaller at either end.

    With a partner, both processes parse their first batch at once, then
    the partner waits while this process stores its own: a first batch of
    half size halves that wait. At the end, one process has nothing left
    to parse while the other stores: the last two to three batches' files
    go in quarter batches, so that wait is a quarter batch's.
    """
    batches, at, step = [], 0, max(1, size // 2)
    while at + step <= len(paths) - 2 * size:
        batches.append(paths[at : at + step])
        at, step = at + step, size
    quarter = max(1, size // 4)
    return batches + [paths[a : a + quarter] for a in range(at, len(paths), quarter)]


def ingest_file(
    engine: Engine,
    path: Path,
    *,
    clock: Clock,
    kind: DumpKind | None = None,
    captured_at: datetime | None = None,
) -> FileReport:
    """Parse and store one dump in one transaction; refusals come back as reports."""
    return ingest_files(engine, [path], clock=clock, kind=kind, captured_at=captured_at)[0]

"""Ingest dump files: find them, read them, and store them atomically.

Each dump is all or nothing. Dumps are stored in batches (one transaction,
one lookup, one flush for many small files); when anything in a batch
fails, the batch is rolled back and its dumps are stored one per
transaction, so a bad file leaves nothing behind and the others go in.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mirror.clock import Clock
from mirror.db.session import write_transaction
from mirror.ingest.observe import DumpMeta, Observed, observe_file
from mirror.ingest.parse_ahead import Result, parsed_in_order
from mirror.ingest.store import DumpWriter
from mirror.reconstruct import DumpKind

log = logging.getLogger(__name__)

#: Extensions taken when a folder is searched (files named directly are always read).
TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".dump", ""})
#: Dumps stored per transaction.
BATCH_FILES = 64
#: Parse in a child process from this many files on (starting it costs ~0.1 s).
PARALLEL_FROM = 64
#: pg_advisory_xact_lock key serialising ingest transactions.
INGEST_LOCK_KEY = 0x6D69_7272_696E_6765
#: Parsed dumps waiting for the database at most (bounds memory).
IN_FLIGHT = 2 * BATCH_FILES
#: New containers between two passes of the cycle collector while storing.
GC_EVERY = 50_000


@dataclass(frozen=True, slots=True)
class FileReport:
    """What happened to one file (the summary table's row)."""

    path: Path
    kind: str | None = None
    posts: int = 0
    comments: int = 0
    merged: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class _Parsed:
    path: Path
    meta: DumpMeta
    observed: Observed


def find_dump_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and text files found recursively under folders."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if (
                    found.is_file()
                    and found.suffix.lower() in TEXT_SUFFIXES
                    and not any(part.startswith(".") for part in found.relative_to(path).parts)
                ):
                    yield found
        else:
            yield path


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
) -> list[FileReport]:
    """Ingest these files (no folder search); one report per file, in order.

    Reading and parsing are pure work: with many files they run in worker
    processes while this one stores, so both cores stay busy.
    """
    reports: list[FileReport] = []
    batch: list[tuple[int, _Parsed]] = []

    def store() -> None:
        stored = _store_batch(engine, [item for _, item in batch], clock)
        for (slot, _), report in zip(batch, stored, strict=True):
            reports[slot] = report
        batch.clear()

    with _fewer_collections():
        for parsed in _prepare_all(list(files), kind, captured_at):
            path = parsed.path
            if isinstance(parsed, FileReport):
                reports.append(parsed)
                continue
            reports.append(FileReport(path))  # replaced once the batch is stored
            batch.append((len(reports) - 1, parsed))
            if len(batch) >= batch_files:
                store()
        if batch:
            store()
    return reports


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Storing makes many small dicts that live as long as their batch.

    Python's collector looks for cycles every 700 new containers; here that
    was 800 passes finding nothing, a tenth of the storing process's time.
    """
    before = gc.get_threshold()
    gc.set_threshold(GC_EVERY, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


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


def _prepare_all(
    files: list[Path], kind: DumpKind | None, captured_at: datetime | None
) -> Iterator[_Parsed | FileReport]:
    """Parse files in order; ahead of the storing, in a child process, when there are many."""
    if len(files) < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        for path in files:
            yield _parsed(path, observe_file(path, kind, captured_at))
        return
    for path, result in parsed_in_order(files, kind, captured_at, window=IN_FLIGHT):
        yield _parsed(path, result)


def _parsed(path: Path, observed: Result) -> _Parsed | FileReport:
    if isinstance(observed, str):
        return FileReport(path, error=observed)
    return _Parsed(path, *observed)


def _store_batch(engine: Engine, batch: list[_Parsed], clock: Clock) -> list[FileReport]:
    """Store a batch in one transaction; if that fails, each dump in its own."""
    try:
        with write_transaction(engine) as connection:
            _lock_ingest(connection)
            writer = DumpWriter(connection, now=clock.now())
            for item in batch:
                writer.add(item.meta, item.observed)
            results = writer.write()
    except SQLAlchemyError as exc:
        if len(batch) > 1:
            log.warning("a batch of %d dumps failed; storing them one at a time", len(batch))
            return [report for item in batch for report in _store_batch(engine, [item], clock)]
        (item,) = batch
        log.exception("storing %s failed", item.path)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        error = f"not stored: database error: {reason}"
        return [FileReport(item.path, kind=item.meta.kind, error=error)]
    reports = []
    for item, result in zip(batch, results, strict=True):
        log.info(
            "ingested %s as %s: %d new posts, %d new comments, %d merged",
            item.path,
            item.meta.kind,
            result.posts,
            result.comments,
            result.merged,
        )
        reports.append(
            FileReport(
                item.path,
                kind=item.meta.kind,
                posts=result.posts,
                comments=result.comments,
                merged=result.merged,
            )
        )
    return reports


def _lock_ingest(connection: Connection) -> None:
    """One ingest writer at a time: matching reads, then writes what it found missing.

    SQLite's BEGIN IMMEDIATE already serialises writers; on PostgreSQL two
    ingests could both find an item missing and both insert it.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY})

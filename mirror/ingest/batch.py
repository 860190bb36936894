"""One batch of dump files: parse each, then store them all in one transaction.

Dumps are stored in batches (one transaction, one lookup, one flush for
many small files). Each dump is still all or nothing: when anything in a
batch fails, the batch is rolled back and its dumps are stored one per
transaction, so a bad file leaves nothing behind and the others go in.
Refused files (not a dump, unreadable) get their report without touching
the database.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mirror.db.session import checkpoint_wal, write_transaction
from mirror.ingest.observe import DumpMeta, Observed, Refusal, observe_file
from mirror.ingest.store import DumpWriter
from mirror.reconstruct import DumpKind

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key serialising ingest transactions.
INGEST_LOCK_KEY = 0x6D69_7272_696E_6765
#: New containers between two passes of the cycle collector while storing.
GC_EVERY = 50_000
#: Batches this process stores between two WAL checkpoints (SQLite).
CHECKPOINT_EVERY = 2


@dataclass(frozen=True, slots=True)
class FileReport:
    """What happened to one file (the summary table's row)."""

    path: Path
    kind: str | None = None
    posts: int = 0
    comments: int = 0
    merged: int = 0
    error: str | None = None
    #: The error says the content is no page dump (not that reading or storing failed).
    not_a_dump: bool = False
    #: The file's modification time, when its relative times were counted back
    #: from it for want of a capture time (``--captured-at``).
    counted_from_mtime: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A file of a batch read and turned into rows, waiting for its turn to be stored."""

    path: Path
    meta: DumpMeta
    observed: Observed
    counted_from_mtime: datetime | None = None


def ingest_batch(
    engine: Engine,
    paths: Sequence[Path],
    *,
    kind: DumpKind | None,
    captured_at: datetime | None,
    now: datetime,
) -> list[FileReport]:
    """Parse and store these files (one transaction); one report per file, in order."""
    return store_batch(engine, parse_batch(paths, kind, captured_at), now)


def parse_batch(
    paths: Sequence[Path], kind: DumpKind | None, captured_at: datetime | None
) -> list[ParsedFile | FileReport]:
    """Each file read and turned into rows, or its refusal (pure: no database)."""
    out: list[ParsedFile | FileReport] = []
    for path in paths:
        observed = observe_file(path, kind, captured_at)
        if isinstance(observed, Refusal):
            out.append(FileReport(path, error=observed.reason, not_a_dump=observed.not_a_dump))
            continue
        meta, rows = observed
        guessed = meta.captured_at if captured_at is None and rows.relative_times else None
        out.append(ParsedFile(path, meta, rows, guessed))
    return out


def store_batch(
    engine: Engine, parsed: Sequence[ParsedFile | FileReport], now: datetime
) -> list[FileReport]:
    """Store the parsed files of a batch; refusals pass through; reports in order.

    The commit does not checkpoint SQLite's WAL: the caller gives the next
    writer its turn first, then settles its :class:`Checkpoints`.
    """
    dumps = [item for item in parsed if isinstance(item, ParsedFile)]
    stored = iter(_store(engine, dumps, now) if dumps else [])
    return [next(stored) if isinstance(item, ParsedFile) else item for item in parsed]


def _store(engine: Engine, batch: list[ParsedFile], now: datetime) -> list[FileReport]:
    """Store a batch in one transaction; if that fails, each dump in its own."""
    try:
        with write_transaction(engine, defer_checkpoint=True) as connection:
            _lock_ingest(connection)
            writer = DumpWriter(connection, now=now)
            for item in batch:
                writer.add(item.meta, item.observed)
            results = writer.write()
    except SQLAlchemyError as exc:
        if len(batch) > 1:
            log.warning("a batch of %d dumps failed; storing them one at a time", len(batch))
            return [report for item in batch for report in _store(engine, [item], now)]
        (item,) = batch
        log.exception("storing %s failed", item.path)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        error = f"not stored: database error: {reason}"
        return [FileReport(item.path, kind=item.meta.kind, error=error)]
    return [
        FileReport(
            item.path,
            kind=item.meta.kind,
            posts=result.posts,
            comments=result.comments,
            merged=result.merged,
            counted_from_mtime=item.counted_from_mtime,
        )
        for item, result in zip(batch, results, strict=True)
    ]


class Checkpoints:
    """Checkpoint the WAL every CHECKPOINT_EVERY batches this process stores, when nobody waits.

    A checkpoint inside a commit held up the other process, waiting for its
    turn, for 0.1-0.2 s each time the WAL reached 64 MB; called after the
    turn is handed over, it runs beside that process's storing instead.
    Every second batch rather than every one: each checkpoint copies the
    pages the batches since the last one dirtied, and index pages are
    dirtied by nearly every batch (benchmark, a few runs each: every batch
    no better than checkpoints in the commits, every second batch ~8%
    better; then 8,365 -> 10,283 items/s median in five paired runs).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.since = 0  # batches stored since the last checkpoint

    def stored(self) -> None:
        self.since += 1

    def settle(self) -> None:
        """Checkpoint if it is due: call when no other process waits for this one."""
        if self.since >= CHECKPOINT_EVERY:
            checkpoint_wal(self.engine)
            self.since = 0


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Parsing and storing make many small dicts that live as long as their batch.

    Python's collector looks for cycles every 700 new containers; here that
    was 800 passes finding nothing, a tenth of the storing process's time.
    """
    before = gc.get_threshold()
    gc.set_threshold(GC_EVERY, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _lock_ingest(connection: Connection) -> None:
    """One ingest writer at a time: matching reads, then writes what it found missing.

    SQLite's BEGIN IMMEDIATE already serialises writers; on PostgreSQL two
    ingests could both find an item missing and both insert it.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY})

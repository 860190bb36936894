"""Ingest in two processes that take turns: while one stores a batch, the other parses its next.

Parsing a batch of dumps (reading, parsing, building rows) is pure work;
storing it is one transaction that has to see every batch before it. A
partner process (``python -m mirror.ingest.turns``, see
:mod:`mirror.children`) takes every other batch: it parses its batch
while this process stores the one before, waits for its turn, stores,
and answers with the batch's reports. The database gets the batches in
file order, one transaction each, as one process would write them.

Why not one child parsing for one storing process (the design before):
the rows crossed the process boundary (62 MB pickled for the 50 MB
benchmark corpus), the storing process unpickled them and parsed whatever
the child had not got to, and its storing was then the whole run. Here
only file names, times and reports cross, and storing is the only part
the two processes do one after the other.

If the partner dies or fails on a batch, this process stores that batch
and every later one itself. A batch the partner had committed just before
dying is stored again, which changes nothing (ingesting is idempotent);
its files are then reported as merged.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import select
import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine

from mirror import children
from mirror.clock import Clock
from mirror.db.session import make_engine
from mirror.ingest.batch import (
    Checkpoints,
    FileReport,
    fewer_collections,
    ingest_batch,
    parse_batch,
    store_batch,
)
from mirror.reconstruct import DumpKind

log = logging.getLogger(__name__)

#: A partner asked to stop finishes the batch it is storing, then exits.
CLOSE_TIMEOUT_S = 30.0


def can_share(engine: Engine) -> bool:
    """Whether a second process can open this database (an in-memory one cannot)."""
    url = engine.url
    return url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")


def ingest_in_turns(
    engine: Engine,
    partner: Partner | None,
    batches: Sequence[Sequence[Path]],
    *,
    kind: DumpKind | None,
    captured_at: datetime | None,
    clock: Clock,
) -> list[FileReport]:
    """Ingest the batches in order, every other one in ``partner``; reports in order.

    The partner takes its first batch once it has started (Python, SQLAlchemy
    and the parser take it about half a second to import); until then, after
    it is lost, and without one, this process stores every batch itself.
    """
    reports: list[FileReport] = []
    theirs: int | None = None  # the batch the partner has, parsed or being parsed
    checkpoints = Checkpoints(engine)

    def here(paths: Sequence[Path]) -> list[FileReport]:
        done = ingest_batch(engine, paths, kind=kind, captured_at=captured_at, now=clock.now())
        checkpoints.stored()
        return done

    with fewer_collections():
        k = 0
        while k < len(batches):
            if theirs != k:
                checkpoints.settle()
                parsed = parse_batch(batches[k], kind, captured_at)
                if partner and theirs is None and k + 1 < len(batches) and partner.ready():
                    partner.take(batches[k + 1])  # it parses k + 1 while k is stored
                    theirs = k + 1
                reports += store_batch(engine, parsed, clock.now())
                checkpoints.stored()
                k += 1
                continue
            # Its turn to store k; it parses k + 2 next while this process
            # parses k + 1 now and stores it once k is in.
            assert partner is not None  # only a partner has a batch
            theirs = k + 2 if k + 2 < len(batches) else None
            partner.go(clock.now(), batches[theirs] if theirs is not None else None)
            checkpoints.settle()  # beside the partner's storing, not before it
            mine = parse_batch(batches[k + 1], kind, captured_at) if k + 1 < len(batches) else None
            answer = partner.answer()
            if answer is None:  # stored here instead: a bug raises here too
                theirs = None
                answer = here(batches[k])
            reports += answer
            if mine is not None:
                reports += store_batch(engine, mine, clock.now())
                checkpoints.stored()
            k += 2
    return reports


class Partner:
    """The partner process, started at once; a context manager that stops it."""

    def __init__(self, engine: Engine, kind: DumpKind | None, captured_at: datetime | None) -> None:
        self.process = subprocess.Popen(
            children.command(__name__),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=children.environment(),
        )
        self.alive = True
        self.started = False
        self.stored = 0  # batches it has stored
        # The URL (password included) goes through the pipe, never on a command line.
        url = engine.url.render_as_string(hide_password=False)
        self._send((url, kind, captured_at))

    def __enter__(self) -> Partner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> bool:
        """Whether it has started (it says so once); never blocks."""
        if self.started or not self.alive:
            return self.started and self.alive
        assert self.process.stdout is not None
        if not select.select([self.process.stdout], [], [], 0)[0]:
            return False
        if children.read_frame(self.process.stdout) is None:
            self._lost("the ingest partner process did not start; storing everything here")
            return False
        self.started = True
        return True

    def take(self, paths: Sequence[Path]) -> None:
        """Its first batch: parse it and wait for its turn."""
        self._send(list(paths))

    def go(self, now: datetime, following: Sequence[Path] | None) -> None:
        """Its turn: store the batch it has parsed as of ``now``, then parse ``following``."""
        self._send((now, list(following) if following is not None else None))

    def answer(self) -> list[FileReport] | None:
        """The reports of the batch it stored; None if it failed or is gone."""
        assert self.process.stdout is not None
        frame = children.read_frame(self.process.stdout) if self.alive else None
        if frame is None:
            self._lost("the ingest partner process stopped answering; storing the rest here")
            return None
        reports, records = pickle.loads(frame)
        for name, level, message in records:
            logging.getLogger(name).log(level, "%s (in the ingest partner process)", message)
        if reports is None:
            self._lost("the ingest partner process failed on a batch; storing the rest here")
        else:
            self.stored += 1
        return reports

    def close(self) -> None:
        """Close its stdin and wait for it to exit (bounded)."""
        self.alive = False
        process = self.process
        if process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        try:
            process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _send(self, message: object) -> None:
        if not self.alive:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(children.frame(pickle.dumps(message)))
            self.process.stdin.flush()
        except OSError:  # a broken pipe: it is gone; answer() says so
            self.alive = False

    def _lost(self, why: str) -> None:
        log.warning(why)
        self.alive = False


# -- the partner ----------------------------------------------------------------


class _Records(logging.Handler):
    """What the partner logs travels with its answers, to be logged by the parent."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        self.records.append((record.name, record.levelno, message))

    def take(self) -> list[tuple[str, int, str]]:
        taken, self.records = self.records, []
        return taken


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Parse a batch, wait for its turn, store it, answer; until stdin closes."""
    setup = children.read_frame(requests)
    if setup is None:
        return
    url, kind, captured_at = pickle.loads(setup)
    records = _Records()
    logging.getLogger("mirror").addHandler(records)
    logging.getLogger("mirror").setLevel(logging.WARNING)
    engine = make_engine(url)
    checkpoints = Checkpoints(engine)
    try:
        if not _answer(answers, b"ready"):
            return
        paths = _load(children.read_frame(requests))
        with fewer_collections():
            while paths is not None:
                try:
                    parsed = parse_batch(paths, kind, captured_at)
                except Exception:
                    parsed = None
                turn = _load(children.read_frame(requests))
                if turn is None:
                    return
                now, paths = turn
                reports = None
                if parsed is not None:
                    try:
                        reports = store_batch(engine, parsed, now)
                    except Exception:
                        reports = None
                if not _answer(answers, pickle.dumps((reports, records.take()))):
                    return
                checkpoints.stored()
                checkpoints.settle()
                if reports is None:
                    return
    finally:
        engine.dispose()


def _answer(answers: BinaryIO, payload: bytes) -> bool:
    """Send one frame; False when the parent is gone (killed: what was stored stays)."""
    try:
        answers.write(children.frame(payload))
        answers.flush()
    except BrokenPipeError:
        return False
    return True


def _load(frame: bytes | None) -> Any:
    return None if frame is None else pickle.loads(frame)


if __name__ == "__main__":
    serve(*children.child_streams())

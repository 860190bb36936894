"""Ingest in two processes that take turns: while one stores a batch, the other parses its next.

Parsing a batch of dumps (reading, parsing, building rows) is pure work;
storing it is one transaction that has to see every batch before it. A
partner process (forked: see :class:`Partner`) takes every other batch:
it parses its batch while this process stores the one before, waits for
its turn, stores, and answers with the batch's reports. The database gets the batches in
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
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from sqlalchemy.engine import Engine

from mirror import children
from mirror.clock import Clock
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
    on_batch: Callable[[list[FileReport]], None] | None = None,
    stop: threading.Event | None = None,
) -> list[FileReport]:
    """Ingest the batches in order, every other one in ``partner``; reports in order.

    After the partner is lost, and without one, this process stores every
    batch itself. ``on_batch`` gets each batch's reports as they come in.
    Once ``stop`` is set no further batch is stored (nor handed to the
    partner): the reports are those of the batches stored, a prefix of the
    files, each batch whole.
    """
    reports: list[FileReport] = []
    theirs: int | None = None  # the batch the partner has, parsed or being parsed
    checkpoints = Checkpoints(engine)

    def stopping() -> bool:
        return stop is not None and stop.is_set()

    def stored(done: list[FileReport]) -> None:
        reports.extend(done)
        if on_batch is not None:
            on_batch(done)

    def here(paths: Sequence[Path]) -> list[FileReport]:
        done = ingest_batch(engine, paths, kind=kind, captured_at=captured_at, now=clock.now())
        checkpoints.stored()
        return done

    with fewer_collections():
        k = 0
        while k < len(batches) and not stopping():
            if theirs != k:
                checkpoints.settle()
                if partner and partner.alive and theirs is None and k + 1 < len(batches):
                    partner.take(batches[k + 1])  # it parses k + 1 while k is done here
                    theirs = k + 1
                parsed = parse_batch(batches[k], kind, captured_at)
                if stopping():
                    break
                stored(store_batch(engine, parsed, clock.now()))
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
            stored(answer)
            if mine is not None and not stopping():
                stored(store_batch(engine, mine, clock.now()))
                checkpoints.stored()
            k += 2
    return reports


class Partner:
    """The partner process, forked at once; a context manager that stops it.

    Forked, not started as ``python -m``: a new interpreter spent half a
    second of CPU importing SQLAlchemy and the parser, on a machine whose
    cores both ingest (benchmark, paired runs: 6,725-7,454 -> 8,654-9,589
    items/s).
    Only a process running no other thread forks (a lock another thread
    held at the fork would stay held in the child): see :func:`can_fork`.
    """

    def __init__(self, engine: Engine, kind: DumpKind | None, captured_at: datetime | None) -> None:
        # No database connection may cross the fork: the child would share
        # a SQLite connection's lock and WAL bookkeeping, which SQLite keeps
        # per process (https://sqlite.org/howtocorrupt.html, section 2.6).
        engine.dispose()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):  # closed, or a broken pipe
                stream.flush()  # or the child's copy of their buffers would be written twice
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; coverage of it is not collected
            os.close(requests_w)
            os.close(answers_r)
            _run_partner(engine, kind, captured_at, requests_r, answers_w)
        os.close(requests_r)
        os.close(answers_w)
        self.pid = pid
        self.requests = os.fdopen(requests_w, "wb")
        self.answers = os.fdopen(answers_r, "rb")
        self.alive = True
        self.stored = 0  # batches it has stored
        self.exit_code: int | None = None

    def __enter__(self) -> Partner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self, paths: Sequence[Path]) -> None:
        """Its first batch: parse it and wait for its turn."""
        self._send(list(paths))

    def go(self, now: datetime, following: Sequence[Path] | None) -> None:
        """Its turn: store the batch it has parsed as of ``now``, then parse ``following``."""
        self._send((now, list(following) if following is not None else None))

    def answer(self) -> list[FileReport] | None:
        """The reports of the batch it stored; None if it failed or is gone."""
        frame = children.read_frame(self.answers) if self.alive else None
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

    def exited(self) -> bool:
        """Whether it has exited (and been reaped); never blocks."""
        if self.exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code is not None

    def close(self) -> None:
        """Close its requests and wait for it to exit (bounded; killed after that)."""
        self.alive = False
        with contextlib.suppress(BrokenPipeError):
            self.requests.close()
        self.answers.close()
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while not self.exited():
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                self.exit_code = -signal.SIGKILL
                return
            time.sleep(0.005)

    def _send(self, message: object) -> None:
        if not self.alive:
            return
        try:
            self.requests.write(children.frame(pickle.dumps(message)))
            self.requests.flush()
        except OSError:  # a broken pipe: it is gone; answer() says so
            self.alive = False

    def _lost(self, why: str) -> None:
        log.warning(why)
        self.alive = False


def can_fork(engine: Engine) -> bool:
    """Whether this process may fork a partner for ``engine``'s database.

    POSIX; no other thread running; and none of the engine's connections in
    use (they could not be closed before the fork). Other connections to
    the same database (another engine's) must not be open either: the
    caller's to know.
    """
    return (
        hasattr(os, "fork")
        and threading.active_count() == 1
        and getattr(engine.pool, "checkedout", lambda: 0)() == 0
    )


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


def _run_partner(
    engine: Engine, kind: DumpKind | None, captured_at: datetime | None, requests: int, answers: int
) -> NoReturn:
    """The forked child's whole life: serve, then exit without the parent's exit handlers."""
    code = 1
    try:
        # Ctrl-C and systemd's SIGTERM reach the whole process group; the
        # parent decides when to stop and closes our requests.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with os.fdopen(requests, "rb") as inbox, os.fdopen(answers, "wb") as outbox:
            serve(engine, kind, captured_at, inbox, outbox)
        code = 0
    except BrokenPipeError:  # the parent was killed: what was stored stays
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def serve(
    engine: Engine,
    kind: DumpKind | None,
    captured_at: datetime | None,
    requests: BinaryIO,
    answers: BinaryIO,
) -> None:
    """Parse a batch, wait for its turn, store it, answer; until the requests end."""
    records = _Records()
    # What the partner logs goes to the parent with its answers, not to the
    # handlers it inherited (the parent logs it once, marked as the partner's).
    mirror_log = logging.getLogger("mirror")
    mirror_log.handlers = [records]
    mirror_log.propagate = False
    mirror_log.setLevel(logging.WARNING)
    checkpoints = Checkpoints(engine)
    try:
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

"""Parse dump files ahead of the storing process, in a child process and in this one.

Reading, parsing and turning a dump into rows (:func:`observe_file`) is
pure work; with many files a child process (``python -m
mirror.ingest.parse_ahead``, see :mod:`mirror.children`) does it while this
process stores, and results come out in file order.

Why not a ProcessPoolExecutor: its manager thread unpickled every result
here, beside the storing thread, and took the GIL from it for most of a
second over the benchmark corpus (the storing thread waited in its SQLite
calls meanwhile). Here a reader thread only moves bytes; the storing
thread unpickles a result when it takes it.

Whichever side is faster on the machine, neither waits long for the
other: when the next file's result is not there, this process parses the
last file of the window that the child has not been given, itself. The
child is given only a few files ahead of what it has answered, so that
most of the window stays open to that. If the child dies, this process
parses the rest.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from mirror import children
from mirror.ingest.observe import DumpMeta, Observed, observe_file
from mirror.reconstruct import DumpKind

log = logging.getLogger(__name__)

#: What a file comes out as: its rows, or the one-line reason it was refused.
Result = tuple[DumpMeta, Observed] | str
#: Files given to the child and not yet answered, at most. The reader
#: thread hands out the next file only once it gets the GIL (up to 5 ms
#: while the storing thread runs Python): a file takes the child about
#: 2 ms, so fewer than a handful queued left it idle between them.
CHILD_QUEUE = 8
#: A child asked to stop answers the file it has, then exits.
CLOSE_TIMEOUT_S = 10.0


def parsed_in_order(
    files: Sequence[Path], kind: DumpKind | None, captured_at: datetime | None, *, window: int
) -> Iterator[tuple[Path, Result]]:
    """Every file's result, in order; at most ``window`` files parsed ahead of the one taken."""
    ahead = _Ahead(files, kind, captured_at, window)
    try:
        yield from ahead
    finally:
        ahead.close()


class _Ahead:
    def __init__(
        self,
        files: Sequence[Path],
        kind: DumpKind | None,
        captured_at: datetime | None,
        window: int,
    ) -> None:
        self.files, self.kind, self.captured_at = files, kind, captured_at
        self.window = max(1, window)
        self.lock = threading.Lock()
        self.answered = threading.Condition(self.lock)
        self.unclaimed: deque[int] = deque()  # in the window, given to nobody yet
        self.given: deque[int] = deque()  # given to the child, in the order it answers
        self.results: dict[int, bytes | Result] = {}
        self.admitted = 0  # files[:admitted] have entered the window
        self.process = subprocess.Popen(
            children.command(__name__),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=children.environment(),
        )
        self.alive = True
        self.reader = threading.Thread(target=self._read, name="parse-ahead", daemon=True)
        self.reader.start()

    def __iter__(self) -> Iterator[tuple[Path, Result]]:
        for index, path in enumerate(self.files):
            with self.lock:
                while self.admitted < min(len(self.files), index + self.window):
                    self.unclaimed.append(self.admitted)
                    self.admitted += 1
                self._give()
            yield path, self._take(index)

    def close(self) -> None:
        """Close the child's stdin and wait for it to exit (bounded)."""
        with self.lock:
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
        self.reader.join()

    # -- this process's side -------------------------------------------------

    def _take(self, index: int) -> Result:
        while True:
            with self.lock:
                while index not in self.results and not self.unclaimed and self.alive:
                    self.answered.wait()
                if index in self.results:
                    result = self.results.pop(index)
                    break
                # The file furthest ahead that nobody parses (the child died:
                # every file left is ours).
                later = self.unclaimed.pop()
            parsed = observe_file(self.files[later], self.kind, self.captured_at)
            with self.lock:
                self.results[later] = parsed
        if isinstance(result, bytes):
            result = pickle.loads(result)
        if result is None:  # the child failed on it: this raises the same here
            result = observe_file(self.files[index], self.kind, self.captured_at)
        return result

    def _give(self) -> None:
        """Keep the child CHILD_QUEUE files ahead of its answers (lock held)."""
        while self.alive and len(self.given) < CHILD_QUEUE and self.unclaimed:
            index = self.unclaimed.popleft()
            job = pickle.dumps((self.files[index], self.kind, self.captured_at))
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(children.frame(job))
                self.process.stdin.flush()
            except OSError:  # a broken pipe: the child is gone
                self.unclaimed.appendleft(index)
                self._lost()
                return
            self.given.append(index)

    def _read(self) -> None:
        assert self.process.stdout is not None
        while (answer := children.read_frame(self.process.stdout)) is not None:
            with self.lock:
                if not self.alive:
                    continue  # closing, or given up on: its files are parsed here
                self.results[self.given.popleft()] = answer
                self._give()
                self.answered.notify_all()
        with self.lock:
            if self.alive:
                self._lost()

    def _lost(self) -> None:
        """The child is gone: what it was given comes back to this process (lock held)."""
        if self.alive:
            log.warning("the parse process stopped answering; parsing here instead")
        self.alive = False
        self.unclaimed.extendleft(reversed(self.given))
        self.given.clear()
        self.answered.notify_all()


# -- the child ------------------------------------------------------------------


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Observe files until ``requests`` closes; None answers a file that raised."""
    while (request := children.read_frame(requests)) is not None:
        path, kind, captured_at = pickle.loads(request)
        try:
            answer = pickle.dumps(observe_file(path, kind, captured_at), pickle.HIGHEST_PROTOCOL)
        except Exception:
            answer = pickle.dumps(None)
        answers.write(children.frame(answer))
        answers.flush()


if __name__ == "__main__":
    serve(*children.child_streams())

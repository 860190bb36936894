"""`mirror ingest` and `mirror inspect`: the reconstruction, stored and shown."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from sqlalchemy.engine import Engine

from mirror.cli import ingest_report
from mirror.cli.wiring import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    engine_for,
    federation_for,
)
from mirror.clock import SystemClock
from mirror.config import Settings
from mirror.reconstruct import DumpKind


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.ingest.files import ingest_files, sample_files
    from mirror.ingest.scan import scan
    from mirror.ingest.tally import Tally

    paths: list[Path] = list(args.paths)
    if args.samples:
        paths.extend(sample_files())
    if not paths:
        raise UsageError("ingest needs at least one PATH, or --samples")
    found = scan(paths)
    tally = Tally(found)
    if not found.files:
        for line in ingest_report.summary(tally, 0.0)[1:]:
            print(line)
        raise UsageError("no dump files found under " + ", ".join(str(p) for p in paths))
    engine = engine_for(settings)
    kind = DumpKind(args.format) if args.format else None
    stop = threading.Event()
    started = time.monotonic()
    at_once = False
    try:
        with (
            _ctrl_c_stops(stop),
            ingest_report.progress_shown(tally, Console(stderr=True)) as shown,
        ):
            ingest_files(
                engine,
                found.files,
                clock=SystemClock(),
                kind=kind,
                captured_at=args.captured_at,
                on_batch=shown,
                stop=stop,
            )
    except KeyboardInterrupt:
        at_once = True
    if getattr(args, "verbose", 0):
        ingest_report.file_table(tally, Console(highlight=False, soft_wrap=True))
    for line in ingest_report.named_problems(tally):
        print(line, file=sys.stderr)
    for line in ingest_report.summary(tally, time.monotonic() - started):
        print(line)
    for line in ingest_report.capture_time_warnings(tally):
        print(line, file=sys.stderr)
    if at_once:
        print(
            f"mirror: stopped at once by a second Ctrl-C; {len(tally.stored):,} files had been "
            "stored, and the batch being stored went in whole or not at all: run the same "
            "command again to ingest the rest (what is stored already changes nothing)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if stop.is_set():
        print(
            f"mirror: stopped by Ctrl-C after whole batches; the other {tally.unread:,} files "
            "were not stored: run the same command again to ingest them (what is stored "
            "already changes nothing)",
            file=sys.stderr,
        )
    _queue_updates(settings, engine)
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK


@contextlib.contextmanager
def _ctrl_c_stops(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C lets the batch being stored finish, then stops; a second stops at once.

    Only the main thread receives signals (a program calling ``main`` from
    another thread keeps Python's own handling).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()  # nothing printed here: a signal handler must not write to a stream

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _queue_updates(settings: Settings, engine: Engine) -> None:
    """Mirrored items whose reconstruction the ingest changed get Updates."""
    from mirror.publish.refresh import has_publications, queue_updates

    if not settings.instance.base_url or not has_publications(engine):
        return
    federation = federation_for(settings)
    for report in queue_updates(federation):
        print(
            f"run {report.run_id}: {report.updated} changed mirrored items get an Update "
            f"to {report.target}; `mirror serve` or `mirror worker` delivers them"
        )


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.inspection import build_document, render_threads, summary

    if args.json:
        from mirror.inspect_stream import write_document

        # Streamed: the whole document of a large archive would not fit in memory.
        write_document(engine_for(settings), sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    document = build_document(engine_for(settings))
    print(summary(document))
    print()
    for line in render_threads(document):
        print(line)
    return EXIT_OK

"""Backfill benchmark: plan and queue the ingest benchmark's corpus into a sandbox community.

Prints how long `mirror backfill` takes to plan a run and queue it (every
object built, every activity and delivery written, in one transaction),
items per second, and the memory it takes: the peak RSS of the process
doing it, and its growth over what the process held before (imports, the
sandbox). Nothing is delivered; benchmarks/delivery.py measures that.

    python benchmarks/backfill.py [--mb 50] [--seeds ../shared/seeds] [--keep DIR] [--runs 3]

The corpus is the ingest benchmark's (same variations of the seeds),
ingested once; each run queues it into a fresh copy of that database, in a
process of its own, so that every run's memory is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import build_corpus  # noqa: E402

CAPTURED = datetime(2025, 7, 28, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=50.0, help="corpus size in MB")
    parser.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    parser.add_argument("--keep", type=Path, help="build the corpus and database here, keep them")
    parser.add_argument("--runs", type=int, default=3, help="runs; the summary takes the median")
    parser.add_argument("--queue", type=Path, help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args()
    if args.queue:
        print(json.dumps(asyncio.run(_queue(args.queue))))
        return

    folder = args.keep or Path(tempfile.mkdtemp(prefix="fedimirror-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    template = _ingested(folder, args.seeds, args.mb)
    results = []
    for run in range(1, args.runs + 1):
        database = folder / "backfill-run.db"
        for leftover in folder.glob("backfill-run.db*"):
            leftover.unlink()
        shutil.copyfile(template, database)
        child = subprocess.run(
            [sys.executable, __file__, "--queue", str(database)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"run {run} failed:\n{child.stderr}")
        result = json.loads(child.stdout.splitlines()[-1])
        results.append(result)
        print(
            f"run {run}: {result['items']} items ({result['posts']} posts, {result['comments']} "
            f"comments, {result['followers_only']} followers only) planned and queued in "
            f"{result['seconds']:.2f} s: {result['items'] / result['seconds']:,.0f} items/s; "
            f"RSS {result['rss_before_mb']:.0f} MB before, peak {result['peak_mb']:.0f} MB"
        )
    seconds = statistics.median(r["seconds"] for r in results)
    items = results[0]["items"]
    peak = max(r["peak_mb"] for r in results)
    growth = statistics.median(r["peak_mb"] - r["rss_before_mb"] for r in results)
    print(
        f"backfill: {items} items in {seconds:.2f} s ({items / seconds:,.0f} items/s, median of "
        f"{args.runs} runs); peak RSS {peak:.0f} MB, {growth:.0f} MB over the process before it"
    )
    if args.keep is None:
        shutil.rmtree(folder)


def _ingested(folder: Path, seeds: Path, megabytes: float) -> Path:
    """The corpus ingested once into a database file (kept with --keep)."""
    from mirror.clock import SystemClock
    from mirror.db import migrate
    from mirror.db.session import make_engine
    from mirror.ingest.files import ingest_paths

    template = folder / "backfill-template.db"
    if template.exists():
        print(f"corpus database: {template} (kept from before)")
        return template
    corpus = folder / "corpus"
    corpus.mkdir(exist_ok=True)
    size, count = build_corpus(seeds, corpus, megabytes)
    engine = make_engine(f"sqlite:///{template}")
    migrate.upgrade(engine)
    started = time.perf_counter()
    for report in ingest_paths(engine, [corpus], clock=SystemClock(), captured_at=CAPTURED):
        if not report.ok:
            raise SystemExit(f"{report.path}: {report.error}")
    engine.dispose()
    # One file to copy: the WAL's pages back in the database.
    with sqlite3.connect(template) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(
        f"corpus: {count} files, {size / 1e6:.1f} MB, ingested in "
        f"{time.perf_counter() - started:.1f} s into {template}"
    )
    return template


async def _queue(database: Path) -> dict[str, float]:
    """Plan and queue the whole reconstruction into a sandbox community (a child's one run)."""
    from proctree import hwm_mb, rss_mb

    from mirror.clock import SystemClock
    from mirror.config import load_settings
    from mirror.db import migrate
    from mirror.db.session import make_engine, write_transaction
    from mirror.demo import HOST, _free_port, demo_settings
    from mirror.federation.actors import BOT, create_actor
    from mirror.federation.service import Federation
    from mirror.publish.start import start_backfill
    from mirror.sandbox.serve import start_sandbox
    from mirror.signatures import MasterKey

    settings = demo_settings(load_settings(env={}), database.parent, _free_port())
    engine = make_engine(f"sqlite:///{database}")
    migrate.upgrade(engine)  # a corpus kept from an older version (not measured)
    clock = SystemClock()
    master_key = MasterKey.generate()
    with write_transaction(engine) as conn:
        create_actor(conn, username="mirror", kind=BOT, master_key=master_key, now=clock.now())
    port = _free_port()
    runner, _instance = await start_sandbox(
        host=HOST, port=port, community="sandbox", software="lemmy", version="0.19.9"
    )
    federation = Federation(settings=settings, engine=engine, clock=clock, master_key=master_key)
    pid = os.getpid()
    try:
        before = rss_mb(pid)
        started = time.perf_counter()
        _target, report = await start_backfill(federation, to=f"sandbox@{HOST}:{port}", rate=0)
        seconds = time.perf_counter() - started
        peak = hwm_mb(pid)
    finally:
        await federation.close()
        await runner.cleanup()
        engine.dispose()
    planned = report.planned
    return {
        "seconds": seconds,
        "items": sum(planned.values()),
        **planned,
        "queued": report.queued,
        "rss_before_mb": before,
        "peak_mb": peak,
    }


if __name__ == "__main__":
    main()

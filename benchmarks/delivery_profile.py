"""Where a delivery worker's time goes: one in-process run, timed by stage.

Not a benchmark (benchmarks/delivery.py is): it runs the worker in this
process against the same bare sink, times its stages by wrapping them, and
prints the rate, the time per stage, how many signing jobs ran at once
(idle signing processes mean the claim-and-record cycle, not signing, was
the limit) and the database time per statement.

    python benchmarks/delivery_profile.py [-n 8000] [--concurrency 64] [--postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import delivery as bench

from mirror.cli.wiring import federation_for
from mirror.config import load_settings
from mirror.delivery.worker import Worker
from mirror.signatures.processes import _Child

#: (stage, started, ended) for every timed call.
SPANS: list[tuple[str, float, float]] = []


def timed(owner: type, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPANS.append((name, started, time.perf_counter()))

    setattr(owner, name, wrapper)


def timed_async(owner: type, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            SPANS.append((name, started, time.perf_counter()))

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()

    # Synchronous stages run on threads; timing them there is exact.
    timed(Worker, "_commit_and_claim_sync")
    timed(Worker, "_complete_sync")
    timed_async(_Child, "sign")

    port = bench.free_port()
    sink = subprocess.Popen([sys.executable, "-c", bench.SINK, str(port)])
    drop = None
    try:
        time.sleep(1.0)
        if args.postgresql:
            url, drop = bench.postgres_database(bench.PG_URL)
        else:
            url = f"sqlite:///{tempfile.mkdtemp(prefix='fedimirror-profile-')}/mirror.db"
        master_key = bench.prepare(url, f"http://127.0.0.1:{port}/inbox", args.n)
        os.environ.update(
            {
                "MIRROR_DATABASE_URL": url,
                "MIRROR_INSTANCE__BASE_URL": bench.BASE,
                "MIRROR_MASTER_KEY": master_key.to_text(),
                "MIRROR_ALLOW_PRIVATE_NETWORKS": "true",
                "MIRROR_DELIVERY__CONCURRENCY": str(args.concurrency),
                "MIRROR_DELIVERY__PER_HOST_CONCURRENCY": str(args.concurrency),
                "MIRROR_DELIVERY__POLL_INTERVAL_S": "0.05",
            }
        )
        federation = federation_for(load_settings(None, os.environ))
        statements: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

        @sa.event.listens_for(federation.engine, "before_cursor_execute")
        def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            conn.info["started"] = time.perf_counter()

        @sa.event.listens_for(federation.engine, "after_cursor_execute")
        def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            entry = statements[" ".join(statement.split())[:80]]
            entry[0] += time.perf_counter() - conn.info["started"]
            entry[1] += 1

        start, end, rate = asyncio.run(run(federation, args.n))
    finally:
        sink.terminate()
        sink.wait()
        if drop is not None:
            drop()
    report(start, end, rate, statements)


def idle_ticks() -> tuple[int, int]:
    """The machine's (idle, total) clock ticks so far, all cores."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far per kind of thread: signing, database (asyncio's pool), loop."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    totals: dict[str, float] = defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        kind = {"sign": "signing", "asyn": "database", "Main": "loop"}.get(name[:4], "other")
        fields = stat[stat.rindex(")") + 2 :].split()
        totals[kind] += (int(fields[11]) + int(fields[12])) / ticks
        totals["kernel"] += int(fields[12]) / ticks
    # The other processes on the same cores: the sink and PostgreSQL's server.
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            stat = (proc / "stat").read_text()
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        kind = "postgres" if stat.split(" (", 1)[1].startswith("postgres") else None
        if kind is None and b"serve_forever" in command:
            kind = "sink"
        if kind is None and b"mirror.signatures.processes" in command:
            kind = "signing"
        if kind is not None:
            fields = stat[stat.rindex(")") + 2 :].split()
            totals[kind] += (int(fields[11]) + int(fields[12])) / ticks
    return totals


async def run(federation: Any, n: int) -> tuple[float, float, float]:
    stop = asyncio.Event()
    worker = federation.make_worker()
    task = asyncio.create_task(worker.run(stop))
    first: tuple[float, int] | None = None
    while worker.delivered < n:
        await asyncio.sleep(0.05)
        if first is None and worker.delivered:
            first = (time.perf_counter(), worker.delivered)
            cpu_before, idle_before = thread_cpu(), idle_ticks()
    assert first is not None
    end = time.perf_counter()
    cpu_after, idle_after = thread_cpu(), idle_ticks()
    count = n - first[1]
    parts = {k: (v - cpu_before.get(k, 0.0)) / count * 1e6 for k, v in cpu_after.items()}
    worker = sum(v for k, v in parts.items() if k not in ("postgres", "sink", "kernel"))
    kernel = parts.pop("kernel", 0.0)
    idle = (idle_after[0] - idle_before[0]) / max(1, idle_after[1] - idle_before[1])
    print(f"machine idle during the run: {idle:.0%} of all cores")
    print(
        f"CPU per delivery: worker {worker:.0f} µs (in the kernel {kernel:.0f}), "
        f"in all {sum(parts.values()):.0f} µs ("
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
        + ")"
    )
    stop.set()
    await task
    await federation.close()
    return first[0], end, (n - first[1]) / (end - first[0])


def report(start: float, end: float, rate: float, statements: dict[str, list[float]]) -> None:
    span = end - start
    print(f"rate: {rate:,.0f} deliveries/s over {span:.1f} s")
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    edges: list[tuple[float, int]] = []
    for name, began, ended in SPANS:
        if began < start:
            continue
        totals[name][0] += ended - began
        totals[name][1] += 1
        if name == "sign":
            edges += [(began, 1), (ended, -1)]
    for name, (seconds, count) in totals.items():
        print(
            f"  {name:24} {count:5} calls, {seconds / span:6.1%} of the time, "
            f"{seconds / count * 1000:6.1f} ms each"
        )
    running: dict[int, float] = defaultdict(float)
    level, last = 0, start
    for at, step in sorted(edges):
        running[level] += at - last
        level, last = level + step, at
    running[level] += end - last
    shares = ", ".join(f"{k}: {v / span:.0%}" for k, v in sorted(running.items()))
    print(f"  signing jobs running at once (share of the time): {shares}")
    print("  database time by statement:")
    for text, (seconds, count) in sorted(statements.items(), key=lambda kv: -kv[1][0])[:10]:
        print(f"    {seconds:6.2f} s {int(count):5}x  {text}")


if __name__ == "__main__":
    main()

"""Inbox fuzz benchmark: a real `mirror serve` under a hostile peer's requests, and its memory.

Runs tests/fuzz_inbox.py's seeded generator (the CI test's, longer) against
a `mirror serve` process on 127.0.0.1 and prints, per round of requests,
the rate, the statuses, and the server's RSS (with its children) after each
round, then its peak (VmHWM). The issue's target: memory flat as the
number of requests grows (the last rounds within a few MB of the first),
no 5xx, no traceback in the server's log.

    python benchmarks/inbox_fuzz.py [-n 20000] [--rounds 10] [--seed 19]
        [--backend sqlite|postgresql] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from proctree import hwm_mb, rss_mb  # noqa: E402

from tests.fuzz_inbox import FuzzWorld, Report, run_fuzz, start_serve  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _database(backend: str, pg_url: str) -> tuple[str, str]:
    """A fresh database URL ("" for SQLite in the data dir) and its name, to drop."""
    if backend == "sqlite":
        return "", ""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.engine.make_url(pg_url).set(database=name).render_as_string(False), name


def _drop(pg_url: str, name: str) -> None:
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.dispose()


async def bench(args: argparse.Namespace) -> int:
    url, name = _database(args.backend, args.pg_url)
    per_round = max(1, args.n // args.rounds)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="inbox-fuzz-") as directory:
        served = await start_serve(Path(directory), database_url=url)
        pid = served.process.pid
        world = FuzzWorld(served.base)
        await world.start()
        print(f"mirror serve (pid {pid}) on {args.backend}: RSS {rss_mb(pid):.1f} MB at start")
        print("round  requests  req/s  5xx  healthz-failed  RSS MB  statuses")
        rss = []
        try:
            for number in range(args.rounds):
                # Each round its own seed (seed + round): the same run for the same arguments.
                report: Report = await run_fuzz(
                    served.base, world, count=per_round, seed=args.seed + number
                )
                rss.append(rss_mb(pid))
                failures += len(report.server_errors) + len(report.healthz_failures)
                statuses = " ".join(f"{k}:{v}" for k, v in sorted(report.statuses.items()))
                print(
                    f"{number + 1:5d}  {(number + 1) * per_round:8d}  "
                    f"{report.sent / report.seconds:5.0f}  {len(report.server_errors):3d}  "
                    f"{len(report.healthz_failures):14d}  {rss[-1]:6.1f}  {statuses}"
                )
            peak = hwm_mb(pid)
        finally:
            await world.close()
            log = served.stop()
            if name:
                _drop(args.pg_url, name)
    tracebacks = log.count("Traceback")
    refused = [
        line.split(": ", 2)[-1][:160] for line in log.splitlines() if "refused with 5" in line
    ]
    for line in sorted(set(refused)):
        print(f"5xx ({refused.count(line)}x): {line}")
    print(f"peak RSS (VmHWM) {peak:.1f} MB; RSS first round {rss[0]:.1f} MB, last {rss[-1]:.1f} MB")
    print(f"growth from the first round to the last: {rss[-1] - rss[0]:+.1f} MB")
    print(f"tracebacks in the server's log: {tracebacks}; 5xx and /healthz failures: {failures}")
    return 1 if tracebacks or failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="requests in all")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=PG_URL)
    return asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

"""The inbox fuzzed as a hostile peer would (issue 19's "Tests"), against a real `mirror serve`.

A bounded, seeded run (tests/fuzz_inbox.py): a few thousand requests on
SQLite, fewer on PostgreSQL. Nothing may answer 5xx, nothing may leave a
traceback or an ERROR line in the server's log (each line of which must be
a record of its own: nothing forged by a peer's newline), and /healthz
answers throughout. The server's memory is reported by
benchmarks/inbox_fuzz.py, not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz_inbox import FuzzWorld, Report, run_fuzz, start_serve

LEVELS = ("DEBUG ", "INFO ", "WARNING ")


def check(report: Report, log: str, log_format: str) -> None:
    assert report.server_errors == [], report.summary()
    assert report.healthz_failures == [], report.summary()
    # Requests aiohttp's client would not send are not the server's; the rest were answered.
    assert report.no_answer == [], report.no_answer[:5]
    assert report.sent + report.unsendable >= 0.95 * sum(report.kinds.values())
    assert 202 in report.statuses and 401 in report.statuses and 400 in report.statuses
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if line]
    assert lines
    for line in lines:
        if log_format == "json":
            entry = json.loads(line)
            assert entry["level"] in ("debug", "info", "warning"), line
            assert "exc" not in entry, line
        else:
            assert line.startswith(LEVELS), line


@pytest.mark.parametrize(
    "backend, count, log_format",
    [("sqlite", 3000, "text"), pytest.param("postgresql", 800, "json", marks=pytest.mark.postgres)],
)
async def test_fuzzed_inbox_answers_no_5xx_and_logs_no_traceback(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, count: int, log_format: str
) -> None:
    database_url = request.getfixturevalue("pg_url") if backend == "postgresql" else ""
    served = await start_serve(tmp_path, database_url=database_url, log_format=log_format)
    world = FuzzWorld(served.base)
    try:
        await world.start()
        report = await run_fuzz(served.base, world, count=count, seed=19)
    finally:
        await world.close()
        log = served.stop()
    print(report.summary())
    check(report, log, log_format)
    assert report.seconds < 60

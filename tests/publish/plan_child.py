"""A plan run in a process of its own, stopped after N chunks (test_stream).

python -m tests.publish.plan_child DATABASE_URL KILL_AFTER
    SIGKILLs itself after its KILL_AFTER-th chunk.
python -m tests.publish.plan_child DATABASE_URL WAIT_AFTER FOLDER
    after its WAIT_AFTER-th chunk makes FOLDER/waiting and waits for
    FOLDER/go (the test meanwhile kills it, pauses or cancels its run), then
    goes on; a planner that is told to stop prints why and exits 3.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from mirror.config import load_settings
from mirror.db.session import make_engine
from mirror.publish.backfill import Backfill
from mirror.publish.plan import Options
from mirror.publish.planning import StillPlanning, plan_run
from mirror.publish.report import Report
from mirror.signatures import MasterKey
from mirror.vocab.ids import Urls
from tests.publish.reference import BASE, CAPTURED, TARGETS

TARGET = TARGETS["lemmy"]
OPTIONS = Options()
RUN_OPTIONS = {"to": TARGET.id, "from": "all", "since": None, "limit": None, "rate": 0.0}
PAGE = 2


def plan(url: str, kill_after: int | None = None, wait_in: Path | None = None) -> Report:
    settings = load_settings(env={})
    engine = make_engine(url)

    def make(conn: sa.Connection) -> Backfill:
        return Backfill(
            conn,
            settings=settings,
            urls=Urls.from_base_url(BASE),
            master_key=MasterKey.generate(),
            target=TARGET,
            now=CAPTURED,
            rate_per_minute=0.0,
            attribution="puppets",
        )

    def hook(count: int) -> None:
        if kill_after is None or count != kill_after:
            return
        if wait_in is None:
            os.kill(os.getpid(), signal.SIGKILL)
        (wait_in / "waiting").touch()
        deadline = time.monotonic() + 60
        while not (wait_in / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    try:
        return plan_run(engine, make, TARGET, OPTIONS, RUN_OPTIONS, page=PAGE, hook=hook)
    finally:
        engine.dispose()


if __name__ == "__main__":
    try:
        plan(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
    except StillPlanning as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)

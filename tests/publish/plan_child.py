"""A plan run in a process of its own, which SIGKILLs itself after N chunks (test_stream).

python -m tests.publish.plan_child DATABASE_URL KILL_AFTER
"""

from __future__ import annotations

import os
import signal
import sys

import sqlalchemy as sa

from mirror.config import load_settings
from mirror.db.session import make_engine
from mirror.publish.backfill import Backfill
from mirror.publish.plan import Options
from mirror.publish.planning import plan_run
from mirror.publish.report import Report
from mirror.signatures import MasterKey
from mirror.vocab.ids import Urls
from tests.publish.reference import BASE, CAPTURED, TARGETS

TARGET = TARGETS["lemmy"]
OPTIONS = Options()
RUN_OPTIONS = {"to": TARGET.id, "from": "all", "since": None, "limit": None, "rate": 0.0}
PAGE = 2


def plan(url: str, kill_after: int | None = None) -> Report:
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
        if kill_after is not None and count >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        return plan_run(engine, make, TARGET, OPTIONS, RUN_OPTIONS, page=PAGE, hook=hook)
    finally:
        engine.dispose()


if __name__ == "__main__":
    plan(sys.argv[1], int(sys.argv[2]))

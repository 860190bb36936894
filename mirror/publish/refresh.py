"""After an ingest: Updates for mirrored items whose reconstruction changed.

Each target a backfill went to is known from its runs (actor id and inbox),
so no network is needed here; every changed item gets an `Update` with a
newer `updated`, through the same path a re-run of the backfill takes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mirror.db.session import write_transaction
from mirror.publish.backfill import PUBLICATIONS, RUNS, Backfill
from mirror.publish.plan import options_from
from mirror.publish.report import Report
from mirror.publish.stream import Counted, walk
from mirror.publish.target import Target


def has_publications(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return conn.scalar(sa.select(PUBLICATIONS.c.id).limit(1)) is not None


def queue_updates(federation: Any) -> list[Report]:
    """Queue Updates for every target; returns one report per target that got any."""
    options = options_from(federation.settings.backfill)
    reports = []
    with write_transaction(federation.engine) as conn:
        # The latest inbox each target was reached at, and the software it ran
        # then (which decides how its Updates are confirmed).
        latest = {
            row.target: row
            for row in conn.execute(
                sa.select(RUNS.c.target, RUNS.c.inbox, RUNS.c.software, RUNS.c.version).order_by(
                    RUNS.c.id
                )
            )
        }
        for target_id, run in latest.items():
            target = Target(
                id=target_id,
                name=target_id,
                inbox=run.inbox,
                followers=None,
                posting_restricted_to_mods=False,
                software=run.software,
                version=run.version,
                # One of our own Groups: its Updates are announced to its followers.
                hosted=federation.urls.community_of(target_id),
            )
            # The Updates of posts keep a pace as a backfill's posts do (an
            # ingest may change thousands of items): the configured rate.
            rate = federation.settings.backfill.rate_per_minute
            backfill = Backfill.of(conn, federation, target, rate)
            report = backfill.begin(
                Report(None, target_id, {}),
                {"to": target_id, "after": "ingest", "rate": rate},
                items=0,
            )
            # The plan streams (mirror.publish.stream), in this one transaction.
            chunks = Counted(walk(conn, options))
            for items in chunks.items():
                backfill.queue(items, updates_only=True)
            report = backfill.finish([], items=sum(chunks.planned.values()))
            report.planned, report.left_out = chunks.planned, chunks.left_out(options)
            if report.run_id is not None:
                reports.append(report)
    return reports

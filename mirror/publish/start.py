"""`mirror backfill`: resolve the target, check it, plan, and queue the run in one transaction."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mirror.config import BackfillSettings
from mirror.publish.backfill import Backfill
from mirror.publish.hosted_target import hosted_target
from mirror.publish.plan import Plan, options_from
from mirror.publish.planning import StillPlanning, plan_run
from mirror.publish.report import Report
from mirror.publish.stream import Counted, walk
from mirror.publish.target import Target, TargetError, resolve

#: The configured pace that a sandbox target does not get: the default's.
DEFAULT_RATE = BackfillSettings().rate_per_minute


@dataclass(frozen=True, slots=True)
class Pace:
    """A run's posts per minute to each server (0: unpaced), and where that came from."""

    per_minute: float
    why: str

    @property
    def short(self) -> str:
        return f"{self.per_minute:g} posts/min" if self.per_minute > 0 else "unpaced"

    def line(self) -> str:
        return f"pace: {self.short} ({self.why})"


def pace_for(target: Target, config: BackfillSettings, rate: float | None) -> Pace:
    """--rate, else [backfill].rate_per_minute; a sandbox is unpaced unless either is chosen.

    `mirror init` writes every default into the config, so a rate is chosen
    when it differs from the default.
    """
    if rate is not None:
        return Pace(rate, "--rate")
    if target.sandbox and config.rate_per_minute == DEFAULT_RATE:
        return Pace(0.0, "the target is a sandbox; --rate paces it")
    return Pace(config.rate_per_minute, "[backfill].rate_per_minute")


def _hosted(federation: Any, to: str) -> tuple[Target, str] | None:
    with federation.engine.connect() as conn:
        return hosted_target(conn, federation.urls, to)


def without_orphans(plan: Plan) -> Plan:
    """A community holds threads: the comments of unknown posts stay out of a hosted one."""
    orphans = plan.count("orphan")
    left_out = dict(plan.left_out)
    if orphans:
        left_out["comments of unknown posts (a hosted community holds whole threads)"] = orphans
    return Plan([i for i in plan.items if i.kind != "orphan"], left_out)


async def start_backfill(
    federation: Any,
    *,
    to: str,
    source: str = "all",
    since: datetime | None = None,
    limit: int | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    attribution: str | None = None,
) -> tuple[Target, Report]:
    settings = federation.settings
    settings.backfill.check()
    hosted = await asyncio.to_thread(_hosted, federation, to)
    if hosted is not None:
        target, hosted_source = hosted
        if source not in ("all", hosted_source):
            raise TargetError(
                f"{to} is the archive of {hosted_source}: it takes only that community's "
                f"posts, not --from {source}"
            )
        source = hosted_source
    else:
        target = await resolve(federation, to)
    if target.posting_restricted_to_mods:
        raise TargetError(
            f"{target.id} lets only moderators post (postingRestrictedToMods): every "
            "delivery would be refused; ask its moderators to add the bot, or pick another"
        )
    config = settings.backfill
    options = options_from(config, source=source, since=since, limit=limit)
    per_minute = pace_for(target, config, rate).per_minute

    run_options = {
        "to": to,
        "from": source,
        "since": since.isoformat() if since else None,
        "limit": limit,
        "rate": per_minute,
        "attribution": attribution or config.attribution,
    }

    def make(conn: Any) -> Backfill:
        return Backfill.of(conn, federation, target, per_minute, attribution)

    def work() -> Report:
        # The plan streams from the database a chunk at a time (mirror.publish.stream).
        if dry_run:
            with federation.engine.connect() as conn:
                chunks = Counted(walk(conn, options, orphans=not target.hosted))
                report = make(conn).dry_run(chunks.items())
                report.planned, report.left_out = chunks.planned, chunks.left_out(options)
                return report
        try:
            return plan_run(federation.engine, make, target, options, run_options)
        except StillPlanning as exc:
            raise TargetError(str(exc)) from None

    report = await asyncio.to_thread(work)
    if not dry_run:
        federation.wake()
    return target, report

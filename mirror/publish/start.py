"""`mirror backfill`: resolve the target, check it, plan, and queue the run in one transaction."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from mirror.db.session import write_transaction
from mirror.inspection import build_outline
from mirror.publish.backfill import PUBLICATIONS, Backfill, Report
from mirror.publish.plan import build_plan, excluded_ids, options_from
from mirror.publish.target import Target, TargetError, resolve


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
    target = await resolve(federation, to)
    if target.posting_restricted_to_mods:
        raise TargetError(
            f"{target.id} lets only moderators post (postingRestrictedToMods): every "
            "delivery would be refused; ask its moderators to add the bot, or pick another"
        )
    config = settings.backfill
    options = options_from(config, source=source, since=since, limit=limit)
    per_minute = config.rate_per_minute if rate is None else rate

    def work() -> Report:
        document = build_outline(federation.engine)
        plan = build_plan(document, options)
        with write_transaction(federation.engine) as conn:
            backfill = Backfill.of(conn, federation, target, per_minute, attribution)
            if dry_run:
                return backfill.dry_run(plan)
            published = set(
                conn.scalars(PUBLICATIONS.select().with_only_columns(PUBLICATIONS.c.item_id))
            )
            deletions = [i for i in excluded_ids(document, options) if i in published]
            return backfill.run(
                plan,
                {
                    "to": to,
                    "from": source,
                    "since": since.isoformat() if since else None,
                    "limit": limit,
                    "rate": per_minute,
                    "attribution": backfill.attribution,
                },
                deletions,
            )

    report = await asyncio.to_thread(work)
    if not dry_run:
        federation.wake()
    return target, report

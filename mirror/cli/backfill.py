"""Backfills: start one (and follow it with --wait), list and steer runs, retract;
the sandbox to backfill into, and the demo.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from mirror.cli.delivery import _reason_line
from mirror.cli.wiring import (
    EXIT_OK,
    INIT_REMINDER,
    UsageError,
    engine_for,
    federation_for,
)
from mirror.clock import SystemClock
from mirror.config import Settings
from mirror.db.session import write_transaction
from mirror.errors import MirrorError
from mirror.wording import counted


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.publish.start import pace_for, start_backfill

    federation = federation_for(settings)

    async def start():  # type: ignore[no-untyped-def]
        try:
            return await start_backfill(
                federation,
                to=args.to,
                source=args.source,
                since=args.since,
                limit=args.limit,
                rate=args.rate,
                dry_run=args.dry_run,
                attribution=args.attribution,
            )
        finally:
            await federation.close()

    target, report = asyncio.run(start())
    planned = report.planned
    if target.hosted:
        print(
            f"target: {target.id}, hosted here: stored at once, and announced by the "
            "community to its followers' servers"
        )
    else:
        print(
            f"target: {target.id} ({target.software or 'unknown software'} "
            f"{target.version or ''}, posts as {target.post_type(settings.backfill.post_type)}); "
            f"inbox {target.inbox}"
        )
    print(
        f"plan: {counted(planned['posts'], 'post')}, {counted(planned['comments'], 'comment')}, "
        f"{counted(planned['followers_only'], 'comment')} of unknown posts (followers only)"
    )
    for reason, count in report.left_out.items():
        print(f"left out: {count} ({reason})")
    if args.dry_run:
        print("dry run: nothing was queued. The first activities:")
        json.dump(report.first, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    if report.run_id is None:
        print(
            f"nothing new: the {report.unchanged} planned items were all queued before "
            "(`mirror runs` shows how they went); no run was made"
        )
        return EXIT_OK
    print(
        f"run {report.run_id}: {report.queued} new, {report.updated} updated, "
        f"{report.requeued} queued again, {report.unchanged} already there, "
        f"{report.deleted} deleted; {counted(report.deliveries, 'delivery', 'deliveries')} queued"
    )
    pace = pace_for(target, settings.backfill, args.rate)
    print(pace.line())
    if report.waiting:
        print(
            f"{report.waiting} wait before they are sent (a reply for its parent's "
            "confirmation, a post for the target's new-account limit); `mirror runs` says why"
        )
    if not args.wait:
        print(
            "`mirror serve` or `mirror worker` delivers them and asks the target what it "
            "stored; `mirror runs` shows progress"
        )
        return EXIT_OK
    from mirror.cli.watch import wait_for_run

    return wait_for_run(federation.engine, report.run_id, pace)


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.publish import publications, runs

    engine = engine_for(settings)
    now = SystemClock().now()
    if args.action == "list":
        with engine.connect() as conn:
            listing = runs.list_runs(conn, now)
        if args.json:
            json.dump(listing, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return EXIT_OK
        table = Table(title="backfill runs (items)")
        columns = ("run", "target", "state", "confirmed", "sent", "waiting", "not stored")
        for column in (*columns, "unverifiable"):
            table.add_column(column)
        for run in listing:
            items = run["publications"]
            # Missing, refused, failed, held or parked: the lines below say why.
            not_stored = sum(items[s] for s in ("missing", "refused", "failed", "held", "parked"))
            table.add_row(
                str(run["id"]),
                _community(run["target"]),
                run["state"],
                f"{items['confirmed']}/{run['total']}",
                str(items["sent"] + items["queued"]),
                str(items["waiting"]),
                str(not_stored),
                str(items["unverifiable"]),
            )
        console = Console(highlight=False)
        console.print(table)
        with engine.connect() as conn:
            attention = publications.not_confirmed(conn, run_id=args.run)
        if attention:
            console.print("not confirmed, and why:")
            for row in attention:
                console.print(_reason_line(row))
        return EXIT_OK
    if args.run is None:
        raise UsageError(f"runs {args.action} needs a RUN number")
    action = {"pause": runs.pause, "resume": runs.resume, "cancel": runs.cancel}[args.action]
    with write_transaction(engine) as conn:
        count = action(conn, args.run, now)
    verb = {"pause": "held", "resume": "released", "cancel": "cancelled"}[args.action]
    print(f"run {args.run}: {count} deliveries {verb}")
    return EXIT_OK


def _community(actor_id: str) -> str:
    """!name@host for a community's actor URL (what operators typed)."""
    from urllib.parse import urlsplit

    parts = urlsplit(actor_id)
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return f"!{name}@{parts.netloc}" if name else actor_id


def cmd_retract(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.publish.backfill import PUBLICATIONS
    from mirror.publish.retract import delete_publications
    from mirror.vocab.ids import Urls

    if (args.item is None) == (args.run is None):
        raise UsageError("retract needs an ITEM or --run RUN")
    if not settings.instance.base_url:
        raise UsageError(f"no [instance].base_url configured: {INIT_REMINDER}")
    engine = engine_for(settings)
    where = PUBLICATIONS.c.item_id == args.item if args.item else PUBLICATIONS.c.run_id == args.run
    with write_transaction(engine) as conn:
        count = delete_publications(
            conn,
            urls=Urls.from_base_url(settings.instance.base_url),
            now=SystemClock().now(),
            where=where,
            inbox_for={},
        )
    if count == 0:
        raise MirrorError(f"nothing mirrored matches {args.item or f'run {args.run}'}")
    print(f"{count} objects: Deletes queued; their URLs answer 410 now")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.sandbox.serve import run_sandbox
    from mirror.server.app import parse_listen

    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from mirror.sandbox.profiles import SOFTWARE

    software, _, version = args.software.partition("/")
    if software not in SOFTWARE:
        raise UsageError(f"--software {args.software}: the sandbox is {' or '.join(SOFTWARE)}")
    asyncio.run(
        run_sandbox(
            next_steps=lambda instance: _sandbox_steps(instance.community, instance.host, settings),
            host=host,
            port=port,
            community=args.community,
            software=software,
            version=version,
            refusal_status=args.refusals,
        )
    )
    return EXIT_OK


def _sandbox_steps(community: str, netloc: str, settings: Settings) -> list[str]:
    """The commands that backfill into the sandbox, each as printed ready to paste."""
    from mirror.net.allowance import allowance_for

    host, _, port = netloc.rpartition(":")
    steps = []
    if not allowance_for(settings).allows(host, int(port)):
        steps += [
            "let the mirror reach it (once; every command reads it, running ones too):",
            f"  mirror config allow-host {netloc}",
        ]
    steps += [
        "backfill into it (with `mirror serve` running):",
        f"  mirror backfill --to {community}@{netloc} --wait",
    ]
    return steps


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.demo import run_demo

    return asyncio.run(run_demo(settings, exit_when_done=args.exit))

"""Backfills: start one (and follow it with --wait), list and steer runs, retract;
the sandbox to backfill into, and the demo.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from mirror.cli.delivery import _reason_line
from mirror.cli.wiring import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
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

log = logging.getLogger("mirror")


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.publish.start import start_backfill

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
        f"plan: {planned['posts']} posts, {planned['comments']} comments, "
        f"{planned['followers_only']} comments of unknown posts (followers only)"
    )
    for reason, count in report.left_out.items():
        print(f"left out: {count} ({reason})")
    if args.dry_run:
        print("dry run: nothing was queued. The first activities:")
        json.dump(report.first, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    print(
        f"run {report.run_id}: {report.queued} new, {report.updated} updated, "
        f"{report.requeued} queued again, {report.unchanged} already there, "
        f"{report.deleted} deleted; {report.deliveries} deliveries queued"
    )
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
    return _wait_for_run(federation.engine, report.run_id)


def _wait_for_run(engine: Engine, run_id: int) -> int:
    """Show the run until it is done; Ctrl-C stops watching, not the run."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from mirror.publish.publications import not_confirmed
    from mirror.publish.runs import progress

    def read() -> dict:  # type: ignore[type-arg]
        with engine.connect() as conn:
            return progress(conn, run_id, SystemClock().now())

    report = read()
    try:
        if sys.stderr.isatty():
            columns = (
                TextColumn(f"run {run_id}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} confirmed"),
                TextColumn("{task.fields[states]}"),
                TimeRemainingColumn(),
            )
            with Progress(*columns, transient=False) as bar:
                task = bar.add_task("confirm", total=report["total"], states="")
                while not report["finished"]:
                    bar.update(task, completed=report["done"], states=_open_states(report))
                    time.sleep(0.5)
                    report = read()
                bar.update(task, completed=report["done"], states="")
        else:
            last = 0.0
            while not report["finished"]:
                if time.monotonic() - last >= 10:
                    log.warning(
                        "run %d: %d/%d confirmed; %s",
                        run_id,
                        report["done"],
                        report["total"],
                        _open_states(report),
                    )
                    last = time.monotonic()
                time.sleep(0.5)
                report = read()
    except KeyboardInterrupt:
        print(
            f"\nstopped watching: run {run_id} goes on in `mirror serve`/`mirror worker`; "
            "`mirror runs` shows it"
        )
        return EXIT_INTERRUPTED
    print(f"run {run_id} done: {_summary(report)}")
    with engine.connect() as conn:
        for row in not_confirmed(conn, run_id=run_id):
            print(_reason_line(row))
    items = report["publications"]
    unsettled = sum(items[s] for s in ("refused", "failed", "parked", "held", "missing"))
    return EXIT_OK if unsettled == 0 and report["by_state"]["failed"] == 0 else EXIT_FAILED


def _open_states(report: dict) -> str:  # type: ignore[type-arg]
    items = report["publications"]
    shown = ("sent", "queued", "waiting", "missing", "held")
    return ", ".join(f"{items[s]} {s}" for s in shown if items[s])


def _summary(report: dict) -> str:  # type: ignore[type-arg]
    """Every non-zero count of the run's items, then its deliveries."""
    items = report["publications"]
    parts = [f"{count} {state}" for state, count in items.items() if count]
    deliveries = report["by_state"]
    parts.append(
        f"deliveries: {deliveries['delivered']} delivered, {deliveries['failed']} failed, "
        f"{deliveries['parked']} parked"
    )
    return ", ".join(parts)


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
            host=host,
            port=port,
            community=args.community,
            software=software,
            version=version,
            refusal_status=args.refusals,
        )
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.demo import run_demo

    return asyncio.run(run_demo(settings, exit_when_done=args.exit))

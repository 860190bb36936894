"""The delivery queue's commands: status, retry, cancel, hosts revive, prune."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from mirror.cli.wiring import EXIT_OK, UsageError, engine_for
from mirror.clock import SystemClock
from mirror.config import Settings
from mirror.db.session import write_transaction


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate
    from mirror.publish import publications

    engine = engine_for(settings)
    with engine.connect() as conn:
        report = operate.status(conn, SystemClock().now())
        report["publications"] = {
            "by_state": publications.counts(conn),
            "not_confirmed": publications.not_confirmed(conn, limit=10),
        }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console(highlight=False)
    states = report["deliveries"]["by_state"]
    console.print("deliveries: " + ", ".join(f"{name} {count}" for name, count in states.items()))
    oldest = report["deliveries"]["oldest_due_at"]
    if oldest:
        console.print(
            f"oldest due: {oldest} ({report['deliveries']['oldest_due_age_s']:.0f} s ago)"
        )
    items = report["publications"]["by_state"]
    console.print(
        "published items: " + ", ".join(f"{name} {count}" for name, count in items.items() if count)
        if any(items.values())
        else "published items: none"
    )
    for row in report["publications"]["not_confirmed"]:
        console.print(_reason_line(row))
    console.print(f"followers: {report['followers']}")
    if report["hosts"]:
        table = Table(title="hosts")
        for column in ("host", "breaker", "dead", "outstanding", "last success", "last error"):
            table.add_column(column)
        for host in report["hosts"]:
            table.add_row(
                host["host"],
                host["breaker"],
                "dead" if host["dead"] else "",
                str(host["outstanding"]),
                host["last_success_at"] or "-",
                (host["last_error"] or "")[:60],
            )
        console.print(table)
    return EXIT_OK


def _reason_line(row: dict) -> str:  # type: ignore[type-arg]
    """One group of items not confirmed: how many, what they are, why."""
    kind = row["kind"] + ("s" if row["count"] != 1 else "")
    due = f" (next at {row['next_at']})" if row["next_at"] else ""
    return f"  {row['count']} {kind} {row['state']}{due}: {row['reason'] or ''}"


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    engine = engine_for(settings)
    if args.unconfirmed:
        from mirror.publish import publications

        if args.failed or args.host:
            raise UsageError("--unconfirmed goes with --run only")
        with write_transaction(engine) as conn:
            count = publications.retry_unconfirmed(conn, now=SystemClock().now(), run_id=args.run)
        print(
            f"{count} items go again with the next cycle of `mirror serve`/`mirror worker` "
            "(those sent before with new activity ids; replies still wait for their "
            "parent's confirmation)"
        )
        return EXIT_OK
    if args.run is not None:
        raise UsageError("--run goes with --unconfirmed")
    with write_transaction(engine) as conn:
        count = operate.retry(conn, now=SystemClock().now(), failed=args.failed, host=args.host)
    print(f"{count} deliveries queued again")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    if not (args.host or args.activity or args.all):
        raise UsageError("cancel needs --host HOST, --activity ID or --all")
    engine = engine_for(settings)
    with write_transaction(engine) as conn:
        count = operate.cancel(
            conn, now=SystemClock().now(), host=args.host, activity=args.activity
        )
    print(f"{count} deliveries cancelled")
    return EXIT_OK


def cmd_hosts_revive(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    engine = engine_for(settings)
    with write_transaction(engine) as conn:
        count = operate.revive(conn, args.host, SystemClock().now())
    print(f"{args.host}: revived; {count} parked deliveries queued again")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    days = args.older_than if args.older_than is not None else settings.delivery.retention_days
    engine = engine_for(settings)
    with write_transaction(engine) as conn:
        deliveries, received = operate.prune(conn, now=SystemClock().now(), retention_days=days)
    print(f"pruned {deliveries} delivered rows and {received} inbox records older than {days} days")
    return EXIT_OK

"""`mirror backfill --wait`: follow a run until it is done, on a terminal or piped.

What is shown comes from the database, as `mirror runs` and `mirror status`
read it: the run's items by state, its deliveries, the health of the
servers it goes to, and whether any `serve` or `worker` is running at all
(without one nothing moves, and a bar at 0/N would say nothing about why).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from mirror.cli.delivery import _reason_line
from mirror.cli.wiring import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from mirror.clock import SystemClock
from mirror.publish.start import Pace

#: Seconds between two reads of the run.
POLL_S = 0.5
#: Piped: a line when something changed, at most every LINE_EVERY_S, and at
#: least every LINE_AT_LEAST_S (to show the watch is alive).
LINE_EVERY_S, LINE_AT_LEAST_S = 2.0, 30.0
NO_WORKER = "no `mirror serve` or `mirror worker` is running: nothing is delivered until one starts"
#: Delivery states worth a word beside `delivered` when there are any.
DELIVERY_TROUBLE = ("retrying", "failed", "parked")


@dataclass(frozen=True, slots=True)
class Snapshot:
    report: dict[str, Any]
    hosts: list[dict[str, Any]]
    workers: int

    @property
    def finished(self) -> bool:
        return bool(self.report["finished"])

    def states(self) -> str:
        """Everything but the confirmed count: items, deliveries, hosts, workers."""
        items = self.report["publications"]
        parts = [
            f"{count} {state}" for state, count in items.items() if count and state != "confirmed"
        ]
        deliveries = self.report["by_state"]
        words = [f"{deliveries['delivered']} delivered"] + [
            f"{deliveries[s]} {s}" for s in DELIVERY_TROUBLE if deliveries[s]
        ]
        parts.append("deliveries: " + ", ".join(words))
        parts.extend(_host(host) for host in self.hosts)
        if self.workers == 0 and not self.finished:
            parts.insert(0, NO_WORKER)
        return "; ".join(parts)

    def line(self, run_id: int) -> str:
        done, total = self.report["done"], self.report["total"]
        return f"run {run_id}: {done}/{total} confirmed; {self.states()}"


def _host(host: dict[str, Any]) -> str:
    state = "dead" if host["dead"] else f"breaker {host['breaker']}"
    if host["failing"] and host["last_error"]:
        return f"{host['host']} {state}, last error: {host['last_error'][:120]}"
    return f"{host['host']} {state}"


def read(engine: Engine, run_id: int) -> Snapshot:
    from mirror.delivery import workers
    from mirror.publish.runs import hosts, progress

    now = SystemClock().now()
    with engine.connect() as conn:
        return Snapshot(
            progress(conn, run_id, now), hosts(conn, run_id, now), workers.alive(conn, now)
        )


def wait_for_run(engine: Engine, run_id: int, pace: Pace) -> int:
    """Show the run until it is done; Ctrl-C stops watching, not the run."""
    snapshot = read(engine, run_id)
    try:
        if sys.stdout.isatty():
            snapshot = _bar(engine, run_id, pace, snapshot)
        else:
            snapshot = _lines(engine, run_id, snapshot)
    except KeyboardInterrupt:
        idle = " (none is running now: start one)" if snapshot.workers == 0 else ""
        print(
            f"\nstopped watching: run {run_id} goes on in `mirror serve`/`mirror worker`{idle}; "
            "`mirror runs` shows its items, `mirror status` its deliveries and hosts"
        )
        return EXIT_INTERRUPTED
    report = snapshot.report
    print(f"run {run_id} done: {_summary(report)}")
    from mirror.publish.publications import not_confirmed

    with engine.connect() as conn:
        for row in not_confirmed(conn, run_id=run_id):
            print(_reason_line(row))
    items = report["publications"]
    unsettled = sum(items[s] for s in ("refused", "failed", "parked", "held", "missing"))
    return EXIT_OK if unsettled == 0 and report["by_state"]["failed"] == 0 else EXIT_FAILED


def _bar(engine: Engine, run_id: int, pace: Pace, snapshot: Snapshot) -> Snapshot:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RunProgress(Progress):
        """The bar, and the states on the lines below it (they wrap: a narrow
        terminal would cut a column of them short, and the bar with them)."""

        states = ""

        def get_renderables(self):  # type: ignore[no-untyped-def]
            yield self.make_tasks_table(self.tasks)
            if self.states:
                yield Text(self.states)

    columns = (
        TextColumn(f"run {run_id} ({pace.short})"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} confirmed"),
        TimeRemainingColumn(),
    )
    with RunProgress(*columns, transient=False) as bar:
        task = bar.add_task("confirm", total=snapshot.report["total"])
        while not snapshot.finished:
            bar.states = snapshot.states()
            bar.update(task, completed=snapshot.report["done"])
            time.sleep(POLL_S)
            snapshot = read(engine, run_id)
        bar.states = ""
        bar.update(task, completed=snapshot.report["done"])
    return snapshot


def _lines(engine: Engine, run_id: int, snapshot: Snapshot) -> Snapshot:
    """Plain progress lines for a pipe or a log (not log records: this is the output)."""
    last, last_at = "", float("-inf")
    while not snapshot.finished:
        line, now = snapshot.line(run_id), time.monotonic()
        if (line != last and now - last_at >= LINE_EVERY_S) or now - last_at >= LINE_AT_LEAST_S:
            print(line, flush=True)
            last, last_at = line, now
        time.sleep(POLL_S)
        snapshot = read(engine, run_id)
    return snapshot


def _summary(report: dict[str, Any]) -> str:
    """Every non-zero count of the run's items, then its deliveries."""
    items = report["publications"]
    parts = [f"{count} {state}" for state, count in items.items() if count]
    deliveries = report["by_state"]
    parts.append(
        f"deliveries: {deliveries['delivered']} delivered, {deliveries['failed']} failed, "
        f"{deliveries['parked']} parked"
    )
    return ", ".join(parts)

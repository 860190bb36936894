"""Operator benchmark: `mirror status`, `mirror runs`, the admin page and /metrics at depth.

Builds once (into --keep DIR, reused by later runs) a database at the
alembic head holding --rows deliveries, as many publications and activities,
and as many posts and comments, spread the way a large backfill leaves them:
a finished run (all delivered and confirmed), an active one (mostly
delivered, some pending, retrying, in flight, failed or parked), a paused
one and a cancelled one, to a few hosts. Then it times the in-process
functions behind each operator view (not the command's start-up), one
warm-up and the median of --repeat, against the 200 ms target.

    python benchmarks/operate.py [--rows 1000000] [--keep DIR] [--backend sqlite|postgresql]

Building a million rows takes about 70 s on SQLite (once per
--keep folder); the timings then take well under a minute when every view
meets its target. On PostgreSQL it creates (and rebuilds when the row count
differs) the database bench_operate on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from mirror.db import migrate  # noqa: E402
from mirror.db.session import make_engine, write_transaction  # noqa: E402

TARGET_MS = 200.0
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_operate"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=20)
CHUNK = 50_000
BASE = "https://mirror.example.org"
#: The runs: (id, state, host, share of the rows). Shares sum to 1.
RUNS = (
    (1, "active", "lemmy.world", 0.60),  # finished long ago: everything delivered
    (2, "active", "piefed.social", 0.35),  # under way: the queue's live part
    (3, "paused", "lemmy.ml", 0.04),
    (4, "cancelled", "beehaw.org", 0.01),
)
HOSTS = (
    "lemmy.world",
    "piefed.social",
    "lemmy.ml",
    "beehaw.org",
    "mbin.example",
    "sh.itjust.works",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="deliveries (and the rest)")
    parser.add_argument("--keep", type=Path, help="build the SQLite database here, keep it")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls; the median is shown")
    args = parser.parse_args()

    engine = _database(args)
    _print_plan_notes(engine)
    results = {name: _time(fn, engine, args.repeat) for name, fn in VIEWS.items()}
    print(f"\n{args.backend}, {args.rows:,} rows; median of {args.repeat} after one warm-up")
    for name, times in results.items():
        median = statistics.median(times)
        verdict = "ok" if median < TARGET_MS else "OVER"
        spread = f"{min(times):.0f}-{max(times):.0f}"
        print(f"  {name:<8} {median:8.1f} ms  ({spread})  target < {TARGET_MS:.0f} ms: {verdict}")
    engine.dispose()


# -- the views: what the CLI and the routes call -----------------------------------------


def status_view(engine: Engine) -> Any:
    """What `mirror status` reads (mirror.cli.delivery.cmd_status)."""
    from mirror.delivery import operate
    from mirror.publish import publications

    with engine.connect() as conn:
        report = operate.status(conn, NOW)
        report["publications"] = {
            "by_state": publications.counts(conn),
            "not_confirmed": publications.not_confirmed(conn, limit=10),
        }
    return report


def runs_view(engine: Engine) -> Any:
    """What `mirror runs` reads (mirror.cli.backfill.cmd_runs, list)."""
    from mirror.publish import publications, runs

    with engine.connect() as conn:
        listing = runs.list_runs(conn, NOW)
    with engine.connect() as conn:
        attention = publications.not_confirmed(conn, run_id=None)
    return listing, attention


def admin_view(engine: Engine) -> Any:
    """What GET /admin reads (mirror.server.routes.admin._gather)."""
    from mirror.server.routes.admin import _gather
    from mirror.vocab.ids import Urls

    federation = SimpleNamespace(
        engine=engine,
        clock=SimpleNamespace(now=lambda: NOW),
        urls=Urls.from_base_url(BASE),
        bot_username="mirror",
    )
    return _gather(federation, None)


def metrics_view(engine: Engine) -> Any:
    """What a scrape of /metrics reads (mirror.observe.metrics.DatabaseCollector)."""
    from mirror.observe.metrics import DatabaseCollector

    return list(DatabaseCollector(engine, lambda: NOW).collect())


VIEWS: dict[str, Callable[[Engine], Any]] = {
    "status": status_view,
    "runs": runs_view,
    "admin": admin_view,
    "metrics": metrics_view,
}


def _time(view: Callable[[Engine], Any], engine: Engine, repeat: int) -> list[float]:
    view(engine)  # warm-up: the page cache, SQLAlchemy's statement cache
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        view(engine)
        times.append((time.perf_counter() - began) * 1000)
    return times


def _print_plan_notes(engine: Engine) -> None:
    with engine.connect() as conn:
        counts = {
            table: conn.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            for table in ("delivery", "publication", "activity", "post", "comment")
        }
    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))


# -- the database ------------------------------------------------------------------------


def _database(args: argparse.Namespace) -> Engine:
    if args.backend == "postgresql":
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
        engine = make_engine(url)
        if _built_rows(engine) != args.rows:
            engine.dispose()
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
                conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
            admin.dispose()
            engine = make_engine(url)
            _build(engine, args.rows)
        else:
            migrate.upgrade(engine)  # a kept database follows the schema
        return engine
    folder = args.keep or Path(tempfile.mkdtemp(prefix="fedimirror-operate-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"operate-{args.rows}.db"
    engine = make_engine(f"sqlite:///{path}")
    if path.exists() and _built_rows(engine) == args.rows:
        print(f"reusing {path}")
        migrate.upgrade(engine)
        return engine
    path.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    _build(engine, args.rows)
    print(f"built {path}")
    return engine


def _built_rows(engine: Engine) -> int | None:
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM delivery"))
    except sa.exc.DBAPIError:
        return None


def _build(engine: Engine, rows: int) -> None:
    began = time.perf_counter()
    migrate.upgrade(engine)
    sqlite = engine.dialect.name == "sqlite"

    def ts(value: datetime | None) -> Any:
        if value is None or not sqlite:
            return value
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    with write_transaction(engine) as conn:
        _insert(
            conn,
            "local_actor",
            ("username", "kind", "public_key_pem", "private_key", "created_at", "updated_at"),
            [("mirror", "bot", "-", "-", ts(START), ts(START))],
        )
        _insert(
            conn,
            "delivery_host",
            ("host", "consecutive_failures", "last_success_at", "last_failure_at", "last_error"),
            [
                (host, 0, ts(NOW - timedelta(minutes=i)), None, None)
                if i != 2
                else (host, 3, ts(START), ts(NOW), "HTTP 502")
                for i, host in enumerate(HOSTS)
            ],
        )
        _insert(
            conn,
            "follower",
            (
                "local_username",
                "actor_url",
                "inbox",
                "shared_inbox",
                "state",
                "created_at",
                "updated_at",
            ),
            [
                (
                    "mirror",
                    f"https://{h}/u/f{n}",
                    f"https://{h}/u/f{n}/inbox",
                    None,
                    "active",
                    ts(START),
                    ts(START),
                )
                for n, h in enumerate(HOSTS * 5)
            ],
        )
        _insert(
            conn,
            "community",
            ("id", "name", "instance", "title", "created_at", "updated_at"),
            [
                (f"k{n}", f"c{n}", "lemmy.world", f"Community {n}", ts(START), ts(START))
                for n in range(20)
            ],
        )
        _insert(
            conn,
            "backfill_run",
            ("id", "target", "inbox", "options", "state", "items", "created_at", "updated_at"),
            [
                (
                    run,
                    f"https://{host}/c/archive",
                    f"https://{host}/inbox",
                    "{}",
                    state,
                    int(rows * share),
                    ts(START + timedelta(days=run)),
                    ts(START + timedelta(days=run)),
                )
                for run, state, host, share in RUNS
            ],
        )
    for offset in range(0, rows, CHUNK):
        with write_transaction(engine) as conn:
            _chunk(conn, range(offset, min(rows, offset + CHUNK)), rows, ts)
        print(f"  built {min(rows, offset + CHUNK):,}/{rows:,}", end="\r", flush=True)
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("ANALYZE")
    print(f"\nbuilt {rows:,} rows in {time.perf_counter() - began:.0f} s")


def _run_of(n: int, rows: int) -> tuple[int, str, str, float]:
    """The run row n belongs to, and where it falls in it (0..1)."""
    start = 0.0
    for run in RUNS:
        end = start + run[3] * rows
        if n < end or run is RUNS[-1]:
            return run[0], run[1], run[2], (n - start) / max(1.0, end - start)
        start = end
    raise AssertionError


def _fate(run: int, place: float, n: int) -> tuple[str, str, int, bool]:
    """(delivery state, publication state, attempts, leased) for the row at ``place`` in its run."""
    if run == 1:
        return "delivered", "confirmed" if n % 50 else "unverifiable", 1, False
    if run == 2:
        if place < 0.90:
            return "delivered", "confirmed", 1, False
        if place < 0.92:
            return "delivered", "sent", 1, False
        if place < 0.93:
            return "failed", "failed", 8, False
        if place < 0.935:
            return "parked", "held", 1, False
        kind = n % 20
        if kind == 0:
            return "pending", "queued", 0, True  # in flight
        if kind < 4:
            return "pending", "queued", 2, False  # retrying
        return "pending", "queued", 0, False
    if run == 3:
        return ("delivered", "confirmed", 1, False) if place < 0.5 else ("parked", "held", 0, False)
    return (
        ("delivered", "confirmed", 1, False)
        if place < 0.3
        else ("cancelled", "cancelled", 0, False)
    )


def _chunk(conn: sa.Connection, span: range, rows: int, ts: Callable[[Any], Any]) -> None:
    items, activities, deliveries, publications = [], [], [], []
    posts_every = 7  # one post in seven items: the rest are comments
    for n in span:
        run, _state, host, place = _run_of(n, rows)
        delivery_state, publication_state, attempts, leased = _fate(run, place, n)
        at = START + timedelta(seconds=n)
        post = n % posts_every == 0
        item = f"p{n:08d}" if post else f"c{n:08d}"
        object_id = f"o{n:08d}"
        activity = f"a{n:08d}"
        parent = None if post else f"o{n - n % posts_every:08d}"
        items.append((post, item, n, at))
        activities.append(
            (
                activity,
                "mirror",
                "Create",
                f"{BASE}/objects/{object_id}",
                f"{BASE}/objects/{parent}" if parent else None,
                True,
                '{"type": "Create"}',
                ts(at),
                run,
            )
        )
        delivered = delivery_state == "delivered"
        due = NOW + timedelta(seconds=n % 600) if delivery_state == "pending" else at
        deliveries.append(
            (
                n + 1,
                activity,
                f"https://{host}/inbox",
                host,
                f"{BASE}/objects/{object_id}",
                f"{BASE}/objects/{parent}" if parent else None,
                delivery_state,
                attempts,
                ts(due),
                "worker-1" if leased else None,
                ts(NOW + timedelta(minutes=1)) if leased else None,
                "HTTP 502" if attempts > 1 else None,
                0,
                ts(at),
                ts(at),
                ts(at) if delivered else None,
            )
        )
        publications.append(
            (
                object_id,
                item,
                "post" if post else "comment",
                f"https://{host}/c/archive",
                "mirror",
                run,
                activity,
                "h",
                parent,
                publication_state,
                "HTTP 502" if publication_state == "failed" else None,
                ts(NOW + timedelta(hours=1)) if publication_state == "sent" else None,
                1,
                0,
                ts(at) if delivered else None,
                ts(at) if publication_state == "confirmed" else None,
                ts(at),
                ts(at),
            )
        )
    item_columns = (
        "id",
        "author_id",
        "body",
        "published_at",
        "confidence",
        "created_at",
        "updated_at",
    )
    _insert(
        conn,
        "post",
        (*item_columns, "community_id", "title", "title_derived"),
        [
            (item, None, "body", ts(at), "high", ts(at), ts(at), f"k{n % 20}", "A title", False)
            for post, item, n, at in items
            if post
        ],
    )
    _insert(
        conn,
        "comment",
        (*item_columns, "post_id", "parent_id", "parent_known"),
        [
            (
                item,
                None,
                "body",
                ts(at),
                "high",
                ts(at),
                ts(at),
                f"p{n - n % posts_every:08d}",
                None,
                True,
            )
            for post, item, n, at in items
            if not post
        ],
    )
    _insert(
        conn,
        "activity",
        (
            "id",
            "actor",
            "type",
            "object_id",
            "depends_on",
            "public",
            "json",
            "created_at",
            "run_id",
        ),
        activities,
    )
    _insert(
        conn,
        "delivery",
        (
            "id",
            "activity_id",
            "inbox",
            "host",
            "ordering_key",
            "depends_on",
            "state",
            "attempts",
            "next_attempt_at",
            "locked_by",
            "locked_until",
            "last_error",
            "unknown_errors",
            "created_at",
            "updated_at",
            "delivered_at",
        ),
        deliveries,
    )
    _insert(
        conn,
        "publication",
        (
            "id",
            "item_id",
            "kind",
            "target",
            "actor",
            "run_id",
            "activity_id",
            "content_hash",
            "parent_id",
            "state",
            "reason",
            "due_at",
            "sends",
            "checks",
            "sent_at",
            "confirmed_at",
            "created_at",
            "updated_at",
        ),
        publications,
    )


def _insert(
    conn: sa.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Rows straight to the driver's executemany: no per-value conversion in Python."""
    if not rows:
        return
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    conn.exec_driver_sql(sql, rows)


if __name__ == "__main__":
    main()

"""A paced run keeps its rate after any gap: an outage, a killed worker, a release later.

Issue 19, item 6: with `--rate 12`, 15 posts and 45 comments went out within
1.03 s once the target came back after 146 s: due times were only floors.
The receivers here are real servers on 127.0.0.1 and record when each
request arrives; the rate is 60 posts a minute, so a slot is a second.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mirror.clock import FrozenClock, ShiftedClock
from mirror.db import migrate
from mirror.db.session import make_engine, write_transaction
from mirror.delivery import operate
from mirror.federation.actors import BOT, create_actor
from mirror.ingest.files import ingest_paths
from mirror.inspection import build_outline
from mirror.publish import publications
from mirror.publish.backfill import PUBLICATIONS, Backfill
from mirror.publish.plan import build_plan, options_from
from mirror.publish.report import Report
from mirror.publish.start import start_backfill
from mirror.publish.target import Target
from mirror.signatures import MasterKey
from mirror.vocab.ids import Urls
from tests.conftest import CAPTURED, SEEDS
from tests.server.conftest import Service, make_settings
from tests.sink import Hit, Sink

RATE = 60.0  # posts a minute
SLOT_S = 60 / RATE
#: Posts in each run (each with its comments).
POSTS = 8
#: The least time between two posts: a poll late keeps the schedule (claim.PACE_SLACK
#: = half a slot), less what the network adds.
MIN_GAP_S = 0.4
#: A receiver is down, or a worker dead, for this many slots.
GAP_SLOTS = 4
QUICK = {"poll_interval_s": 0.05, "backoff_base_s": 0.2, "backoff_max_s": 0.5}


def sink_target(sink: Sink) -> Target:
    """The sink as a community whose software is unknown: no lookups, replies at once."""
    return Target(
        id=f"{sink.base}/c/paced",
        name="paced",
        inbox=sink.inbox,
        followers=None,
        posting_restricted_to_mods=False,
        software=None,
        version=None,
    )


def test_a_sandbox_is_unpaced_unless_a_pace_is_chosen() -> None:
    """Issue 20: a newcomer's `--wait` into the sandbox took 9 minutes at the default pace."""
    from dataclasses import replace

    from mirror.config import BackfillSettings
    from mirror.publish.start import pace_for

    sink = Sink()
    real, sandbox = sink_target(sink), replace(sink_target(sink), sandbox=True)
    default, chosen = BackfillSettings(), BackfillSettings(rate_per_minute=2.0)
    assert pace_for(real, default, None).per_minute == 4.0
    assert pace_for(sandbox, default, None).line() == (
        "pace: unpaced (the target is a sandbox; --rate paces it)"
    )
    # A pace chosen in the config, or with --rate, still wins.
    assert pace_for(sandbox, chosen, None).line() == (
        "pace: 2 posts/min ([backfill].rate_per_minute)"
    )
    assert pace_for(sandbox, default, 12.0).line() == "pace: 12 posts/min (--rate)"
    assert pace_for(real, chosen, 0.0).line() == "pace: unpaced (--rate)"


def ingest_seeds(engine: sa.Engine) -> None:
    ingest_paths(
        engine, sorted(SEEDS.glob("*.txt")), clock=FrozenClock(CAPTURED), captured_at=CAPTURED
    )


def queue_run(
    engine: sa.Engine, backfill: Callable[[sa.Connection], Backfill], rate: float
) -> Report:
    """What `mirror backfill --to ... --limit POSTS --rate RATE` queues, in one transaction."""
    settings_options = options_from(backfill_settings(), limit=POSTS)
    plan = build_plan(build_outline(engine), settings_options)
    with write_transaction(engine) as conn:
        return backfill(conn).run(plan, {"to": "paced", "rate": rate}, [])


def backfill_settings() -> Any:
    from mirror.config import Settings

    return Settings().backfill


def first_arrivals(hits: list[Hit], *, kind: str) -> dict[str, float]:
    """When each object of ``kind`` (Page: posts, Note: comments) first arrived."""
    seen: dict[str, float] = {}
    for hit in hits:
        obj = hit.activity["object"]
        if isinstance(obj, dict) and obj.get("type") == kind:
            seen.setdefault(obj["id"], hit.at)
    return seen


def assert_paced(times: list[float], *, since: float) -> None:
    """Posts that could all have gone at ``since`` went a slot apart, not at once."""
    times = sorted(times)
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    assert min(gaps) >= MIN_GAP_S, f"posts {gaps} s apart"
    # On average a slot apart: the backlog drained at the run's rate.
    assert times[-1] - times[0] >= (len(times) - 1) * SLOT_S * 0.8, gaps
    assert len([t for t in times if t - since < 1.2 * SLOT_S]) <= 2, gaps


def assert_comments_follow(hits: list[Hit]) -> None:
    """Every comment arrived after its parent (a post or a comment)."""
    arrived = {**first_arrivals(hits, kind="Page"), **first_arrivals(hits, kind="Note")}
    for hit in hits:
        obj = hit.activity["object"]
        if isinstance(obj, dict) and obj.get("inReplyTo"):
            assert arrived[obj["inReplyTo"]] <= arrived[obj["id"]]


async def wait_drained(engine: sa.Engine, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with engine.connect() as conn:
            left = operate.status(conn, datetime.now(UTC))["deliveries"]["outstanding"]
        if not left:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{left} deliveries left"
        await asyncio.sleep(0.1)


async def test_a_paced_run_keeps_its_rate_when_its_target_comes_back(
    service_factory: Callable[..., Any],
) -> None:
    service: Service = await service_factory(
        delivery={**QUICK, "breaker_cooloff_s": 1, "per_host_concurrency": 4}
    )
    await asyncio.to_thread(ingest_seeds, service.engine)
    sink = Sink()  # down: nothing listens on its port yet
    report = queue_run(
        service.engine,
        lambda conn: Backfill.of(conn, service.federation, sink_target(sink), RATE),
        RATE,
    )
    service.federation.wake()
    assert report.queued > POSTS  # posts and their comments
    # Down for a while: every post's due time passes, each post is tried and fails.
    await asyncio.sleep(GAP_SLOTS * SLOT_S + POSTS * SLOT_S)
    assert sink.hits == []
    await sink.start()
    back = asyncio.get_running_loop().time()
    try:
        await wait_drained(service.engine)
    finally:
        await sink.stop()
    posts = first_arrivals(sink.hits, kind="Page")
    assert len(posts) == POSTS
    assert_paced(list(posts.values()), since=back)
    assert_comments_follow(sink.hits)


def worker_env(url: str, base: str, master_key: MasterKey) -> dict[str, str]:
    return {
        **os.environ,
        "MIRROR_DATABASE_URL": url,
        "MIRROR_INSTANCE__BASE_URL": base,
        "MIRROR_MASTER_KEY": master_key.to_text(),
        "MIRROR_ALLOW_PRIVATE_NETWORKS": "true",
        **{f"MIRROR_DELIVERY__{key.upper()}": str(value) for key, value in QUICK.items()},
    }


async def test_a_paced_run_keeps_its_rate_after_its_worker_is_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    settings = make_settings(tmp_path, 8000, database={"url": url})
    engine = make_engine(url)
    migrate.upgrade(engine)
    master_key = MasterKey.generate()
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        create_actor(conn, username="mirror", kind=BOT, master_key=master_key, now=now)
    await asyncio.to_thread(ingest_seeds, engine)
    sink = Sink()
    await sink.start()
    try:
        urls = Urls.from_base_url(settings.instance.base_url)

        def backfill(conn: sa.Connection) -> Backfill:
            return Backfill(
                conn,
                settings=settings,
                urls=urls,
                master_key=master_key,
                target=sink_target(sink),
                now=datetime.now(UTC),
                rate_per_minute=RATE,
            )

        queue_run(engine, backfill, RATE)
        env = worker_env(url, settings.instance.base_url, master_key)
        command = [sys.executable, "-m", "mirror", "worker"]
        quiet = asyncio.subprocess.DEVNULL
        worker = await asyncio.create_subprocess_exec(*command, env=env, stderr=quiet)
        while len(first_arrivals(sink.hits, kind="Page")) < 2:
            await asyncio.sleep(0.01)
        worker.kill()  # SIGKILL: nothing is given back
        await worker.wait()
        # Dead for a while: the due times of the posts left all pass.
        await asyncio.sleep(GAP_SLOTS * SLOT_S + POSTS * SLOT_S)
        before = len(sink.hits)
        restarted = await asyncio.create_subprocess_exec(*command, env=env, stderr=quiet)
        since = asyncio.get_running_loop().time()
        try:
            await wait_drained(engine)
        finally:
            restarted.send_signal(signal.SIGTERM)
            assert await restarted.wait() == 0
        after = first_arrivals(sink.hits[before:], kind="Page")
        assert len(first_arrivals(sink.hits, kind="Page")) == POSTS
        assert len(after) >= POSTS - 3
        assert_paced(list(after.values()), since=since)
        assert_comments_follow(sink.hits)
    finally:
        await sink.stop()
        engine.dispose()


async def test_updates_of_a_run_keep_its_rate(service_factory: Callable[..., Any]) -> None:
    """A re-run after the reconstruction changed: the posts' Updates go a slot apart."""
    service: Service = await service_factory(delivery={**QUICK, "per_host_concurrency": 4})
    await asyncio.to_thread(ingest_seeds, service.engine)
    sink = Sink()
    await sink.start()
    try:
        target = sink_target(sink)
        queue_run(service.engine, lambda c: Backfill.of(c, service.federation, target, 0.0), 0.0)
        service.federation.wake()
        await wait_drained(service.engine)
        # The next dumps show every post with more text: each gets an Update.
        with write_transaction(service.engine) as conn:
            conn.execute(sa.text("UPDATE post SET body = COALESCE(body, '') || ' More.'"))
        before = len(sink.hits)
        report = queue_run(
            service.engine, lambda c: Backfill.of(c, service.federation, target, RATE), RATE
        )
        since = asyncio.get_running_loop().time()
        service.federation.wake()
        assert report.updated >= POSTS
        await wait_drained(service.engine)
    finally:
        await sink.stop()
    updates = [h for h in sink.hits[before:] if h.activity["type"] == "Update"]
    posts = first_arrivals(updates, kind="Page")
    assert len(posts) == POSTS
    assert_paced(list(posts.values()), since=since)


async def test_posts_released_or_published_again_by_the_job_keep_the_runs_rate(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    """PieFed takes 3 posts from a new account (this one, stricter, takes 1): the
    rest are held for a day, the 2 it refused with a 200 are found missing. Then
    the publication job releases the held and publishes the missing again, and
    those take the run's slots too."""
    clock = ShiftedClock()
    service: Service = await service_factory(clock=clock, delivery=QUICK, confirm={"window_s": 3.0})
    await asyncio.to_thread(ingest_seeds, service.engine)
    sandbox = await sandbox_factory("piefed", clock=clock, new_account_posts=0)
    _, report = await start_backfill(
        service.federation, to=f"sandbox@{sandbox.host}", limit=POSTS, rate=RATE
    )
    assert report.waiting > 0
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        with service.engine.connect() as conn:
            counts = publications.counts(conn, run_id=report.run_id)
        if counts["confirmed"] >= 1 and counts["missing"] >= 2:
            break
        assert asyncio.get_running_loop().time() < deadline, counts
        await asyncio.sleep(0.05)
    clock.advance(timedelta(hours=24, minutes=16))  # the account is old enough now
    released = clock.now()
    deadline = asyncio.get_running_loop().time() + 120
    while len([s for s in sandbox.objects.values() if s.kind == "post"]) < POSTS:
        assert asyncio.get_running_loop().time() < deadline, sandbox.refused
        await asyncio.sleep(0.05)
    later = [
        (s.received_at - released).total_seconds()
        for s in sandbox.objects.values()
        if s.kind == "post" and s.received_at is not None and s.received_at >= released
    ]
    assert len(later) == POSTS - 1
    assert_paced(later, since=0.0)
    with service.engine.connect() as conn:
        sends = list(
            conn.scalars(sa.select(PUBLICATIONS.c.sends).where(PUBLICATIONS.c.kind == "post"))
        )
    assert sends.count(2) == 2  # the two missing ones went again, as new activities

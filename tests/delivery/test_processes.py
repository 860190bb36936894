"""Real worker processes: two on PostgreSQL deliver each activity once; SIGKILL loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mirror.db import migrate
from mirror.db.models import Activity, Delivery
from mirror.db.session import make_engine, write_transaction
from mirror.delivery import enqueue, operate
from mirror.federation.actors import BOT, create_actor
from mirror.signatures import MasterKey
from mirror.vocab.ids import Urls
from tests.helpers import publish_notes
from tests.sink import Answer, Sink

BASE = "http://127.0.0.1:8000"


def _prepare(url: str, sink: Sink, count: int) -> MasterKey:
    engine = make_engine(url)
    migrate.upgrade(engine)
    master_key = MasterKey.generate()
    now = datetime.now(UTC)
    urls = Urls.from_base_url(BASE)
    with write_transaction(engine) as conn:
        create_actor(conn, username="mirror", kind=BOT, master_key=master_key, now=now)
        publish_notes(conn, urls, [sink.inbox], count, now)
        enqueue.refresh_statistics(conn)
    engine.dispose()
    return master_key


def _env(url: str, master_key: MasterKey, **delivery: object) -> dict[str, str]:
    env = {
        **os.environ,
        "MIRROR_DATABASE_URL": url,
        "MIRROR_INSTANCE__BASE_URL": BASE,
        "MIRROR_MASTER_KEY": master_key.to_text(),
        "MIRROR_ALLOW_PRIVATE_NETWORKS": "true",
        "MIRROR_DELIVERY__POLL_INTERVAL_S": "0.05",
    }
    for key, value in delivery.items():
        env[f"MIRROR_DELIVERY__{key.upper()}"] = str(value)
    return env


async def _start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def _outstanding(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        report = operate.status(conn, datetime.now(UTC))
    engine.dispose()
    return int(report["deliveries"]["outstanding"])


async def _wait_drained(url: str, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await asyncio.to_thread(_outstanding, url):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the queue did not drain")
        await asyncio.sleep(0.2)


async def _stop(process: asyncio.subprocess.Process) -> bytes:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return err


@pytest.mark.postgres
async def test_two_worker_processes_on_postgresql_deliver_each_once(pg_url: str) -> None:
    sink = Sink()
    await sink.start()
    try:
        master_key = await asyncio.to_thread(_prepare, pg_url, sink, 2000)
        env = _env(pg_url, master_key, per_host_concurrency=16, concurrency=16)
        workers = [await _start_worker(env) for _ in range(2)]
        try:
            await _wait_drained(pg_url)
        finally:
            errors = [await _stop(w) for w in workers]
        assert all(w.returncode == 0 for w in workers), errors
        counts = Counter(sink.objects())
        assert len(counts) == 2000
        assert max(counts.values()) == 1  # exactly once
        assert len(set(sink.ids())) == 2000
        engine = make_engine(pg_url)
        with engine.connect() as conn:
            states = dict(
                conn.execute(sa.text("SELECT state, count(*) FROM delivery GROUP BY state")).all()
            )
            claimers = conn.scalar(sa.text("SELECT count(DISTINCT host) FROM delivery_host"))
        engine.dispose()
        assert states == {"delivered": 2000} and claimers == 1
    finally:
        await sink.stop()


async def test_sigkill_loses_nothing_and_repeats_only_what_was_in_flight(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    sink = Sink(script=lambda hit, n: Answer(delay_s=0.05))
    await sink.start()
    try:
        master_key = await asyncio.to_thread(_prepare, url, sink, 200)
        # A long lease: on a slow machine a short one ran out while its request
        # was still in flight, and the row went out twice from the same worker.
        # The restart does not wait for it: holding SQLite's claimer lock proves
        # the killed worker dead, and its leases are released at once.
        env = _env(url, master_key, per_host_concurrency=8, concurrency=8, lease_s=120)
        worker = await _start_worker(env)
        await _wait_hits(sink, 60)
        worker.kill()  # SIGKILL: no cleanup at all
        await worker.wait()
        engine = make_engine(url)
        with engine.connect() as conn:
            leased = set(
                conn.execute(
                    sa.select(Activity.object_id)
                    .join(Delivery, Delivery.activity_id == Activity.id)
                    .where(Delivery.state == "pending", Delivery.locked_by.is_not(None))
                ).scalars()
            )
        engine.dispose()
        assert 0 < len(leased) <= 8
        restarted = await _start_worker(env)
        try:
            await _wait_drained(url)
        finally:
            await _stop(restarted)
        counts = Counter(sink.objects())
        assert len(counts) == 200  # nothing lost
        repeated = {obj for obj, n in counts.items() if n > 1}
        assert max(counts.values()) <= 2
        assert repeated <= leased  # only what was in flight at the kill
        for obj in repeated:  # a repeat after a crash reuses the id of the attempt it repeats
            sent = {h.activity["id"] for h in sink.hits if h.activity["object"]["id"] == obj}
            assert len(sent) == 1
    finally:
        await sink.stop()


def _hang_first(count: int, seconds: float = 60.0):  # type: ignore[no-untyped-def]
    """A script: the first ``count`` requests hang (their worker holds the host's slots)."""
    return lambda hit, n: Answer(delay_s=seconds) if n <= count else Answer()


async def _wait_hits(sink: Sink, count: int, timeout: float = 60) -> float:
    """Wait until the sink has ``count`` requests; returns when the last of them came."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(sink.hits) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(sink.hits)} requests arrived, not {count}")
        await asyncio.sleep(0.01)
    return sink.hits[count - 1].at


def _same_id_per_object(sink: Sink) -> None:
    ids: dict[str, set[str]] = {}
    for hit in sink.hits:
        ids.setdefault(hit.activity["object"]["id"], set()).add(hit.activity["id"])
    twice = {obj: sent for obj, sent in ids.items() if len(sent) > 1}
    assert twice == {}, f"arrived again under another activity id: {twice}"


async def test_a_restarted_worker_releases_its_dead_predecessors_leases(tmp_path: Path) -> None:
    """Issue 19, item 8: after a SIGKILL the host's two slots were held by the dead
    worker's leases until they expired (lease_s); the restarted worker frees them."""
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    sink = Sink(script=_hang_first(2))
    await sink.start()
    try:
        master_key = await asyncio.to_thread(_prepare, url, sink, 6)
        lease_s = 30
        env = _env(url, master_key, per_host_concurrency=2, lease_s=lease_s)
        worker = await _start_worker(env)
        await _wait_hits(sink, 2)
        worker.kill()
        await worker.wait()
        restarted = await _start_worker(env)
        started = time.monotonic()
        try:
            third = await _wait_hits(sink, 3, timeout=2 * lease_s)
            await _wait_drained(url)
        finally:
            await _stop(restarted)
        # Well before the leases (taken before the kill) would have expired.
        assert third - started < lease_s / 3, f"the host waited {third - started:.1f} s"
        counts = Counter(sink.objects())
        cut_short = set(sink.objects()[:2])
        assert len(counts) == 6 and all(counts[o] == 2 for o in cut_short)
        assert sum(counts.values()) == 8  # nothing else twice
        _same_id_per_object(sink)  # the two cut short went again with their ids
    finally:
        await sink.stop()


@pytest.mark.postgres
async def test_a_surviving_worker_releases_a_dead_workers_leases(pg_url: str) -> None:
    """Issue 19, item 8: workers heartbeat; one silent for three intervals is dead,
    and the survivor releases its leases instead of waiting for them to expire."""
    sink = Sink(script=_hang_first(2))
    await sink.start()
    try:
        master_key = await asyncio.to_thread(_prepare, pg_url, sink, 6)
        lease_s = 36  # heartbeats every 3 s: found dead within 9 s
        env = _env(pg_url, master_key, per_host_concurrency=2, lease_s=lease_s)
        doomed = await _start_worker(env)
        await _wait_hits(sink, 2)  # it holds both of the host's slots
        survivor = await _start_worker(env)
        try:
            started = await _started(survivor)
            assert len(sink.hits) == 2  # the survivor cannot take the host: its slots are held
            doomed.kill()
            await doomed.wait()
            killed = time.monotonic()
            third = await _wait_hits(sink, 3, timeout=2 * lease_s)
            await _wait_drained(pg_url)
        finally:
            err = await _stop(survivor)
        assert third - killed < lease_s / 2, f"the host waited {third - killed:.1f} s"
        assert b"released its 2 leases" in started + err, (started + err).decode()
        assert len(set(sink.objects())) == 6
        _same_id_per_object(sink)
        assert await asyncio.to_thread(_registered, pg_url) == 0  # the survivor left too
    finally:
        await sink.stop()


async def _started(process: asyncio.subprocess.Process) -> bytes:
    """What the worker logged until it said it started (it is registered then)."""
    assert process.stderr is not None
    seen = b""
    async with asyncio.timeout(30):
        while b" started" not in seen:
            line = await process.stderr.readline()
            assert line, seen.decode()
            seen += line
    return seen


def _registered(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        count = conn.scalar(sa.text("SELECT count(*) FROM delivery_worker"))
    engine.dispose()
    return int(count or 0)


async def test_no_delivery_arrives_twice_under_different_ids_across_kills_and_timeouts(
    tmp_path: Path,
) -> None:
    """Issue 19, item 8: 2 of 75 deliveries arrived twice after kills, one under a new
    activity id. A receiver that remembers ids (as Lemmy does) sees every repeat
    under the id it had, answers it as a duplicate, and that counts as delivered."""
    url = f"sqlite:///{tmp_path / 'mirror.db'}"

    def script(hit: object, n: int) -> Answer:
        # Every fifth request is read and then answered too late (a timeout:
        # it may have arrived); a few take a while, so kills cut some short.
        if n % 5 == 0:
            return Answer(delay_s=1.0)
        return Answer(delay_s=0.05)

    sink = Sink(script=script, lemmy_ids=True)
    await sink.start()
    try:
        master_key = await asyncio.to_thread(_prepare, url, sink, 75)
        env = _env(
            url,
            master_key,
            per_host_concurrency=4,
            concurrency=4,
            lease_s=6,
            total_timeout_s=0.5,
            backoff_base_s=0.2,
            backoff_max_s=1,
            breaker_failures=1000,
        )
        for kill_after in (15, 40):
            worker = await _start_worker(env)
            await _wait_hits(sink, kill_after)
            worker.kill()
            await worker.wait()
        last = await _start_worker(env)
        try:
            await _wait_drained(url)
        finally:
            await _stop(last)
        assert len(set(sink.objects())) == 75
        assert any(hit.duplicate for hit in sink.hits)  # repeats did arrive...
        _same_id_per_object(sink)  # ...each under the id it had
        engine = make_engine(url)
        with engine.connect() as conn:
            states = dict(
                conn.execute(sa.text("SELECT state, count(*) FROM delivery GROUP BY state")).all()
            )
        engine.dispose()
        assert states == {"delivered": 75}
    finally:
        await sink.stop()

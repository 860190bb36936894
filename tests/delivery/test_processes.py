"""Real worker processes: two on PostgreSQL deliver each activity once; SIGKILL loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
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
        env = _env(url, master_key, per_host_concurrency=8, concurrency=8, lease_s=2)
        worker = await _start_worker(env)
        while len(sink.hits) < 60:
            await asyncio.sleep(0.01)
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
        restarted = await _start_worker(env)  # leases expire after 2 s, then rows return
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

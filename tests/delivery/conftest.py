"""A bot, a delivery worker on a frozen clock, and a scripted sink server."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.clock import FrozenClock
from mirror.db import migrate
from mirror.db.session import make_engine, write_transaction
from mirror.delivery import enqueue, operate
from mirror.delivery.tables import DELIVERIES
from mirror.delivery.worker import Worker
from mirror.federation.actors import BOT, create_actor
from mirror.federation.service import Federation
from mirror.signatures import MasterKey
from mirror.vocab.activities import recipe
from mirror.vocab.context import PUBLIC
from tests.server.conftest import make_settings
from tests.sink import Sink

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DELIVERY = {
    "total_timeout_s": 0.5,
    "connect_timeout_s": 0.5,
    "backoff_base_s": 10.0,
    "backoff_max_s": 3600.0,
    "retry_horizon_s": 86400,
    "breaker_failures": 3,
    "breaker_cooloff_s": 60,
    "per_host_concurrency": 8,
    "unknown_error_retries": 3,
}


@dataclass
class Env:
    engine: Engine
    federation: Federation
    clock: FrozenClock
    worker: Worker
    sink: Sink

    def publish(
        self,
        object_id: str,
        *,
        depends_on: str | None = None,
        inboxes: list[str] | None = None,
        kind: str = "Create",
    ) -> str:
        urls = self.federation.urls
        note = {"id": urls.object(object_id), "type": "Note", "content": f"<p>{object_id}</p>"}
        if depends_on:
            note["inReplyTo"] = urls.object(depends_on)
        with write_transaction(self.engine) as conn:
            return enqueue.publish(
                conn,
                urls=urls,
                username="mirror",
                recipe=recipe(
                    "create", username="mirror", object=note, to=[PUBLIC], cc=[], kind=kind
                ),
                inboxes=inboxes or [self.sink.inbox],
                now=self.clock.now(),
                depends_on=urls.object(depends_on) if depends_on else None,
            )

    async def cycle(self, advance_s: float = 0) -> int:
        self.clock.advance(advance_s)
        return await self.worker.run_once()

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(sa.select(DELIVERIES).order_by(DELIVERIES.c.id)).mappings()
            ]

    def row(self) -> dict[str, Any]:
        (only,) = self.rows()
        return only

    def status(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return operate.status(conn, self.clock.now())


async def make_env(
    tmp_path: Path,
    database_url: str | None = None,
    network: dict[str, Any] | None = None,
    **delivery: Any,
) -> tuple[Env, Sink]:
    sections: dict[str, Any] = {"delivery": {**DELIVERY, **delivery}}
    if database_url:
        sections["database"] = {"url": database_url}
    if network is not None:
        sections["network"] = network
    settings = make_settings(tmp_path, 8000, **sections)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    master_key = MasterKey.generate()
    clock = FrozenClock(START)
    with write_transaction(engine) as conn:
        create_actor(conn, username="mirror", kind=BOT, master_key=master_key, now=START)
    federation = Federation(settings=settings, engine=engine, clock=clock, master_key=master_key)
    worker = federation.make_worker()
    worker._rng = random.Random(7)
    sink = Sink()
    await sink.start()
    return Env(engine, federation, clock, worker, sink), sink


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Every queue test runs on SQLite and on the real PostgreSQL."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    environment, sink = await make_env(tmp_path, url)
    yield environment
    await sink.stop()
    await environment.worker.sender.close()
    await environment.federation.close()
    environment.engine.dispose()

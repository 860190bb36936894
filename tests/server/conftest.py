"""A running service on 127.0.0.1 (real aiohttp server, real SQLite file) and a peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy.engine import Engine

from mirror.clock import SystemClock
from mirror.config import Settings
from mirror.db import migrate
from mirror.db.session import make_engine, write_transaction
from mirror.federation.actors import BOT, create_actor
from mirror.federation.service import Federation
from mirror.server.app import make_app
from mirror.signatures import MasterKey
from tests.peer import Peer, free_port


@dataclass
class Service:
    base: str
    settings: Settings
    engine: Engine
    federation: Federation
    master_key: MasterKey

    async def get(
        self,
        path: str,
        *,
        accept: str = "application/activity+json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                self.base + path, headers={"Accept": accept, **(headers or {})}
            ) as response,
        ):
            return response.status, dict(response.headers), await response.read()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.base + path, data=body, headers=headers) as response:
                return response.status, await response.text()


def make_settings(tmp_path: Path, port: int, **sections: Any) -> Settings:
    settings = Settings()
    settings = replace(
        settings,
        instance=replace(
            settings.instance, base_url=f"http://127.0.0.1:{port}", operator="the test operator"
        ),
        network=replace(settings.network, allow_private_networks=True),
        paths=replace(settings.paths, data_dir=str(tmp_path / "data")),
    )
    for name, values in sections.items():
        settings = replace(settings, **{name: replace(getattr(settings, name), **values)})
    return settings


@pytest.fixture
async def service_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[TestServer] = []
    services: list[Service] = []
    workers: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(*, worker: bool = True, clock: Any = None, **sections: Any) -> Service:
        port = free_port()
        sections.setdefault("delivery", {})
        sections["delivery"] = {
            "poll_interval_s": 0.05,
            "backoff_base_s": 0.2,
            **sections["delivery"],
        }
        # Lookups of a sandbox on loopback need no pacing.
        sections["confirm"] = {"rate": 100.0, **sections.get("confirm", {})}
        settings = make_settings(tmp_path / str(port), port, **sections)
        engine = make_engine(settings.database_url)
        migrate.upgrade(engine)
        master_key = MasterKey.generate()
        clock = clock or SystemClock()
        federation = Federation(
            settings=settings, engine=engine, clock=clock, master_key=master_key
        )
        with write_transaction(engine) as conn:
            create_actor(conn, username="mirror", kind=BOT, master_key=master_key, now=clock.now())
        server = TestServer(make_app(federation), host="127.0.0.1", port=port)
        await server.start_server()
        servers.append(server)
        if worker:
            stop = asyncio.Event()
            delivery_worker = federation.make_worker()
            workers.append((stop, asyncio.create_task(delivery_worker.run(stop, grace_s=5))))
            workers.append((stop, asyncio.create_task(federation.make_publication_job().run(stop))))
            # It takes its claimer lock and reads statistics in threads first;
            # a test starts once it runs (as /readyz would say), not before.
            async with asyncio.timeout(30):
                while not delivery_worker.running:
                    await asyncio.sleep(0.01)
        services.append(
            Service(f"http://127.0.0.1:{port}", settings, engine, federation, master_key)
        )
        return services[-1]

    yield start
    for stop, task in workers:
        stop.set()
        await task
    for server in servers:
        await server.close()  # runs the app's cleanup: background sends, HTTP client
    for svc in services:
        svc.engine.dispose()


@pytest.fixture
async def service(service_factory: Callable[..., Any]) -> Service:
    return await service_factory()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    await p.start()
    yield p
    await p.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate()`` holds (background sends take a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


@pytest.fixture
async def sandbox_factory() -> AsyncIterator[Callable[..., Any]]:
    """Sandbox instances (Lemmy-compatible receivers) on 127.0.0.1.

    `software` picks the profile (lemmy, piefed); every other keyword is an
    Instance field (version, clock, refusal_status, new_account_limit, ...).
    """
    from mirror.sandbox.serve import start_sandbox

    runners = []

    async def start(software: str = "lemmy", **fields: Any) -> Any:
        runner, instance = await start_sandbox(
            host="127.0.0.1", port=free_port(), community="sandbox", software=software, **fields
        )
        runners.append(runner)
        return instance

    yield start
    for runner in runners:
        await runner.cleanup()

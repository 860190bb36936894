"""The federation side of the service, shared by the HTTP routes and the CLI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy.engine import Engine

from mirror.clock import Clock
from mirror.config import Settings
from mirror.db.models import LocalActor
from mirror.delivery.worker import Worker
from mirror.federation.actors import BOT, KeyStore, Signers, get_actor
from mirror.federation.remote import RemoteActors
from mirror.net.allowance import allowance_for
from mirror.net.client import Signer, make_session
from mirror.observe.metrics import Metrics
from mirror.signatures import MasterKey
from mirror.vocab.ids import Urls
from mirror.vocab.parse import storable

if TYPE_CHECKING:
    from mirror.federation.communities import Hosted
    from mirror.publish.job import PublicationJob

log = logging.getLogger(__name__)


class Federation:
    """Settings, database, keys, the HTTP client and background sends, wired once."""

    def __init__(
        self, *, settings: Settings, engine: Engine, clock: Clock, master_key: MasterKey
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.urls = Urls.from_base_url(settings.instance.base_url)
        self.master_key = master_key
        self.keys = KeyStore(master_key, self.urls)
        self.metrics = Metrics(engine, clock.now)
        #: Set while a delivery worker runs in this process (for /readyz).
        self.worker: Worker | None = None
        self.publication_job: PublicationJob | None = None
        #: What the guard lets us reach that is not public.
        self.allowed = allowance_for(settings)
        self._session: aiohttp.ClientSession | None = None
        #: Nudges the delivery worker after something was queued (set by `serve`).
        self.wake: Callable[[], None] = lambda: None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.remote = RemoteActors(
            engine=engine,
            session=lambda: self.session,
            clock=clock,
            signer=self.bot_signer,
            allowed=self.allowed,
            max_bytes=settings.federation.fetch_max_bytes,
            max_age_s=settings.federation.actor_cache_s,
            metrics=self.metrics,
        )

    @property
    def bot_username(self) -> str:
        return self.settings.instance.username

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = make_session(
                allowed=self.allowed,
                timeout_s=self.settings.federation.fetch_timeout_s,
                base_url=self.urls.base,
            )
        return self._session

    async def local_actor(self, username: str) -> LocalActor | None:
        # A name from a URL path may be anything; one our column could not
        # hold (PostgreSQL refuses NUL, UTF-8 a lone surrogate) is no one's.
        if len(username) > 64 or not storable(username):
            return None
        return await asyncio.to_thread(self._local_actor, username)

    def _local_actor(self, username: str) -> LocalActor | None:
        with self.engine.connect() as conn:
            return get_actor(conn, username)

    async def hosted_community(self, name: str) -> Hosted | None:
        """A hosted community's row (retired ones too), or None."""
        from mirror.federation.communities import get_hosted

        if len(name) > 64 or not storable(name):
            return None

        def load() -> Hosted | None:
            with self.engine.connect() as conn:
                return get_hosted(conn, name)

        return await asyncio.to_thread(load)

    async def bot_signer(self) -> Signer | None:
        """Our fetches are signed by the bot (Lemmy 1.0 and some Mastodons require it)."""
        bot = await self.local_actor(self.bot_username)
        return self.keys.signer(bot) if bot is not None and bot.kind == BOT else None

    def make_worker(self) -> Worker:
        """A delivery worker sharing this service's HTTP client and keys."""
        worker = Worker(
            engine=self.engine,
            settings=self.settings,
            urls=self.urls,
            clock=self.clock,
            signer=Signers(self.engine, self.keys),
            metrics=self.metrics,
        )
        self.wake = worker.wake
        self.worker = worker
        return worker

    def make_publication_job(self) -> PublicationJob:
        """The job that confirms publications on their targets (one process at a time)."""
        from mirror.publish.job import PublicationJob  # publish builds on federation

        self.publication_job = PublicationJob(
            engine=self.engine,
            settings=self.settings,
            urls=self.urls,
            clock=self.clock,
            session=lambda: self.session,
            wake=lambda: self.wake(),
        )
        return self.publication_job

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run a send in the background; the inbox answers without waiting for it."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def close(self, timeout_s: float = 10.0) -> None:
        """Let background sends finish (bounded), then close the HTTP client."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
        await self.remote.close()  # key fetches still in flight
        if self._session is not None:
            await self._session.close()
            self._session = None

"""Remote actors and their keys: fetched with a signed GET, cached in the database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from urllib.parse import urldefrag

import aiohttp
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.clock import Clock
from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import RemoteActor
from mirror.db.session import write_transaction
from mirror.net.client import FetchError, Signer, fetch_json
from mirror.observe.metrics import Metrics
from mirror.vocab.parse import Malformed, RemoteActorDoc, parse_actor

log = logging.getLogger(__name__)
TABLE = table_of(RemoteActor)


class ActorUnavailable(Exception):
    """The actor (or key) could not be fetched or parsed; ``gone`` when it answered 404/410."""

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


class RemoteActors:
    """Looks actors up by id or key id: the database first, the network when stale."""

    def __init__(
        self,
        *,
        engine: Engine,
        session: Callable[[], aiohttp.ClientSession],
        clock: Clock,
        signer: Callable[[], Awaitable[Signer | None]],
        allow_private: bool,
        max_bytes: int,
        max_age_s: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._engine = engine
        self._session = session
        self._clock = clock
        self._signer = signer
        self._allow_private = allow_private
        self._max_bytes = max_bytes
        self._max_age = timedelta(seconds=max_age_s)

    async def by_key_id(self, key_id: str, *, refresh: bool = False) -> RemoteActorDoc:
        """The actor owning ``key_id`` (its document, with the key)."""
        if not refresh:
            cached = await asyncio.to_thread(self._cached, key_id=key_id)
            if cached is not None and self._fresh(cached[1]):
                return cached[0]
        url = urldefrag(key_id).url
        doc = await self._fetch(url)
        if doc.key_id != key_id and doc.key_owner and doc.key_owner != doc.id:
            # A separate key document: the owner's actor holds the inboxes.
            doc = await self._fetch(doc.key_owner)
        if doc.key_id != key_id or not doc.public_key_pem:
            raise ActorUnavailable(f"{doc.id} does not publish the key {key_id}")
        return doc

    async def by_id(self, actor_id: str, *, refresh: bool = False) -> RemoteActorDoc:
        if not refresh:
            cached = await asyncio.to_thread(self._cached, url=actor_id)
            if cached is not None and self._fresh(cached[1]):
                return cached[0]
        return await self._fetch(actor_id)

    async def cached_key(self, key_id: str) -> RemoteActorDoc | None:
        """The last known document for ``key_id``, however old (for Deletes of gone actors)."""
        cached = await asyncio.to_thread(self._cached, key_id=key_id, include_gone=True)
        return cached[0] if cached else None

    def _fresh(self, fetched_at: datetime) -> bool:
        return self._clock.now() - fetched_at < self._max_age

    async def _fetch(self, url: str) -> RemoteActorDoc:
        started = time.perf_counter()
        result = "error"
        try:
            doc = await self._fetch_untimed(url)
            result = "ok"
            return doc
        finally:
            if self._metrics is not None:
                self._metrics.key_fetch_seconds.labels(result).observe(
                    time.perf_counter() - started
                )

    async def _fetch_untimed(self, url: str) -> RemoteActorDoc:
        try:
            final_url, data = await fetch_json(
                self._session(),
                url,
                clock=self._clock,
                allow_private=self._allow_private,
                max_bytes=self._max_bytes,
                signer=await self._signer(),
            )
            doc = parse_actor(data, final_url)
        except FetchError as exc:
            if exc.reason == "gone":
                await asyncio.to_thread(self._mark_gone, url)
            raise ActorUnavailable(str(exc), gone=exc.reason == "gone") from None
        except Malformed as exc:
            raise ActorUnavailable(f"{url}: {exc}") from None
        await asyncio.to_thread(self._store, doc)
        return doc

    def _cached(
        self, *, url: str | None = None, key_id: str | None = None, include_gone: bool = False
    ) -> tuple[RemoteActorDoc, datetime] | None:
        condition = TABLE.c.url == url if url is not None else TABLE.c.key_id == key_id
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(TABLE).where(condition)).mappings().first()
        if row is None or (row["gone_at"] is not None and not include_gone):
            return None
        doc = RemoteActorDoc(
            id=row["url"],
            type=row["type"],
            preferred_username=row["preferred_username"],
            inbox=row["inbox"],
            shared_inbox=row["shared_inbox"],
            key_id=row["key_id"],
            key_owner=row["url"],
            public_key_pem=row["public_key_pem"],
        )
        return doc, row["fetched_at"]

    def _store(self, doc: RemoteActorDoc) -> None:
        row = {
            "url": doc.id,
            "type": doc.type,
            "preferred_username": doc.preferred_username,
            "key_id": doc.key_id,
            "public_key_pem": doc.public_key_pem,
            "inbox": doc.inbox,
            "shared_inbox": doc.shared_inbox,
            "fetched_at": self._clock.now(),
            "gone_at": None,
        }
        with write_transaction(self._engine) as conn:
            bulk_insert(
                conn,
                TABLE,
                [row],
                update_on="url",
                update=[k for k in row if k != "url"],
            )

    def _mark_gone(self, url: str) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.update(TABLE).where(TABLE.c.url == url).values(gone_at=self._clock.now())
            )
        log.info("remote actor %s is gone", url)

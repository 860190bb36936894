"""Remote actors and their keys: fetched with a signed GET, cached in the database.

Fetching a key is the one thing an unauthenticated request makes us do, so
fetches are bounded (the Decisions of issue 19): at most PER_HOST at once
per remote host and TOTAL in all; concurrent lookups of one URL share one
fetch; a request that would need one more gets KeyFetchBusy (503 with
Retry-After) at once, not a place in a queue behind a host's stalls. A
request waits for a fetch at most STALL_S; the fetch itself goes on to its
own timeout and caches what it gets, so the sender's retry finds the key.
Other hosts keep their places: only 16 hosts stalling at once could take
all 64.
A 4xx would lose the activity: Lemmy's sender drops an activity a receiver
answers with a client error and retries only other failures
(activitypub-federation-rust src/activity_sending.rs, "was rejected,
aborting").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urldefrag, urlsplit

import aiohttp
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.clock import Clock
from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import RemoteActor
from mirror.db.session import write_transaction
from mirror.net.client import FetchError, Signer, fetch_json
from mirror.net.guard import Allowance
from mirror.observe.metrics import Metrics
from mirror.vocab.parse import Malformed, RemoteActorDoc, parse_actor

log = logging.getLogger(__name__)
TABLE = table_of(RemoteActor)

#: Key fetches in flight at once, per remote host and in all.
PER_HOST = 4
TOTAL = 64
#: A fetch in flight for longer than this stalls: no request waits longer
#: for it (it goes on, in the background, to the fetch timeout).
STALL_S = 3.0
#: What a 503 tells the sender to wait before it retries.
RETRY_AFTER_S = 30
#: After a signature fails with a cached key, the key is fetched again (it
#: may have been rotated) at most once per actor in this interval. Mastodon
#: refetches on a failed signature only for an account it has not refreshed
#: for a day (app/models/account.rb possibly_stale?); a rotation here is
#: picked up at the first failure, and 200 bad signatures cost one fetch.
REFETCH_INTERVAL_S = 300.0
#: Actors whose refetch time is remembered (the oldest are forgotten first).
REFETCH_MEMORY = 10000


class ActorUnavailable(Exception):
    """The actor (or key) could not be fetched or parsed.

    ``gone`` when it answered 404/410; ``transient`` when the failure may
    pass (a timeout, a network error, a 5xx or 429): the sender should retry.
    """

    def __init__(self, message: str, *, gone: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.gone = gone
        self.transient = transient


class KeyFetchBusy(ActorUnavailable):
    """The host (or all hosts) has as many fetches in flight as allowed, or they stall."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)
        self.retry_after_s = RETRY_AFTER_S


def _transient(exc: FetchError) -> bool:
    if exc.reason in ("timeout", "network"):
        return True
    return (
        exc.reason == "status"
        and exc.status is not None
        and (exc.status >= 500 or exc.status == 429)
    )


@dataclass(eq=False)
class _Flight:
    host: str
    started: float
    task: asyncio.Task[RemoteActorDoc] | None = None


@dataclass
class FetchLimits:
    """Fetches in flight, per host; see the module's docstring for the rules."""

    per_host: int = PER_HOST
    total: int = TOTAL
    stall_s: float = STALL_S
    _flights: dict[tuple[str, int], _Flight] = field(default_factory=dict)
    _by_host: dict[str, list[_Flight]] = field(default_factory=dict)
    _count: int = 0

    def in_flight(self, host: str | None = None) -> int:
        return self._count if host is None else len(self._by_host.get(host, ()))

    async def run(
        self, url: str, redirects: int, fetch: Callable[[], Awaitable[RemoteActorDoc]]
    ) -> RemoteActorDoc:
        """The result of ``fetch()`` for ``url``, shared with concurrent callers, bounded."""
        key = (url, redirects)
        flight = self._flights.get(key)
        if flight is None:
            flight = self._take((urlsplit(url).hostname or "").lower())
            flight.task = asyncio.get_running_loop().create_task(fetch())
            self._flights[key] = flight
            flight.task.add_done_callback(lambda task: self._landed(key, flight, task))
        task = flight.task
        assert task is not None
        remaining = flight.started + self.stall_s - time.monotonic()
        if not task.done():
            if remaining <= 0:
                raise KeyFetchBusy(f"fetching {url} has taken over {self.stall_s:g} s")
            # wait() neither cancels the fetch nor mistakes its errors for our timeout.
            await asyncio.wait({task}, timeout=remaining)
            if not task.done():
                raise KeyFetchBusy(f"fetching {url} has taken over {self.stall_s:g} s")
        return task.result()

    def _take(self, host: str) -> _Flight:
        """A place for a new fetch from ``host``, or KeyFetchBusy at once.

        There is no queue: a request waiting behind a host's stalled fetches
        is what made a valid request fail after 10.8 s (issue 19, item 3).
        """
        mine = self._by_host.get(host, [])
        if len(mine) >= self.per_host:
            raise KeyFetchBusy(f"{host} has {len(mine)} key fetches in flight")
        if self._count >= self.total:
            raise KeyFetchBusy(f"{self._count} key fetches are in flight")
        flight = _Flight(host, time.monotonic())
        self._by_host.setdefault(host, []).append(flight)
        self._count += 1
        return flight

    def _give_back(self, flight: _Flight) -> None:
        flights = self._by_host.get(flight.host, [])
        if flight in flights:
            flights.remove(flight)
            self._count -= 1
        if not flights:
            self._by_host.pop(flight.host, None)

    def _landed(self, key: tuple[str, int], flight: _Flight, task: asyncio.Task[object]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        self._give_back(flight)
        if not task.cancelled():
            task.exception()  # retrieved: a fetch whose callers gave up is not an error

    async def close(self) -> None:
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class KeyLookup:
    doc: RemoteActorDoc
    #: True when it came from our cache (it may be older than a rotation).
    cached: bool


class RemoteActors:
    """Looks actors up by id or key id: the database first, the network when stale."""

    def __init__(
        self,
        *,
        engine: Engine,
        session: Callable[[], aiohttp.ClientSession],
        clock: Clock,
        signer: Callable[[], Awaitable[Signer | None]],
        allowed: Allowance,
        max_bytes: int,
        max_age_s: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._engine = engine
        self._session = session
        self._clock = clock
        self._signer = signer
        self._allowed = allowed
        self._max_bytes = max_bytes
        self._max_age = timedelta(seconds=max_age_s)
        self.limits = FetchLimits()
        #: Actor id -> when its key was last refetched after a failed check (monotonic).
        self._refetched: OrderedDict[str, float] = OrderedDict()

    async def lookup_key(self, key_id: str, *, refresh: bool = False) -> KeyLookup:
        """The actor owning ``key_id`` (its document, with the key), and whether it was cached."""
        if not refresh:
            cached = await asyncio.to_thread(self._cached, key_id=key_id)
            if cached is not None and self._fresh(cached[1]):
                return KeyLookup(cached[0], cached=True)
        url = urldefrag(key_id).url
        doc = await self._fetch(url)
        if doc.key_id != key_id and doc.key_owner and doc.key_owner != doc.id:
            # A separate key document: the owner's actor holds the inboxes.
            doc = await self._fetch(doc.key_owner)
        if doc.key_id != key_id or not doc.public_key_pem:
            raise ActorUnavailable(f"{doc.id} does not publish the key {key_id}")
        return KeyLookup(doc, cached=False)

    async def by_key_id(self, key_id: str, *, refresh: bool = False) -> RemoteActorDoc:
        """The actor owning ``key_id`` (its document, with the key)."""
        return (await self.lookup_key(key_id, refresh=refresh)).doc

    def may_refetch(self, actor_id: str) -> bool:
        """Whether a failed check may refetch this actor's key now (and note that it does)."""
        now = time.monotonic()
        last = self._refetched.get(actor_id)
        if last is not None and now - last < REFETCH_INTERVAL_S:
            return False
        self._refetched[actor_id] = now
        self._refetched.move_to_end(actor_id)
        while len(self._refetched) > REFETCH_MEMORY:
            self._refetched.popitem(last=False)
        return True

    async def by_id(self, actor_id: str, *, refresh: bool = False) -> RemoteActorDoc:
        if not refresh:
            cached = await asyncio.to_thread(self._cached, url=actor_id)
            if cached is not None and self._fresh(cached[1]):
                return cached[0]
        return await self._fetch(actor_id)

    async def cached_actor(self, actor_id: str) -> RemoteActorDoc | None:
        """The last document we fetched for ``actor_id``, however old, gone or not."""
        cached = await asyncio.to_thread(self._cached, url=actor_id, include_gone=True)
        return cached[0] if cached else None

    async def answers_gone(self, actor_id: str) -> bool:
        """Whether a fresh fetch of ``actor_id`` itself answers 404 or 410.

        No redirect is followed: the answer must come from the actor's own
        URL, on its own host. Any other outcome (a document, an error) is False.
        """
        try:
            await self._fetch(actor_id, max_redirects=0)
        except KeyFetchBusy:
            raise
        except ActorUnavailable as exc:
            return exc.gone
        return False

    async def close(self) -> None:
        await self.limits.close()

    def _fresh(self, fetched_at: datetime) -> bool:
        return self._clock.now() - fetched_at < self._max_age

    async def _fetch(self, url: str, *, max_redirects: int | None = None) -> RemoteActorDoc:
        redirects = 3 if max_redirects is None else max_redirects
        return await self.limits.run(url, redirects, lambda: self._fetch_timed(url, redirects))

    async def _fetch_timed(self, url: str, max_redirects: int) -> RemoteActorDoc:
        started = time.perf_counter()
        result = "error"
        try:
            doc = await self._fetch_untimed(url, max_redirects)
            result = "ok"
            return doc
        finally:
            if self._metrics is not None:
                self._metrics.key_fetch_seconds.labels(result).observe(
                    time.perf_counter() - started
                )

    async def _fetch_untimed(self, url: str, max_redirects: int) -> RemoteActorDoc:
        try:
            final_url, data = await fetch_json(
                self._session(),
                url,
                clock=self._clock,
                allowed=self._allowed,
                max_bytes=self._max_bytes,
                signer=await self._signer(),
                max_redirects=max_redirects,
            )
            doc = parse_actor(data, final_url)
        except FetchError as exc:
            if exc.reason == "gone":
                await asyncio.to_thread(self._mark_gone, url)
            raise ActorUnavailable(
                str(exc), gone=exc.reason == "gone", transient=_transient(exc)
            ) from None
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

"""The worker loop: claim due deliveries, send them concurrently, record outcomes.

Outcomes are committed before the next claim, so after a crash at most the
requests that were in flight are repeated (with the same activity id). On
SIGTERM/SIGINT the worker stops claiming, lets in-flight requests finish
for a bounded time, records what finished and gives back the other leases.
While it runs it beats (mirror.delivery.workers), and releases the leases
of workers that stopped beating.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mirror.clock import Clock
from mirror.config import Settings
from mirror.db.session import is_sqlite, write_transaction
from mirror.delivery import enqueue, record, workers
from mirror.delivery.attempts_log import log_attempts
from mirror.delivery.backoff import Policy
from mirror.delivery.claim import Claimed, Limits, claim
from mirror.delivery.hosts import BreakerPolicy
from mirror.delivery.outcome import Delivered, Failed
from mirror.delivery.sender import Sender
from mirror.errors import MirrorError
from mirror.net.allowance import allowance_for
from mirror.net.client import Signer, user_agent
from mirror.net.http1 import Http1Client
from mirror.observe.metrics import Metrics
from mirror.vocab.ids import Urls

log = logging.getLogger(__name__)
#: Serialised activity bodies kept per worker (fan-out sends one body many times).
BODY_CACHE = 4096
#: The most deliveries claimed at once by a running worker.
REFILL_MAX = 64


class ClaimerLock:
    """On SQLite one process claims deliveries: a lock file next to the database says which."""

    def __init__(self, database: str) -> None:
        self.path = Path(f"{database}.claimer")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = open(self.path, "a+")  # noqa: SIM115 (held for the worker's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise MirrorError(
                f"{holder} is already delivering from this SQLite database; one process "
                "claims on SQLite (use PostgreSQL to run several workers)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class Worker:
    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        urls: Urls,
        clock: Clock,
        signer: Callable[[str], Signer],
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        d = settings.delivery
        self.engine = engine
        self.settings = settings
        self.urls = urls
        self.clock = clock
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.limits = Limits(
            per_host=d.per_host_concurrency, interval_ms=d.per_host_interval_ms, lease_s=d.lease_s
        )
        #: Seconds between heartbeats; missing three of them makes it dead to others.
        self.heartbeat_s = workers.heartbeat_interval(d.lease_s)
        self.rules = record.Rules(
            policy=Policy.of(d),
            breaker=BreakerPolicy(
                failures=d.breaker_failures,
                cooloff_s=d.breaker_cooloff_s,
                dead_after_s=d.dead_after_s,
            ),
            max_generic_errors=d.unknown_error_retries,
        )
        self.sender = Sender(
            client=Http1Client(
                allowed=allowance_for(settings),
                user_agent=user_agent(urls.base),
                connect_timeout_s=d.connect_timeout_s,
                total_timeout_s=d.total_timeout_s,
            ),
            signer=signer,
            clock=clock,
            sign_processes=d.sign_processes,
        )
        self._rng = rng
        self.metrics = metrics
        self._bodies: dict[str, bytes] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._finished: list[record.Attempt] = []
        self._wake = asyncio.Event()
        #: Finished requests (or free slots) worth a trip round the loop.
        self._refill = 1
        self.delivered = 0
        self.failed = 0
        #: True while the loop runs (for /readyz).
        self.running = False
        #: Set once it claims: on SQLite, once it holds the claimer lock.
        self.started = asyncio.Event()

    def wake(self) -> None:
        """Something was enqueued: look for work now instead of at the next poll."""
        self._wake.set()

    # -- one cycle, for tests and tools --------------------------------------

    async def run_once(self) -> int:
        """Claim what is due, send it all, record the outcomes; returns how many were sent."""
        claimed = await self._claim(self.settings.delivery.concurrency)
        attempts = await asyncio.gather(*self.sender.sends(claimed))
        self._finished.extend(attempts)
        await self._commit()
        return len(claimed)

    # -- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, grace_s: float | None = None) -> None:
        lock = ClaimerLock(self.engine.url.database or "") if is_sqlite(self.engine) else None
        if lock is not None:
            await asyncio.to_thread(lock.acquire)
        await asyncio.to_thread(self._refresh_statistics)
        # Holding SQLite's claimer lock proves every other claimer dead.
        await asyncio.to_thread(self._register, lock is not None)
        log.info("worker %s started", self.id)
        self.started.set()
        heartbeat = asyncio.create_task(self._heartbeat())
        self.running = True
        try:
            await self._loop(stop)
        finally:
            self.running = False
            try:
                # Beating on while requests in flight finish: a long grace
                # must not make this worker look dead to the others.
                await self._shutdown(
                    grace_s if grace_s is not None else self.settings.delivery.total_timeout_s
                )
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
                await asyncio.to_thread(self._leave)
            if lock is not None:
                lock.release()
            log.info(
                "worker %s stopped: %d delivered, %d failed", self.id, self.delivered, self.failed
            )

    async def _loop(self, stop: asyncio.Event) -> None:
        concurrency = self.settings.delivery.concurrency
        poll = self.settings.delivery.poll_interval_s
        # Refill in batches: one claim per finished request costs more in
        # transactions than the requests themselves. Batches stay at most
        # REFILL_MAX so that with a high concurrency the rows still in
        # flight (being signed) outlast a claim instead of waiting for it.
        refill = self._refill = max(1, min(concurrency // 2, REFILL_MAX))
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop.wait())
        looked = float("-inf")
        try:
            while not stop.is_set():
                free = concurrency - len(self._in_flight)
                if free > 0 and (
                    free >= refill or not self._in_flight or loop.time() - looked >= poll
                ):
                    claimed = await self._commit_and_claim(free)
                    looked = loop.time()
                    self._start(claimed)
                    if len(claimed) == free:
                        continue  # there may be more due right away
                elif len(self._finished) >= refill:
                    await self._commit()
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {waiter, stopping},
                    timeout=max(0.0, poll - (loop.time() - looked)),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
        finally:
            stopping.cancel()

    def _start(self, batch: list[Claimed]) -> None:
        loop = asyncio.get_running_loop()
        for send in self.sender.sends(batch):
            task = loop.create_task(send)
            self._in_flight.add(task)
            task.add_done_callback(self._finish)

    def _finish(self, task: asyncio.Task[record.Attempt]) -> None:
        self._in_flight.discard(task)
        if task.cancelled():
            return  # a shutdown past its grace: the lease is given back
        if task.exception() is not None:
            # A bug, not an answer: the lease runs out and the row is tried again.
            log.error("a send failed unexpectedly", exc_info=task.exception())
            return
        # `self._finished` is swapped for a new list by each commit.
        self._finished.append(task.result())
        # Wake the loop only when it has something to do (a refill or a
        # commit): waking it for every answer cost a task and a wait each.
        free = self.settings.delivery.concurrency - len(self._in_flight)
        if free >= self._refill or len(self._finished) >= self._refill:
            self._wake.set()

    async def _shutdown(self, grace_s: float) -> None:
        if self._in_flight:
            log.info(
                "waiting up to %.0f s for %d requests in flight", grace_s, len(self._in_flight)
            )
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._commit()
        released = await asyncio.to_thread(self._release)
        if released:
            log.info("released %d leases", released)
        await self.sender.close()

    # -- database ---------------------------------------------------------------

    async def _claim(self, limit: int) -> list[Claimed]:
        return await asyncio.to_thread(self._claim_sync, limit)

    async def _commit_and_claim(self, limit: int) -> list[Claimed]:
        """Record what finished, then claim: outcomes are committed before the next claim."""
        finished, self._finished = self._finished, []
        results, claimed = await asyncio.to_thread(self._commit_and_claim_sync, finished, limit)
        self._count(results)
        return claimed

    def _commit_and_claim_sync(
        self, finished: list[record.Attempt], limit: int
    ) -> tuple[list[record.Recorded], list[Claimed]]:
        if not finished:
            return [], self._claim_sync(limit)
        try:
            # One transaction (one commit, one WAL flush on PostgreSQL) records
            # and claims: the outcomes are still committed before any claimed
            # request goes out.
            with write_transaction(self.engine) as conn:
                return self._record(conn, finished), self._claim_in(conn, limit)
        except SQLAlchemyError:
            # Claiming failed (a deadlock victim, say): outcomes must not wait for it.
            log.warning("record-and-claim failed; recording alone", exc_info=True)
            return self._complete_sync(finished), []

    def _claim_sync(self, limit: int) -> list[Claimed]:
        with write_transaction(self.engine) as conn:
            return self._claim_in(conn, limit)

    def _claim_in(self, conn: Connection, limit: int) -> list[Claimed]:
        if len(self._bodies) > BODY_CACHE:
            self._bodies.clear()
        return claim(
            conn,
            worker=self.id,
            now=self.clock.now(),
            limit=limit,
            limits=self.limits,
            urls=self.urls,
            bodies=self._bodies,
        )

    async def _commit(self) -> None:
        if not self._finished:
            return
        finished, self._finished = self._finished, []
        self._count(await asyncio.to_thread(self._complete_sync, finished))

    def _count(self, results: list[record.Recorded]) -> None:
        log_attempts(results, self.clock.now())
        counts: dict[tuple[str, str], int] = {}
        for attempt, outcome, _ in results:
            if isinstance(outcome, Delivered):
                self.delivered += 1
                name = "delivered"
            elif isinstance(outcome, Failed):
                self.failed += 1
                name = "failed"
            else:
                name = "retry"
            key = (name, attempt.claimed.host)
            counts[key] = counts.get(key, 0) + 1
            if self.metrics is not None:
                self.metrics.delivery_seconds.labels(name).observe(attempt.duration_s)
        if self.metrics is not None:
            # A batch's counts at once: a label lookup per request cost more.
            for (name, host), count in counts.items():
                self.metrics.deliveries.labels(name, host).inc(count)

    def _complete_sync(self, finished: list[record.Attempt]) -> list[record.Recorded]:
        with write_transaction(self.engine) as conn:
            return self._record(conn, finished)

    def _record(self, conn: Connection, finished: list[record.Attempt]) -> list[record.Recorded]:
        return list(
            record.complete(
                conn,
                finished,
                worker=self.id,
                now=self.clock.now(),
                rules=self.rules,
                rng=self._rng,
            )
        )

    # -- heartbeat --------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await asyncio.to_thread(self._beat)
            except SQLAlchemyError:
                # The next beat tries again; three missed ones make us look dead.
                log.warning("worker %s: a heartbeat failed", self.id, exc_info=True)

    def _register(self, all_others: bool) -> None:
        with write_transaction(self.engine) as conn:
            now = self.clock.now()
            workers.register(conn, self.id, now=now, interval_s=self.heartbeat_s)
            released = workers.release_dead(conn, me=self.id, now=now, all_others=all_others)
        self._released(released)

    def _beat(self) -> None:
        with write_transaction(self.engine) as conn:
            now = self.clock.now()
            if not workers.beat(conn, self.id, now=now, interval_s=self.heartbeat_s):
                log.warning(
                    "worker %s had been taken for dead (no heartbeat for %d intervals): "
                    "its leases were released and their rows are repeated",
                    self.id,
                    workers.MISSED_BEATS,
                )
            released = workers.release_dead(conn, me=self.id, now=now)
        self._released(released)

    def _released(self, released: list[workers.Released]) -> None:
        for dead in released:
            log.warning(
                "worker %s is dead (last heartbeat %s): released its %d leases",
                dead.worker,
                dead.last_beat.isoformat(),
                dead.leases,
            )
        if any(dead.leases for dead in released):
            self._wake.set()  # their rows are due again: claim now, not at the next poll

    def _leave(self) -> None:
        with write_transaction(self.engine) as conn:
            workers.leave(conn, self.id)

    def _refresh_statistics(self) -> None:
        # A worker often starts right after a large enqueue (a backfill).
        with write_transaction(self.engine) as conn:
            enqueue.refresh_statistics(conn)

    def _release(self) -> int:
        with write_transaction(self.engine) as conn:
            return record.release(conn, self.id)

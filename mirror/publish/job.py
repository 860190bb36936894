"""The publication job: moves publications from their deliveries, asks targets, releases.

It runs in `mirror serve` and `mirror worker`; one process at a time does
the work (a lease row, mirror.db.lease), however many run. Each cycle:
publications whose delivery finished become sent (or refused, failed...);
sent ones due for a lookup are asked about, at most `[confirm].rate` per
second per target server; waiting ones whose time or parent came are
queued, and the delivery worker is woken. The copies of what hosted
Groups announced to their followers' servers go the same way
(mirror.publish.follower_copies, follower_checks), their lookups sharing
each server's pace with the publications'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.engine import Engine

from mirror.clock import Clock
from mirror.config import Settings
from mirror.db import lease
from mirror.db.session import write_transaction
from mirror.delivery.backoff import Policy
from mirror.net.allowance import allowance_for
from mirror.publish import (
    confirm,
    follower_checks,
    follower_copies,
    from_deliveries,
    lookup,
    release,
)
from mirror.publish.servers import server_for
from mirror.publish.states import State
from mirror.vocab.ids import Urls

log = logging.getLogger(__name__)
#: A lookup due: of a publication in a remote community, or of a follower copy.
Check = confirm.Check | follower_checks.FollowerCheck
NAME = "publications"
#: How long a lease lasts without renewal (a dead holder's job moves on after it).
LEASE_S = 30.0
#: Time between cycles, in seconds.
TICK_S = 0.5
#: How long a server that said we ask too fast gets no lookups, in seconds.
PAUSE_S = 60.0


@dataclass
class _Bucket:
    """Lookups a host may still get now: `rate` per second, at most one second's worth."""

    rate: float
    tokens: float = 1.0
    last: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    def pause(self, seconds: float) -> None:
        """No lookups for ``seconds`` (the server said we ask too fast)."""
        self.tokens = min(self.tokens, 0.0) - seconds * self.rate

    def take(self, now: float) -> bool:
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class PublicationJob:
    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        urls: Urls,
        clock: Clock,
        session: Callable[[], aiohttp.ClientSession],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.urls = urls
        self.clock = clock
        self.session = session
        self.wake = wake
        self.allowed = allowance_for(settings)
        self.rate = settings.confirm.rate
        d = settings.delivery
        self.rules = confirm.Rules(
            window=confirm.Window(settings.confirm.window_s),
            policy=Policy.of(d),
        )
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._buckets: dict[str, _Bucket] = {}
        self.running = False

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop``; a cycle that fails is logged and the next one tries again."""
        self.running = True
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except Exception:
                    log.exception("publication job: a cycle failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=TICK_S)
        finally:
            self.running = False
            await asyncio.to_thread(self._give_up)

    async def run_once(self) -> bool:
        """One cycle; False when another process holds the job."""
        if not await asyncio.to_thread(self._hold):
            return False
        released = await asyncio.to_thread(self._advance)
        if released:
            self.wake()
        checks = await asyncio.to_thread(self._due)
        if checks:
            answers = await asyncio.gather(*(self._ask(check) for check in checks))
            answered = list(zip(checks, answers, strict=True))
            if await asyncio.to_thread(self._record, answered):
                # Replies released by their parent's confirmation go at once.
                self.wake()
        return True

    # -- steps ---------------------------------------------------------------------

    def _hold(self) -> bool:
        now = self.clock.now()
        with self.engine.connect() as conn:
            if lease.fresh(conn, NAME, self.id, now=now, seconds=LEASE_S):
                return True
        with write_transaction(self.engine) as conn:
            return lease.hold(conn, NAME, self.id, now=now, seconds=LEASE_S)

    def _give_up(self) -> None:
        with write_transaction(self.engine) as conn:
            lease.give_up(conn, NAME, self.id)

    def _advance(self) -> int:
        """Deliveries into states, then releases; returns how many were queued.

        Looked for first without the write lock (on SQLite a write
        transaction takes it at BEGIN, in the delivery worker's way): an idle
        service writes nothing.
        """
        now = self.clock.now()
        with self.engine.connect() as conn:
            if not any(
                conn.execute(query.limit(1), {"now": now}).first() is not None
                for query in (
                    from_deliveries.CHANGED_COMMUNITY,
                    from_deliveries.FINISHED_FOLLOWERS,
                    release.ORPHANED,
                    release.UNBLOCKED,
                    release.RELEASABLE,
                    follower_copies.CHANGED,
                    follower_checks.ORPHANED,
                    follower_checks.RELEASABLE,
                )
            ):
                return 0
        with write_transaction(self.engine) as conn:
            now = self.clock.now()
            from_deliveries.advance_from_deliveries(conn, now=now, window=self.rules.window)
            follower_copies.advance_from_deliveries(conn, now=now, window=self.rules.window)
            queued = release.release(conn, now=now, urls=self.urls)
            return queued + follower_checks.release(conn, now=now, urls=self.urls)

    def _due(self) -> list[Check]:
        with self.engine.connect() as conn:
            now = self.clock.now()
            due: list[Check] = [*confirm.due_checks(conn, now=now)]
            due.extend(follower_checks.due_checks(conn, now=now))
            return due

    async def _ask(self, check: Check) -> lookup.Answer | None:
        """The lookup's answer, or None when the host's pace leaves it for a later cycle."""
        # One pace per server, whether it is asked about a publication or a follower copy.
        host = check.host.lower()
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = _Bucket(self.rate)
        if not bucket.take(asyncio.get_running_loop().time()):
            return None
        if isinstance(check, follower_checks.FollowerCheck):
            where, object_id = check.inbox, check.object_id
        else:
            where, object_id = check.target, check.id
        answer = await lookup.ask(
            self.session(),
            server_for(check.software),
            where,
            self.urls.object(object_id),
            allowed=self.allowed,
        )
        if isinstance(answer, lookup.Later) and answer.too_fast:
            log.warning("%s says we look up too fast: pausing its lookups", check.host)
            bucket.pause(PAUSE_S)
        return answer

    def _record(self, answered: list[tuple[Check, lookup.Answer | None]]) -> int:
        """Record the answers and release what they let go; returns how many were queued."""
        with write_transaction(self.engine) as conn:
            now = self.clock.now()
            for check, answer in answered:
                if answer is None:
                    continue
                if isinstance(check, follower_checks.FollowerCheck):
                    state = follower_checks.record_check(
                        conn, check, answer, now=now, rules=self.rules
                    )
                    if state not in (State.SENT, State.CONFIRMED):
                        log.info(
                            "%s's announce of %s to %s: %s",
                            check.community,
                            check.object_id,
                            check.host,
                            state.value,
                        )
                    continue
                state = confirm.record_check(conn, check, answer, now=now, rules=self.rules)
                if state not in (State.SENT, State.CONFIRMED):
                    log.info("publication %s: %s", check.id, state.value)
            queued = release.release(conn, now=now, urls=self.urls)
            return queued + follower_checks.release(conn, now=now, urls=self.urls)

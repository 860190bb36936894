"""One delivery POST: signed by a signing process, sent, timed.

Requests go through :class:`mirror.net.http1.Http1Client`, the lean client
made for this path (why: its docstring).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from mirror.clock import Clock
from mirror.delivery.claim import Claimed
from mirror.delivery.outcome import REFUSED, UNSIGNED
from mirror.delivery.record import Attempt
from mirror.net.client import ERROR_EXCERPT, FetchError, Signer
from mirror.net.http1 import Http1Client
from mirror.signatures.processes import Key, Post, SigningError, SigningPool
from mirror.vocab.context import ACTIVITY_JSON

#: Reasons a request was never sent, for good.
NOT_SENT = frozenset({"bad_url", "blocked"})


class Sender:
    def __init__(
        self,
        *,
        client: Http1Client,
        signer: Callable[[str], Signer],
        clock: Clock,
        sign_processes: int,
    ) -> None:
        self._client = client
        self._signer = signer
        self._signers: dict[str, Signer] = {}
        self._clock = clock
        self._signing = SigningPool(sign_processes)

    def sends(self, batch: Sequence[Claimed]) -> list[Coroutine[Any, Any, Attempt]]:
        """One send per claimed delivery, the batch signed in one job per signing process.

        One job per request cost a hand-off and a loop wake-up each, more
        than the signature itself; each request awaits its chunk. Smaller
        jobs (8 or 16 signatures) let requests go out sooner but measured
        slower at the benchmark's concurrency (more wake-ups of the loop);
        the worker keeps batches at most REFILL_MAX so that a job is never long.
        """
        if not batch:
            return []
        size = -(-len(batch) // min(self._signing.processes, len(batch)))
        signed = [
            asyncio.ensure_future(self._sign_chunk(batch[i : i + size]))
            for i in range(0, len(batch), size)
        ]
        return [self._send(claimed, signed[n // size], n % size) for n, claimed in enumerate(batch)]

    async def _sign_chunk(self, chunk: Sequence[Claimed]) -> list[dict[str, str]]:
        keys: list[Key] = []
        index: dict[str, int] = {}
        posts: list[Post] = []
        for claimed in chunk:
            if claimed.actor not in index:
                try:
                    signer = await self._signer_of(claimed.actor)
                except Exception as exc:
                    # A key that cannot be read (another master key, say):
                    # every delivery of this chunk is an attempt that failed.
                    raise SigningError(f"no key for {claimed.actor}: {exc}") from exc
                index[claimed.actor] = len(keys)
                keys.append((signer.key_id, signer.pem))
            posts.append((index[claimed.actor], claimed.inbox, claimed.body))
        # One Date for a chunk signed within milliseconds.
        return await self._signing.sign_posts(
            keys, posts, now=self._clock.now(), content_type=ACTIVITY_JSON
        )

    async def _signer_of(self, actor: str) -> Signer:
        signer = self._signers.get(actor)
        if signer is None:
            # A first lookup reads the database: not on the event loop.
            signer = self._signers[actor] = await asyncio.to_thread(self._signer, actor)
        return signer

    async def _send(
        self, claimed: Claimed, signed: asyncio.Future[list[dict[str, str]]], index: int
    ) -> Attempt:
        """POST one claimed delivery; ``signed[index]`` holds its headers."""
        started = time.perf_counter()
        status: int | None = None
        headers: Mapping[str, str] = {}
        excerpt = ""
        error: str | None = None
        unsent: str | None = None
        try:
            response = await self._client.post(claimed.inbox, claimed.body, (await signed)[index])
            status, headers = response.status, response.headers
            excerpt = response.body[:ERROR_EXCERPT].decode("utf-8", "replace")
        except FetchError as exc:
            error, unsent = str(exc), REFUSED if exc.reason in NOT_SENT else None
        except SigningError as exc:
            # Recorded like any failed attempt (retried with backoff until the
            # horizon), so a key that cannot sign does not loop on its lease.
            error, unsent = f"not signed: {exc}", UNSIGNED
        duration = time.perf_counter() - started
        return Attempt(
            claimed, status, headers, excerpt, error=error, duration_s=duration, unsent=unsent
        )

    async def close(self) -> None:
        self._client.close()
        await self._signing.close()

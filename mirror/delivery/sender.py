"""One delivery POST: signed on a thread (cryptography releases the GIL), sent, timed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from mirror.clock import Clock
from mirror.delivery.queue import Attempt, Claimed
from mirror.net.client import ERROR_EXCERPT, FetchError, Signer, check_url, failure
from mirror.signatures import sign_request
from mirror.vocab.context import ACTIVITY_JSON

log = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        *,
        session: Callable[[], aiohttp.ClientSession],
        signer: Callable[[str], Signer],
        clock: Clock,
        allow_private: bool,
        sign_threads: int,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self._session = session
        self._signer = signer
        self._clock = clock
        self._allow_private = allow_private
        self._pool = ThreadPoolExecutor(max_workers=max(1, sign_threads), thread_name_prefix="sign")
        self._timeout = timeout

    async def send(self, claimed: Claimed) -> Attempt:
        started = time.perf_counter()
        try:
            check_url(claimed.inbox, allow_private=self._allow_private)
            headers = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._sign, claimed
            )
            async with self._session().post(
                claimed.inbox,
                data=claimed.body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                excerpt = (await response.content.read(ERROR_EXCERPT)).decode("utf-8", "replace")
                attempt = Attempt(claimed, response.status, dict(response.headers), excerpt)
        except FetchError as exc:
            attempt = Attempt(claimed, None, {}, "", error=str(exc))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            attempt = Attempt(claimed, None, {}, "", error=str(failure(claimed.inbox, exc)))
        log.info(
            "delivery %d to %s: %s attempt %d in %.0f ms",
            claimed.id,
            claimed.host,
            attempt.status if attempt.status is not None else attempt.error,
            claimed.attempts,
            (time.perf_counter() - started) * 1000,
        )
        return attempt

    def _sign(self, claimed: Claimed) -> dict[str, str]:
        # Runs on a signing thread: the key lookup may touch the database.
        signer = self._signer(claimed.actor)
        return sign_request(
            "POST",
            claimed.inbox,
            key_id=signer.key_id,
            private_key=signer.private_key,
            now=self._clock.now(),
            body=claimed.body,
            content_type=ACTIVITY_JSON,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

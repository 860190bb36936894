"""Signed POST headers made by child processes: the delivery worker's signing pool.

Why processes and not threads: ``cryptography`` releases the GIL while it
signs, but a signing thread must take the GIL back after every signature,
and on a busy worker it waited for it about as long as the signature took
(the event loop and the database thread hold it meanwhile); with two
threads the machine was idle a fifth of the time while requests waited to
be signed. A child process signs a whole batch without touching the
worker's GIL. Each child runs :func:`sign_request`, the one signing path.

A child is ``python -m mirror.signatures.processes`` (see
:mod:`mirror.children`): it imports only the signing code (about 30 MB of
RSS, most of it the interpreter and ``cryptography``), reads batches on its
stdin and answers on its stdout. It exits when its stdin closes, which
happens when the worker closes the pool or dies, even by SIGKILL.
Children hold the private keys they are sent, as the worker does.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence
from datetime import datetime
from typing import Any, BinaryIO

from mirror import children
from mirror.signatures.http import sign_request
from mirror.signatures.keys import load_private_key

#: (key_id, private key as PKCS#8 PEM): a key as it crosses to a child.
Key = tuple[str, bytes]
#: (index into the batch's keys, URL, body) of one POST to sign.
Post = tuple[int, str, bytes]

#: A child answers the batch it has, then sees its stdin closed and exits.
CLOSE_TIMEOUT_S = 5.0


class SigningError(Exception):
    """A signing process failed or died; the batch it had is not signed."""


class SigningPool:
    """Signs batches of POSTs on ``processes`` child processes (started on first use)."""

    def __init__(self, processes: int) -> None:
        self.processes = max(1, processes)
        self._children: list[_Child] = []
        self._idle: asyncio.Queue[_Child] | None = None

    async def sign_posts(
        self, keys: Sequence[Key], posts: Sequence[Post], *, now: datetime, content_type: str
    ) -> list[dict[str, str]]:
        """The headers of each POST (Host, Date, Digest, Content-Type, Signature)."""
        if self._idle is None:
            self._children = [_Child() for _ in range(self.processes)]
            self._idle = asyncio.Queue()
            for child in self._children:
                self._idle.put_nowait(child)
        idle = self._idle
        child = await idle.get()
        try:
            return await child.sign((list(keys), list(posts), now, content_type))
        finally:
            idle.put_nowait(child)

    async def close(self) -> None:
        """Close the children's stdin and wait for them to exit (bounded)."""
        children, self._children, self._idle = self._children, [], None
        await asyncio.gather(*(child.close() for child in children))


class _Child:
    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def sign(self, batch: tuple[Any, ...]) -> list[dict[str, str]]:
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                *children.command(__name__),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=children.environment(),
            )
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            process.stdin.write(children.frame(data))
            await process.stdin.drain()
            header = await process.stdout.readexactly(children.LENGTH.size)
            (length,) = children.LENGTH.unpack(header)
            ok, answer = pickle.loads(await process.stdout.readexactly(length))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            # It died (the OOM killer, say): the next batch starts another.
            await self.close()
            raise SigningError(f"the signing process died ({exc.__class__.__name__})") from None
        except BaseException:
            # Cancelled mid-exchange: its answer must not be read as the next
            # batch's, so this child goes and the next batch starts another.
            process.kill()
            self._process = None
            raise
        if not ok:
            raise SigningError(answer)
        return answer  # type: ignore[no-any-return]

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


# -- the child ------------------------------------------------------------------


def sign_posts(
    keys: list[Key], posts: list[Post], now: datetime, content_type: str
) -> list[dict[str, str]]:
    """Every POST of a batch signed, in order."""
    # Parsed once per child and key (load_private_key keeps them).
    loaded = [load_private_key(pem.decode()) for _, pem in keys]
    return [
        sign_request(
            "POST",
            url,
            key_id=keys[key][0],
            private_key=loaded[key],
            now=now,
            body=body,
            content_type=content_type,
        )
        for key, url, body in posts
    ]


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer batches until ``requests`` closes."""
    while (request := children.read_frame(requests)) is not None:
        keys, posts, now, content_type = pickle.loads(request)
        try:
            answer: tuple[bool, Any] = (True, sign_posts(keys, posts, now, content_type))
        except Exception as exc:
            answer = (False, f"signing failed: {exc.__class__.__name__}: {exc}")
        answers.write(children.frame(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)))
        answers.flush()


if __name__ == "__main__":
    # The worker stops gracefully on SIGTERM and still needs signatures
    # meanwhile; its exit closes our stdin, and then we exit.
    serve(*children.child_streams())

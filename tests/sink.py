"""A scripted receiving server for delivery tests: a real aiohttp server on 127.0.0.1.

Each POST is recorded (with the time it arrived) and answered by a script (a
status, optionally with headers and a body, or a delay before answering: a
hang). `lemmy_ids` makes it remember activity ids as Lemmy 1.0 does, before
anything else: an id seen before is answered 400 `couldnt_create`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.peer import free_port


@dataclass
class Answer:
    status: int = 202
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Hit:
    path: str
    activity: dict[str, Any]
    headers: dict[str, str]
    #: time.monotonic() when it arrived.
    at: float = field(default_factory=time.monotonic)
    #: Its activity id had arrived before (with `lemmy_ids`).
    duplicate: bool = False


Script = Callable[[Hit, int], Answer]


@dataclass
class Sink:
    """A server whose inbox answers per a script (default: 202 to everything)."""

    port: int = field(default_factory=free_port)
    script: Script = field(default=lambda hit, n: Answer())
    hits: list[Hit] = field(default_factory=list)
    lemmy_ids: bool = False
    _seen: set[str] = field(default_factory=set)
    _server: TestServer | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def inbox(self) -> str:
        return f"{self.base}/inbox"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._receive)
        self._server = TestServer(app, host="127.0.0.1", port=self.port)
        await self._server.start_server()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        hit = Hit(request.path, json.loads(body), dict(request.headers))
        self.hits.append(hit)
        if self.lemmy_ids:
            hit.duplicate = hit.activity["id"] in self._seen
            self._seen.add(hit.activity["id"])
            if hit.duplicate:
                return web.json_response({"error": "couldnt_create"}, status=400)
        answer = self.script(hit, len(self.hits))
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)

    def ids(self) -> list[str]:
        return [hit.activity["id"] for hit in self.hits]

    def objects(self) -> list[str]:
        out = []
        for hit in self.hits:
            obj = hit.activity.get("object")
            out.append(obj["id"] if isinstance(obj, dict) else obj)
        return out

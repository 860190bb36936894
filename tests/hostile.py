"""What a hostile (or broken) peer does, on 127.0.0.x: odd key documents, stalls, raw requests.

``KeyHost`` is a real aiohttp server that answers GETs with whatever a test
put at a path (a document, raw bytes, a status), can stall instead of
answering, and counts what it was asked. The helpers below make signed,
half-signed and unsigned inbox requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.signatures import digest_header, public_key_pem, sign_request

ACTIVITY_JSON = "application/activity+json"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class KeyHost:
    """A server that serves documents by path, counts GETs, and stalls where told to."""

    host: str = "127.0.0.1"
    port: int = 0
    #: path -> a JSON-able document, raw bytes, or an int status.
    documents: dict[str, Any] = field(default_factory=dict)
    #: Paths (or "*") that never answer until the server closes.
    stall: set[str] = field(default_factory=set)
    #: Paths of the GETs it answered (or stalled).
    requests: list[str] = field(default_factory=list)
    #: Paths POSTed to (deliveries to the actors it serves).
    posts: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: TestServer | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def actor(self, path: str, key: Any, **fields: Any) -> dict[str, Any]:
        """An actor document at ``path`` publishing ``key``, with ``fields`` overriding."""
        actor_id = self.base + path
        document = {
            "id": actor_id,
            "type": "Person",
            "preferredUsername": path.rsplit("/", 1)[-1],
            "inbox": actor_id + "/inbox",
            "publicKey": {
                "id": actor_id + "#main-key",
                "owner": actor_id,
                "publicKeyPem": public_key_pem(key),
            },
        }
        document.update(fields)
        self.documents[path] = document
        return document

    async def start(self) -> None:
        self.port = self.port or free_port(self.host)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host=self.host, port=self.port)
        await self._server.start_server()

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            self.posts.append(request.path)
            return web.Response(status=202)
        self.requests.append(request.path)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if "*" in self.stall or request.path in self.stall:
                await self._release.wait()
                return web.Response(status=503)
            found = self.documents.get(request.path)
            if found is None:
                return web.Response(status=404)
            if isinstance(found, int):
                return web.Response(status=found)
            body = found if isinstance(found, bytes) else json.dumps(found).encode()
            return web.Response(body=body, content_type=ACTIVITY_JSON)
        finally:
            self.in_flight -= 1


def http_date(when: datetime | None = None) -> str:
    return format_datetime((when or datetime.now(UTC)).astimezone(UTC), usegmt=True)


def signed(
    url: str, body: bytes, *, key: Any, key_id: str, now: datetime | None = None
) -> dict[str, str]:
    """A POST signed by our own signer (the way the mirror signs)."""
    return sign_request(
        "POST",
        url,
        key_id=key_id,
        private_key=key,
        now=now or datetime.now(UTC),
        body=body,
        content_type=ACTIVITY_JSON,
    )


def forged(
    url: str,
    body: bytes,
    *,
    key_id: str,
    date: str | None = None,
    digest: str | None = None,
    host: str | None = None,
    extra: str = "",
    covered: str = "(request-target) host date digest",
) -> dict[str, str]:
    """Headers that look signed, with a signature of random bytes (and what else is given)."""
    headers = {
        "Host": host or urlsplit(url).netloc,
        "Date": date or http_date(),
        "Digest": digest or digest_header(body),
        "Content-Type": ACTIVITY_JSON,
    }
    signature = base64.b64encode(b"\x01" * 256).decode()
    headers["Signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{covered}"{extra},'
        f'signature="{signature}"'
    )
    return headers


def follow(actor: str, target: str, number: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{actor}#follows/{number}",
        "type": "Follow",
        "actor": actor,
        "object": target,
        **fields,
    }


def self_delete(actor: str) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{actor}#delete",
        "type": "Delete",
        "actor": actor,
        "object": actor,
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
    }


async def raw_request(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are (a malformed request) and read the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read(65536)
    finally:
        writer.close()

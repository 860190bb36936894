"""A remote fediverse server for tests: its own key, its own actor, a recording inbox.

It is a real aiohttp server on 127.0.0.1. It signs what it sends with
httpsig (pycryptodome), and verifies what it receives with httpsig, so the
product's signatures are checked by an implementation other than its own.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from httpsig import HeaderSigner
from httpsig.verify import HeaderVerifier

from mirror.signatures import (
    digest_header,
    generate_private_key,
    private_key_to_pem,
    public_key_pem,
)

ACTIVITY_JSON = "application/activity+json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: httpsig's verdict on the request's signature (with the key it fetched).
    verified: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Peer:
    """Alice, on her own server."""

    port: int = field(default_factory=free_port)
    username: str = "alice"
    key: Any = field(default_factory=generate_private_key)
    received: list[Received] = field(default_factory=list)
    #: Status the actor URL answers with (410 once the account is "deleted").
    actor_status: int = 200
    #: The actor's type (Service is a bot on Lemmy and PieFed) and its `published`.
    actor_type: str = "Person"
    published: str | None = None
    #: Documents it serves at their ids (under /objects/, /post/, /comment/), e.g. a
    #: post a server fetches.
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Other accounts on the same server (same key, same shared inbox): a second
    #: follower from one server.
    others: tuple[str, ...] = ()
    #: The software its NodeInfo names (None: it serves no NodeInfo).
    software: str | None = None
    #: The clock its Date headers come from (the service's, when a test shifts it).
    clock: Any = None
    #: Keys of other servers, fetched to verify what they send us.
    _server: TestServer | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def actor_id(self) -> str:
        return f"{self.base}/users/{self.username}"

    @property
    def key_id(self) -> str:
        return f"{self.actor_id}#main-key"

    @property
    def inbox(self) -> str:
        return f"{self.actor_id}/inbox"

    def actor_document(self, username: str | None = None) -> dict[str, Any]:
        username = username or self.username
        actor_id = f"{self.base}/users/{username}"
        document = {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": actor_id,
            "type": self.actor_type,
            "preferredUsername": username,
            "inbox": f"{actor_id}/inbox",
            "outbox": f"{actor_id}/outbox",
            "endpoints": {"sharedInbox": f"{self.base}/inbox"},
            "publicKey": {
                "id": f"{actor_id}#main-key",
                "owner": actor_id,
                "publicKeyPem": public_key_pem(self.key),
            },
        }
        if self.published is not None:
            document["published"] = self.published
        return document

    async def start(self) -> None:
        app = web.Application()
        for username in (self.username, *self.others):
            app.router.add_get(f"/users/{username}", self._actor)
            app.router.add_post(f"/users/{username}/inbox", self._inbox)
        app.router.add_post("/inbox", self._inbox)
        app.router.add_get("/{kind:objects|post|comment}/{name}", self._object)
        app.router.add_get("/.well-known/nodeinfo", self._nodeinfo_index)
        app.router.add_get("/nodeinfo/2.1", self._nodeinfo)
        self._server = TestServer(app, host="127.0.0.1", port=self.port)
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def _actor(self, request: web.Request) -> web.Response:
        if self.actor_status != 200:
            return web.Response(status=self.actor_status)
        username = request.path.rstrip("/").rsplit("/", 1)[-1]
        return web.Response(
            body=json.dumps(self.actor_document(username)).encode(), content_type=ACTIVITY_JSON
        )

    async def _nodeinfo_index(self, request: web.Request) -> web.Response:
        if self.software is None:
            return web.Response(status=404)
        rel = "http://nodeinfo.diaspora.software/ns/schema/2.1"
        return web.json_response({"links": [{"rel": rel, "href": f"{self.base}/nodeinfo/2.1"}]})

    async def _nodeinfo(self, request: web.Request) -> web.Response:
        if self.software is None:
            return web.Response(status=404)
        return web.json_response({"version": "2.1", "software": {"name": self.software}})

    async def _object(self, request: web.Request) -> web.Response:
        document = self.objects.get(f"{self.base}{request.path}")
        if document is None:
            return web.Response(status=404)
        return web.Response(body=json.dumps(document).encode(), content_type=ACTIVITY_JSON)

    async def _inbox(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = await self._verify(request, headers)
        self.received.append(Received(request.path, headers, body, verified))
        return web.Response(status=202)

    async def _verify(self, request: web.Request, headers: dict[str, str]) -> bool:
        """httpsig's verifier, with the sender's key fetched from its actor document."""
        # Header names are case-insensitive (httpsig writes them in lower case).
        signature = request.headers.get("Signature", "")
        key_id = signature.split('keyId="', 1)[-1].split('"', 1)[0]
        async with (
            aiohttp.ClientSession() as session,
            session.get(key_id.split("#")[0], headers={"Accept": ACTIVITY_JSON}) as response,
        ):
            actor = await response.json(content_type=None)
        verifier = HeaderVerifier(
            headers=headers,
            secret=actor["publicKey"]["publicKeyPem"].encode(),
            required_headers=["(request-target)", "host", "date", "digest"],
            method="POST",
            path=request.path_qs,
            host=request.host,
            sign_header="Signature",
        )
        return bool(verifier.verify())

    def signed_post_headers(
        self,
        url: str,
        body: bytes,
        *,
        now: datetime | None = None,
        key: Any = None,
        username: str | None = None,
    ) -> dict[str, str]:
        """Headers for a POST signed the way Mastodon does, made by httpsig."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        headers = {
            "Host": parts.netloc,
            "Date": format_datetime(
                (now or (self.clock.now() if self.clock else datetime.now(UTC))).astimezone(UTC),
                usegmt=True,
            ),
            "Digest": digest_header(body),
            "Content-Type": ACTIVITY_JSON,
        }
        key_id = f"{self.base}/users/{username}#main-key" if username else self.key_id
        signer = HeaderSigner(
            key_id,
            private_key_to_pem(key or self.key).encode(),
            algorithm="rsa-sha256",
            headers=["(request-target)", "host", "date", "digest", "content-type"],
            sign_header="Signature",
        )
        return signer.sign(headers, host=parts.netloc, method="POST", path=parts.path or "/")

    async def discover_group(self, base: str, name: str) -> dict[str, Any]:
        """What Lemmy does to find a community: WebFinger acct:NAME@host, then the Group.

        The self link must say it is a Group (Lemmy answers users and
        communities from one namespace, each typed); the Group is fetched
        from it with activity+json, as a remote server would.
        """
        from urllib.parse import urlsplit

        host = urlsplit(base).netloc
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{base}/.well-known/webfinger",
                params={"resource": f"acct:{name}@{host}"},
                headers={"Accept": "application/jrd+json"},
            ) as response:
                assert response.status == 200, f"WebFinger of {name}: {response.status}"
                jrd = await response.json(content_type=None)
            link = next(
                link
                for link in jrd["links"]
                if link.get("rel") == "self"
                and link.get("properties", {}).get("https://www.w3.org/ns/activitystreams#type")
                == "Group"
            )
            async with session.get(link["href"], headers={"Accept": ACTIVITY_JSON}) as response:
                assert response.status == 200, f"{link['href']}: {response.status}"
                group = await response.json(content_type=None)
        assert group["type"] == "Group" and group["id"] == link["href"]
        return group

    async def send(self, inbox: str, activity: dict[str, Any]) -> int:
        """POST a signed activity to an inbox (signed by its actor, one of this server's
        accounts); the status it answered."""
        body = json.dumps(activity).encode()
        username = str(activity.get("actor", "")).rsplit("/", 1)[-1]
        headers = self.signed_post_headers(
            inbox, body, username=username if username in self.others else None
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(inbox, data=body, headers=headers) as r,
        ):
            return r.status

    def undo(self, follow: dict[str, Any], number: int = 1) -> dict[str, Any]:
        return {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{self.actor_id}#undo/{number}",
            "type": "Undo",
            "actor": self.actor_id,
            "object": {k: v for k, v in follow.items() if k != "@context"},
        }

    def follow(
        self, target: str, number: int = 1, *, username: str | None = None
    ) -> dict[str, Any]:
        actor = f"{self.base}/users/{username}" if username else self.actor_id
        return {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{actor}#follows/{number}",
            "type": "Follow",
            "actor": actor,
            "object": target,
        }


def rfc9421_headers(
    peer: Peer, url: str, body: bytes, *, now: datetime | None = None
) -> dict[str, str]:
    """Headers for a POST signed per RFC 9421 (rsa-v1_5-sha256), written here from the RFC."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from mirror.signatures import content_digest_header

    created = int((now or datetime.now(UTC)).timestamp())
    digest = content_digest_header(body)
    params = (
        '("@method" "@target-uri" "content-digest")'
        f';created={created};keyid="{peer.key_id}";alg="rsa-v1_5-sha256"'
    )
    base = "\n".join(
        [
            '"@method": POST',
            f'"@target-uri": {url}',
            f'"content-digest": {digest}',
            f'"@signature-params": {params}',
        ]
    ).encode()
    signature = peer.key.sign(base, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Content-Type": ACTIVITY_JSON,
        "Content-Digest": digest,
        "Signature-Input": f"sig1={params}",
        "Signature": f"sig1=:{base64.b64encode(signature).decode()}:",
    }

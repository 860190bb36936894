"""The sandbox subscribes to a hosted Group on a running mirror service as a Lemmy user does:
WebFinger, the Group, a Follow signed with httpsig, the Group's Accept verified, and Undo."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.peer import ACTIVITY_JSON, Peer
from tests.server.conftest import Service, wait_for
from tests.server.test_communities import NAME, followers_of, host_samples


async def _post(instance: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(instance.base + path, data=json.dumps(body)) as response:
            return response.status, await response.json(content_type=None)


async def test_sandbox_follows_a_hosted_group_and_unfollows(
    service: Service, sandbox_factory: Any, peer: Peer
) -> None:
    host_samples(service)
    sandbox = await sandbox_factory()
    handle = f"{NAME}@{service.base.removeprefix('http://')}"
    status, answer = await _post(sandbox, "/api/sandbox/subscribe", {"community": handle})
    assert status == 200, answer
    group = f"{service.base}/c/{NAME}"
    assert answer["group"] == group
    subscriber = f"{sandbox.base}/u/subscriber"
    # The mirror verified the Follow (it fetched the sandbox user's key) and
    # records the follower; its Accept, signed by the Group, passes the
    # sandbox's httpsig check and names the Follow.
    await wait_for(lambda: bool(sandbox.subscriptions) and sandbox.subscriptions[group].accepted)
    assert followers_of(service, NAME) == [(subscriber, "active", f"{sandbox.base}/inbox")]
    assert sandbox.refused == []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sandbox.base}/api/sandbox/subscriptions") as response:
            listed = await response.json(content_type=None)
    # Our outbox was read (empty: the mirror publishes nothing into it yet here).
    await wait_for(lambda: sandbox.subscriptions[group].outbox_read)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sandbox.base}/api/sandbox/subscriptions") as response:
            listed = await response.json(content_type=None)
    assert listed == {
        "subscriptions": [
            {
                "community": handle,
                "group": group,
                "accepted": True,
                "outbox_read": True,
                "threads": [],
            }
        ]
    }

    # An Accept of that very Follow from another actor (validly signed by it) is refused.
    follow_id = sandbox.subscriptions[group].follow["id"]
    forged = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.actor_id}#accepts/1",
        "type": "Accept",
        "actor": peer.actor_id,
        "object": follow_id,
    }
    assert await peer.send(f"{sandbox.base}/inbox", forged) == 400
    assert [r["error"] for r in sandbox.refused] == ["not_subscribed"]

    status, answer = await _post(sandbox, "/api/sandbox/unsubscribe", {"community": handle})
    assert status == 200, answer
    assert sandbox.subscriptions == {}
    await wait_for(lambda: followers_of(service, NAME)[0][1] != "active")
    status, answer = await _post(sandbox, "/api/sandbox/unsubscribe", {"community": handle})
    assert status == 400 and answer["error"] == "not_subscribed"


async def test_a_piefed_subscriber_signing_the_host_without_its_port_is_accepted(
    service: Service, sandbox_factory: Any
) -> None:
    """PieFed signs `Host: localhost` for https://localhost:PORT (seen against the real
    one: our 401 "wrong_host" refused its Follow); its Follow is ours all the same."""
    host_samples(service)
    sandbox = await sandbox_factory(software="piefed")
    assert sandbox.signs_host_without_port
    handle = f"{NAME}@{service.base.removeprefix('http://')}"
    status, answer = await _post(sandbox, "/api/sandbox/subscribe", {"community": handle})
    assert status == 200, answer
    group = f"{service.base}/c/{NAME}"
    await wait_for(lambda: sandbox.subscriptions[group].accepted)
    assert followers_of(service, NAME)[0][1] == "active"


async def test_subscribe_says_what_is_wrong_with_the_handle(
    service: Service, sandbox_factory: Any
) -> None:
    host_samples(service)
    sandbox = await sandbox_factory()
    status, answer = await _post(
        sandbox, "/api/sandbox/subscribe", {"community": f"nosuch@{service.base[7:]}"}
    )
    assert status == 400 and answer["error"] == "couldnt_fetch"
    status, answer = await _post(sandbox, "/api/sandbox/subscribe", {"community": "no-host"})
    assert status == 400 and answer["error"] == "invalid_handle"


PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS = "https://www.w3.org/ns/activitystreams"


class FakeGroup:
    """A remote community for the sandbox to follow: WebFinger, the Group, its outbox
    (unpaged, or paged through `first`), an inbox that records; signs as a Peer does."""

    def __init__(self, paged: bool) -> None:
        self.peer = Peer(username="history", actor_type="Group")
        self.paged = paged
        self.outbox: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.server: TestServer | None = None

    @property
    def id(self) -> str:
        return self.peer.actor_id

    @property
    def author(self) -> str:
        return f"{self.peer.base}/u/bob"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/webfinger", self._webfinger)
        app.router.add_get("/users/history", self._json(self.peer.actor_document))
        app.router.add_get("/users/history/outbox", self._json(self._outbox))
        app.router.add_get("/users/history/outbox/page1", self._json(self._page))
        app.router.add_get("/activities/{kind}/{name}", self._object)
        app.router.add_post("/users/history/inbox", self._inbox)
        app.router.add_post("/inbox", self._inbox)
        self.server = TestServer(app, host="127.0.0.1", port=self.peer.port)
        await self.server.start_server()

    def _json(self, make: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(make(), content_type=ACTIVITY_JSON)

        return handler

    async def _webfinger(self, request: web.Request) -> web.Response:
        links = [{"rel": "self", "type": ACTIVITY_JSON, "href": self.id}]
        return web.json_response({"subject": request.query["resource"], "links": links})

    def _outbox(self) -> dict[str, Any]:
        outbox = {"@context": AS, "id": f"{self.id}/outbox", "type": "OrderedCollection"}
        if self.paged:
            return {**outbox, "totalItems": len(self.outbox), "first": f"{self.id}/outbox/page1"}
        return {**outbox, "totalItems": len(self.outbox), "orderedItems": self.outbox}

    def _page(self) -> dict[str, Any]:
        return {
            "@context": AS,
            "id": f"{self.id}/outbox/page1",
            "type": "OrderedCollectionPage",
            "orderedItems": self.outbox,
        }

    async def _object(self, request: web.Request) -> web.Response:
        found = self.peer.objects.get(f"{self.peer.base}{request.path}")
        if found is None:
            return web.Response(status=404)
        return web.json_response(found, content_type=ACTIVITY_JSON)

    async def _inbox(self, request: web.Request) -> web.Response:
        self.received.append(json.loads(await request.read()))
        return web.Response(status=202)

    def create(self, obj: dict[str, Any], kind: str = "Create") -> dict[str, Any]:
        return {
            "@context": AS,
            "id": f"{self.peer.base}/activities/{kind.lower()}/{obj['id'].rsplit('/', 1)[-1]}",
            "type": kind,
            "actor": self.author,
            "to": [PUBLIC],
            "cc": [self.id],
            "object": obj,
        }

    def announce(self, inner: Any, number: int) -> dict[str, Any]:
        return {
            "@context": AS,
            "id": f"{self.id}/activities/announce/{number}",
            "type": "Announce",
            "actor": self.id,
            "to": [PUBLIC],
            "cc": [f"{self.id}/followers"],
            "object": inner,
        }

    def page(self, number: int, name: str) -> dict[str, Any]:
        return {
            "id": f"{self.peer.base}/post/{number}",
            "type": "Page",
            "attributedTo": self.author,
            "name": name,
            "content": f"<p>{name}</p>",
            "to": [self.id, PUBLIC],
            "audience": self.id,
            "published": "2024-01-02T03:04:05Z",
        }

    def note(self, number: int, parent: str) -> dict[str, Any]:
        return {
            "id": f"{self.peer.base}/comment/{number}",
            "type": "Note",
            "attributedTo": self.author,
            "content": f"<p>reply {number}</p>",
            "inReplyTo": parent,
            "to": [PUBLIC],
            "cc": [self.id],
            "audience": self.id,
            "published": "2024-01-02T03:05:05Z",
        }


@pytest.mark.parametrize("paged", [False, True], ids=["unpaged", "paged"])
async def test_sandbox_reads_the_outbox_and_stores_what_announces_bring(
    sandbox_factory: Any, peer: Peer, paged: bool
) -> None:
    fake = FakeGroup(paged)
    await fake.start()
    try:
        post = fake.page(1, "The first post")
        second = fake.page(4, "The second post")
        reply = fake.note(2, post["id"])
        nested = fake.note(3, reply["id"])
        # The second post arrives by id: the Announce names the Create, served at its id.
        by_id = fake.create(second)
        fake.peer.objects[by_id["id"]] = by_id
        fake.outbox = [  # newest first, as collections are
            fake.announce(by_id["id"], 3),
            # Lemmy takes only posts from an outbox: this reply is left out.
            fake.announce(fake.create(reply), 2),
            fake.announce(fake.create(post), 1),
        ]
        sandbox = await sandbox_factory()
        handle = f"history@127.0.0.1:{fake.peer.port}"
        status, answer = await _post(sandbox, "/api/sandbox/subscribe", {"community": handle})
        assert status == 200 and answer["group"] == fake.id, answer
        assert [a["type"] for a in fake.received] == ["Follow"]
        follow = fake.received[0]
        assert follow["object"] == fake.id and follow["actor"] == f"{sandbox.base}/u/subscriber"
        accept = {
            "@context": AS,
            "id": f"{fake.id}/activities/accept/1",
            "type": "Accept",
            "actor": fake.id,
            "object": follow,
        }
        assert await fake.peer.send(f"{sandbox.base}/inbox", accept) == 200
        subscription = sandbox.subscriptions[fake.id]
        await wait_for(lambda: subscription.outbox_read and subscription.outbox_items == 3)
        assert sandbox.refused == []
        threads = sandbox.threads(fake.id)
        assert [(t["id"], t["comments"]) for t in threads] == [(post["id"], []), (second["id"], [])]
        assert [t["name"] for t in threads] == ["The first post", "The second post"]
        assert sandbox.threads() == []  # its own community holds none of them
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{sandbox.base}/") as response:
                page = await response.text()
        assert f"<h2>!{handle}</h2>" in page and "subscribed</small>" in page
        assert page.index("The first post") > page.index(f"<h2>!{handle}</h2>")

        # Pushed to the inbox, Announced by the Group and signed by it: comments
        # (stored under their parents), an Update and a Delete. The activity an
        # Announce embeds needs no @context: Lemmy sends none there
        # (announce_create_page.json), and neither does a hosted Group of ours.
        for number, comment in ((10, reply), (11, nested)):
            inner = {k: v for k, v in fake.create(comment).items() if k != "@context"}
            pushed = fake.announce(inner, number)
            assert await fake.peer.send(f"{sandbox.base}/inbox", pushed) == 200
        comments = sandbox.threads(fake.id)[0]["comments"]
        assert [(c["id"], c["inReplyTo"], c["depth"]) for c in comments] == [
            (reply["id"], post["id"], 1),
            (nested["id"], reply["id"], 2),
        ]
        edited = {**post, "name": "The first post, edited"}
        update = fake.announce(fake.create(edited, "Update"), 4)
        assert await fake.peer.send(f"{sandbox.base}/inbox", update) == 200
        assert sandbox.threads(fake.id)[0]["name"] == "The first post, edited"
        delete = {
            "@context": AS,
            "id": f"{fake.peer.base}/activities/delete/2",
            "type": "Delete",
            "actor": fake.author,
            "to": [PUBLIC],
            "cc": [fake.id],
            "object": reply["id"],
        }
        assert await fake.peer.send(f"{sandbox.base}/inbox", fake.announce(delete, 5)) == 200
        assert sandbox.threads(fake.id)[0]["comments"][0]["deleted"] is True

        # An Announce from an actor the sandbox does not follow is refused, and
        # so is one whose inner object breaks Lemmy's rules.
        other = {**fake.announce(fake.create(fake.page(9, "Spoofed")), 6), "actor": peer.actor_id}
        other["id"] = f"{peer.actor_id}/activities/announce/6"
        assert await peer.send(f"{sandbox.base}/inbox", other) == 400
        misfiled = {**fake.page(10, "Elsewhere"), "audience": f"{fake.peer.base}/c/other"}
        assert (
            await fake.peer.send(f"{sandbox.base}/inbox", fake.announce(fake.create(misfiled), 7))
            == 400
        )
        assert [r["error"] for r in sandbox.refused] == ["not_subscribed", "invalid_community"]
        assert [t["id"] for t in sandbox.threads(fake.id)] == [post["id"], second["id"]]

        status, _ = await _post(sandbox, "/api/sandbox/unsubscribe", {"community": handle})
        assert status == 200
        undo = fake.received[-1]
        assert undo["type"] == "Undo" and undo["object"]["id"] == follow["id"]
    finally:
        assert fake.server is not None
        await fake.server.close()

"""The sandbox subscribes to a hosted Group on a running mirror service as a Lemmy user does:
WebFinger, the Group, a Follow signed with httpsig, the Group's Accept verified, and Undo."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.peer import Peer
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
    assert listed == {"subscriptions": [{"community": handle, "group": group, "accepted": True}]}

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

"""The sandbox on its own: refusals with Lemmy's error codes, Follow and Announce, its pages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from mirror.sandbox.app import Instance
from tests.peer import Peer
from tests.publish.test_backfill import handle, mirror_service, wait_for_run


async def post(peer: Peer, url: str, activity: dict[str, Any]) -> tuple[int, Any]:
    body = json.dumps(activity).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, data=body, headers=peer.signed_post_headers(url, body)
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


def create_page(peer: Peer, sandbox: Instance, n: int, **changes: Any) -> dict[str, Any]:
    page = {
        "id": f"{peer.base}/post/{n}",
        "type": "Page",
        "attributedTo": peer.actor_id,
        "to": [sandbox.group_id, "https://www.w3.org/ns/activitystreams#Public"],
        "cc": [],
        "audience": sandbox.group_id,
        "name": "A title",
        "content": "<p>text</p>",
        **changes.pop("object", {}),
    }
    activity = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.base}/activities/{n}",
        "type": "Create",
        "actor": peer.actor_id,
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        "cc": [sandbox.group_id],
        "object": page,
    }
    activity.update(changes)
    return activity


async def test_lemmys_refusals(sandbox_factory: Callable[..., Any], peer: Peer) -> None:
    sandbox = await sandbox_factory(version="1.0.0")
    inbox = f"{sandbox.base}/inbox"
    cases = [
        (create_page(peer, sandbox, 1), "parse_error"),  # no cc: Lemmy needs both
        (create_page(peer, sandbox, 2, object={"to": ["as:Public"]}), "not_public"),
        (
            create_page(peer, sandbox, 3, object={"attributedTo": "https://elsewhere.example/u/x"}),
            "invalid_domain",
        ),
        (
            create_page(peer, sandbox, 4, object={"audience": "https://x.example/c/other"}),
            "invalid_community",
        ),
        (create_page(peer, sandbox, 5, object={"name": "x" * 201}), "parse_error"),
        (create_page(peer, sandbox, 6, object={"type": "Note"}), "parse_error"),  # 1.0
        (create_page(peer, sandbox, 7, object={"mediaType": "text/plain"}), "parse_error"),
    ]
    del cases[0][0]["cc"]
    for activity, error in cases:
        status, answer = await post(peer, inbox, activity)
        assert (status, answer["error"]) == (400, error), activity["id"]
    ok = create_page(peer, sandbox, 8)
    assert (await post(peer, inbox, ok))[0] == 200
    status, answer = await post(peer, inbox, ok)
    assert status == 400 and "duplicate" in answer["message"]
    # A bad signature: the body changed after signing.
    body = json.dumps(create_page(peer, sandbox, 9)).encode()
    headers = peer.signed_post_headers(inbox, body)
    async with aiohttp.ClientSession() as session:
        async with session.post(inbox, data=body + b" ", headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "incorrect_signature"


async def test_follow_accept_announce_and_pages(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory()
    follow = peer.follow(sandbox.group_id)
    assert (await post(peer, f"{sandbox.base}/inbox", follow))[0] == 200
    for _ in range(100):
        if any(r.json["type"] == "Accept" for r in peer.received):
            break
        await asyncio.sleep(0.05)
    accept = next(r for r in peer.received if r.json["type"] == "Accept")
    assert accept.verified and accept.json["object"]["id"] == follow["id"]

    from mirror.publish.start import start_backfill

    _, report = await start_backfill(service.federation, to=handle(sandbox), limit=1)
    await wait_for_run(service, report.run_id)
    for _ in range(100):
        if any(r.json["type"] == "Announce" for r in peer.received):
            break
        await asyncio.sleep(0.05)
    announce = next(r for r in peer.received if r.json["type"] == "Announce")
    assert announce.verified and announce.json["object"]["type"] == "Create"
    assert announce.json["object"]["actor"] == service.federation.urls.actor("mirror")

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sandbox.base}/") as response:
            index = await response.text()
        async with session.get(f"{sandbox.base}/post/{sandbox.threads()[0]['number']}") as r:
            page = await r.text()
    title = sandbox.threads()[0]["name"]
    assert "<ul>" in index and title.split()[0] in index
    assert "Mirrored from an archive" in page and "<script" not in page

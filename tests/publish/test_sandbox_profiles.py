"""The sandbox's two profiles, lemmy and piefed: what each answers, refuses, stores and shows.

Every activity is signed by the test peer (httpsig) and POSTed over loopback
to a real sandbox server; answers are read as a client reads them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from mirror.clock import FrozenClock
from mirror.sandbox.app import Instance
from tests.peer import Peer
from tests.publish.test_sandbox import create_page

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


async def send(
    peer: Peer, sandbox: Instance, activity: dict[str, Any], *, now: datetime | None = None
) -> tuple[int, str]:
    """POST a signed activity to the sandbox's shared inbox: (status, body text)."""
    url = f"{sandbox.base}/inbox"
    body = json.dumps(activity).encode()
    headers = peer.signed_post_headers(url, body, now=now or sandbox.clock.now())
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as response:
            return response.status, await response.text()


async def get(url: str) -> tuple[int, str, Any]:
    """GET: (status, Content-Type, JSON or text)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            text = await response.text()
            try:
                return response.status, response.content_type, json.loads(text)
            except ValueError:
                return response.status, response.content_type, text


def page(peer: Peer, sandbox: Instance, n: int, activity: int | None = None, **obj: Any) -> Any:
    """A Create of post n, addressed as fedimirror addresses it; `activity` renumbers the Create."""
    create = create_page(peer, sandbox, n, cc=[sandbox.group_id], object=obj)
    if activity is not None:
        create["id"] = f"{peer.base}/activities/{activity}"
    return create


def note(peer: Peer, sandbox: Instance, n: int, parent: str, **obj: Any) -> dict[str, Any]:
    """A Create of comment n under `parent`."""
    comment = {
        "id": f"{peer.base}/comment/{n}",
        "type": "Note",
        "attributedTo": peer.actor_id,
        "to": [PUBLIC],
        "cc": [sandbox.group_id],
        "audience": sandbox.group_id,
        "inReplyTo": parent,
        "content": f"<p>comment {n}</p>",
        **obj,
    }
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.base}/activities/c{n}",
        "type": "Create",
        "actor": peer.actor_id,
        "to": [PUBLIC],
        "cc": [sandbox.group_id],
        "object": comment,
    }


def delete(peer: Peer, object_id: str, n: int) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.base}/activities/d{n}",
        "type": "Delete",
        "actor": peer.actor_id,
        "to": [PUBLIC],
        "object": object_id,
    }


async def test_nodeinfo_names_the_profile(sandbox_factory: Callable[..., Any]) -> None:
    for software, version in (("lemmy", "0.19.9"), ("piefed", "1.6.18")):
        sandbox = await sandbox_factory(software)
        _, _, info = await get(f"{sandbox.base}/nodeinfo/2.1")
        assert info["software"] == {"name": software, "version": version}
    lemmy_1 = await sandbox_factory(version="1.0.0")
    assert (await get(f"{lemmy_1.base}/nodeinfo/2.1"))[2]["software"]["version"] == "1.0.0"


async def test_refusal_status_of_each_profile(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    not_public = {"to": ["as:Public"]}
    lemmy = await sandbox_factory()
    status, body = await send(peer, lemmy, page(peer, lemmy, 1, **not_public))
    assert (status, json.loads(body)["error"]) == (400, "not_public")

    # PieFed logs a refusal and answers an empty 200.
    piefed = await sandbox_factory("piefed")
    assert await send(peer, piefed, page(peer, piefed, 1, **not_public)) == (200, "")
    assert [r["error"] for r in piefed.refused] == ["not_public"]
    assert piefed.threads() == []

    # --refusals overrides either way; the refusal is recorded each time.
    piefed_400 = await sandbox_factory("piefed", refusal_status=400)
    status, body = await send(peer, piefed_400, page(peer, piefed_400, 1, **not_public))
    assert (status, json.loads(body)["error"]) == (400, "not_public")
    lemmy_200 = await sandbox_factory(refusal_status=200)
    assert await send(peer, lemmy_200, page(peer, lemmy_200, 1, **not_public)) == (200, "")
    assert [r["error"] for r in lemmy_200.refused] == ["not_public"]

    # A signature that fails is a 400 on PieFed too.
    url = f"{piefed.base}/inbox"
    body_bytes = json.dumps(page(peer, piefed, 2)).encode()
    headers = peer.signed_post_headers(url, body_bytes)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body_bytes + b" ", headers=headers) as response:
            assert response.status == 400
    assert piefed.refused[-1]["error"] == "incorrect_signature"


async def test_piefed_refuses_an_unknown_parent_that_lemmy_fetches(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    # The parent post lives on the peer's server, and the sandbox has not seen it.
    lemmy = await sandbox_factory()
    parent = page(peer, lemmy, 7)["object"]
    peer.objects[parent["id"]] = parent
    assert (await send(peer, lemmy, note(peer, lemmy, 1, parent["id"])))[0] == 200
    assert [(t["id"], len(t["comments"])) for t in lemmy.threads()] == [(parent["id"], 1)]
    assert lemmy.objects[parent["id"]].announced is False  # fetched, not received

    piefed = await sandbox_factory("piefed")
    assert await send(peer, piefed, note(peer, piefed, 1, parent["id"])) == (200, "")
    assert piefed.threads() == []
    assert piefed.refused == [
        {
            "error": "unknown_parent",
            "message": f"Unable to find parent post/comment: {parent['id']}",
        }
    ]
    # Once the post is there, the same comment (a new activity) is stored.
    assert (await send(peer, piefed, page(peer, piefed, 7)))[0] == 200
    again = note(peer, piefed, 1, parent["id"])
    again["id"] += "-again"
    assert await send(peer, piefed, again) == (200, "")
    assert len(piefed.threads()[0]["comments"]) == 1


async def test_new_account_limit_waits_for_the_frozen_clock(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    clock = FrozenClock(START)
    sandbox = await sandbox_factory("piefed", clock=clock)
    for n in range(1, 5):
        assert await send(peer, sandbox, page(peer, sandbox, n)) == (200, "")
    # The fifth post of an account first seen less than a day ago: refused, with 200.
    assert await send(peer, sandbox, page(peer, sandbox, 5)) == (200, "")
    assert len(sandbox.threads()) == 4
    assert sandbox.refused[-1]["error"] == "new_account_limit"
    assert "User cannot create post in Community" in sandbox.refused[-1]["message"]
    # Comments are not limited.
    assert (await send(peer, sandbox, note(peer, sandbox, 1, f"{peer.base}/post/1")))[0] == 200
    assert len(sandbox.threads()[0]["comments"]) == 1
    # A post refused by the limit never reaches the language column (no 500).
    assert await send(peer, sandbox, page(peer, sandbox, 6, **LONG_LANGUAGE)) == (200, "")
    assert sandbox.failed == []

    clock.advance(timedelta(hours=23, minutes=59))
    assert await send(peer, sandbox, page(peer, sandbox, 5, activity=105)) == (200, "")
    assert len(sandbox.threads()) == 4
    clock.advance(timedelta(minutes=1))  # a day since the account was first seen
    assert await send(peer, sandbox, page(peer, sandbox, 5, activity=205)) == (200, "")
    assert [t["id"] for t in sandbox.threads()][-1] == f"{peer.base}/post/5"
    # The received time is the sandbox's clock, not the object's `published`.
    assert sandbox.objects[f"{peer.base}/post/5"].received_at == START + timedelta(days=1)


async def test_new_account_limit_reads_published_and_counts_what_is_held(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    clock = FrozenClock(START)
    # An account published two days ago is not new, whenever it is first seen.
    peer.published = (START - timedelta(days=2)).isoformat()
    old = await sandbox_factory("piefed", clock=clock)
    for n in range(1, 7):
        assert await send(peer, old, page(peer, old, n)) == (200, "")
    assert len(old.threads()) == 6 and old.refused == []

    # Published an hour ago: new. A deleted post no longer counts (PieFed
    # decrements post_count); the limit is configurable on any profile.
    peer.published = (START - timedelta(hours=1)).isoformat()
    lemmy = await sandbox_factory(clock=clock, new_account_limit=True, new_account_posts=1)
    assert (await send(peer, lemmy, page(peer, lemmy, 1)))[0] == 200
    assert (await send(peer, lemmy, page(peer, lemmy, 2)))[0] == 200
    status, body = await send(peer, lemmy, page(peer, lemmy, 3))
    assert (status, json.loads(body)["error"]) == (400, "new_account_limit")
    assert (await send(peer, lemmy, delete(peer, f"{peer.base}/post/1", 1)))[0] == 200
    assert (await send(peer, lemmy, page(peer, lemmy, 3, activity=103)))[0] == 200
    # Off on piefed when a test says so.
    free = await sandbox_factory("piefed", clock=clock, new_account_limit=False)
    for n in range(1, 7):
        assert await send(peer, free, page(peer, free, n)) == (200, "")
    assert len(free.threads()) == 6


LONG_LANGUAGE = {"language": {"identifier": "English", "name": "English"}}


async def test_piefed_answers_500_for_a_language_identifier_over_five_characters(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    clock = FrozenClock(START)
    sandbox = await sandbox_factory("piefed", clock=clock)
    activity = page(peer, sandbox, 1, **LONG_LANGUAGE)
    status, body = await send(peer, sandbox, activity)
    assert status == 500 and "character varying(5)" in body
    assert sandbox.threads() == [] and sandbox.failed[0]["object"] == f"{peer.base}/post/1"
    # PieFed remembered the id before failing: within 90 s the retry is "Already
    # aware" (200, nothing stored); after that it fails again.
    assert await send(peer, sandbox, activity) == (200, "")
    assert sandbox.refused[-1]["error"] == "duplicate"
    clock.advance(timedelta(seconds=91))
    assert (await send(peer, sandbox, activity))[0] == 500
    # A code fits; comments are held to the same column.
    fits = {"language": {"identifier": "en", "name": "English"}}
    assert await send(peer, sandbox, page(peer, sandbox, 2, **fits)) == (200, "")
    status, _ = await send(peer, sandbox, note(peer, sandbox, 1, f"{peer.base}/post/2", **fits))
    assert status == 200
    comment = note(peer, sandbox, 2, f"{peer.base}/post/2", **LONG_LANGUAGE)
    assert (await send(peer, sandbox, comment))[0] == 500

    lemmy = await sandbox_factory(clock=clock)
    assert (await send(peer, lemmy, page(peer, lemmy, 1, **LONG_LANGUAGE)))[0] != 500


async def test_fail_objects_answers_500_for_that_object_only(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    for software in ("lemmy", "piefed"):
        failing = f"{peer.base}/post/1"
        sandbox = await sandbox_factory(software, fail_objects={failing})
        first = page(peer, sandbox, 1)
        # Every attempt fails alike: the id is not recorded before the failure.
        assert (await send(peer, sandbox, first))[0] == 500
        assert (await send(peer, sandbox, first))[0] == 500
        assert (await send(peer, sandbox, page(peer, sandbox, 2)))[0] == 200
        assert [f["object"] for f in sandbox.failed] == [failing, failing]
        sandbox.fail_objects.clear()
        assert (await send(peer, sandbox, first))[0] == 200
        assert len(sandbox.threads()) == 2, software
    # Or a predicate on the activity.
    sandbox = await sandbox_factory(fail_when=lambda a: a["type"] == "Delete")
    assert (await send(peer, sandbox, page(peer, sandbox, 1)))[0] == 200
    assert (await send(peer, sandbox, delete(peer, f"{peer.base}/post/1", 1)))[0] == 500


async def test_lemmy_checks_the_date_with_its_clock_and_piefed_does_not(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    clock = FrozenClock(START - timedelta(hours=3))
    lemmy = await sandbox_factory(clock=clock)
    status, body = await send(peer, lemmy, page(peer, lemmy, 1), now=START)
    assert (status, json.loads(body)["error"]) == (400, "incorrect_signature")
    assert (await send(peer, lemmy, page(peer, lemmy, 2)))[0] == 200  # signed at its now
    piefed = await sandbox_factory("piefed", clock=clock)
    assert await send(peer, piefed, page(peer, piefed, 1), now=START) == (200, "")
    assert len(piefed.threads()) == 1


async def test_bot_posts_and_piefeds_announces(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    peer.actor_type = "Service"
    for software, announced in (("lemmy", True), ("piefed", False)):
        sandbox = await sandbox_factory(software)
        assert (await send(peer, sandbox, peer.follow(sandbox.group_id)))[0] == 200
        assert (await send(peer, sandbox, page(peer, sandbox, 1)))[0] == 200
        assert sandbox.threads()[0]["bot"] is True
        await asyncio.sleep(0.3)
        # PieFed does not Announce to the instance that hosts the author.
        announces = [r for r in peer.received if r.json["type"] == "Announce"]
        assert bool(announces) is announced, software
        peer.received.clear()


async def post_and_comments(peer: Peer, sandbox: Instance) -> dict[str, str]:
    """A post, a comment and a reply to it; their ids."""
    ids = {
        "post": f"{peer.base}/post/1",
        "comment": f"{peer.base}/comment/1",
        "reply": f"{peer.base}/comment/2",
    }
    source = {"content": "Body **bold**", "mediaType": "text/markdown"}
    published = {"published": "2025-04-26T10:00:00Z"}
    assert (await send(peer, sandbox, page(peer, sandbox, 1, source=source, **published)))[0] == 200
    assert (await send(peer, sandbox, note(peer, sandbox, 1, ids["post"], **published)))[0] == 200
    assert (await send(peer, sandbox, note(peer, sandbox, 2, ids["comment"])))[0] == 200
    return ids


async def test_lemmy_resolve_object(sandbox_factory: Callable[..., Any], peer: Peer) -> None:
    sandbox = await sandbox_factory()
    ids = await post_and_comments(peer, sandbox)
    resolve = f"{sandbox.base}/api/v3/resolve_object?q="

    status, kind, answer = await get(resolve + ids["post"])
    assert (status, kind, list(answer)) == (200, "application/json", ["post"])
    view = answer["post"]
    assert view["post"]["ap_id"] == ids["post"] and view["post"]["id"] == 1
    assert view["post"]["body"] == "Body **bold**" and view["post"]["name"] == "A title"
    assert view["post"]["published"] == "2025-04-26T10:00:00Z"  # Lemmy keeps `published`
    assert view["post"]["deleted"] is False and view["post"]["local"] is False
    assert view["creator"]["actor_id"] == peer.actor_id and view["creator"]["name"] == "alice"
    assert view["community"]["actor_id"] == sandbox.group_id
    assert view["counts"]["comments"] == 2 and view["subscribed"] == "NotSubscribed"
    assert "my_vote" not in view  # None without a login: left out

    status, _, answer = await get(resolve + ids["reply"])
    assert status == 200 and list(answer) == ["comment"]
    comment = answer["comment"]
    assert comment["comment"]["ap_id"] == ids["reply"] and comment["comment"]["id"] == 2
    assert comment["comment"]["path"] == "0.1.2" and comment["comment"]["post_id"] == 1
    assert comment["post"]["ap_id"] == ids["post"]
    assert (await get(resolve + ids["comment"]))[2]["comment"]["counts"]["child_count"] == 1

    not_held = f"{peer.base}/post/404"
    assert (await get(resolve + not_held))[::2] == (400, {"error": "couldnt_find_object"})
    assert (await send(peer, sandbox, delete(peer, ids["reply"], 1)))[0] == 200
    # 0.19 wraps diesel's NotFound for a deleted object: 404.
    assert (await get(resolve + ids["reply"]))[::2] == (404, {"error": "couldnt_find_object"})
    assert (await get(f"{sandbox.base}/api/alpha/resolve_object?q={ids['post']}"))[0] == 404
    assert (await get(f"{sandbox.base}/api/v3/federated_instances"))[0] == 200
    community = (await get(resolve + sandbox.group_id))[2]
    assert community["community"]["counts"]["posts"] == 1

    private = await sandbox_factory(lookup_enabled=False)
    answer = await get(f"{private.base}/api/v3/resolve_object?q={ids['post']}")
    assert answer[::2] == (400, {"error": "instance_is_private"})


async def test_lemmy_1_0_resolve_object(sandbox_factory: Callable[..., Any], peer: Peer) -> None:
    sandbox = await sandbox_factory(version="1.0.0")
    ids = await post_and_comments(peer, sandbox)
    resolve = f"{sandbox.base}/api/v3/resolve_object?q="
    assert (await get(resolve + ids["post"]))[2]["post"]["post"]["ap_id"] == ids["post"]
    status, _, answer = await get(resolve + f"{peer.base}/post/404")
    assert (status, answer["error"]) == (400, "resolve_object_failed")
    assert answer["message"] == "Object was not found in local database"
    # 1.0 shows a deleted comment, and a deleted post while it has comments.
    assert (await send(peer, sandbox, delete(peer, ids["reply"], 1)))[0] == 200
    assert (await send(peer, sandbox, delete(peer, ids["post"], 2)))[0] == 200
    reply = (await get(resolve + ids["reply"]))[2]
    assert reply["comment"]["comment"]["deleted"] is True
    assert (await get(resolve + ids["post"]))[2]["post"]["post"]["deleted"] is True
    assert (await send(peer, sandbox, delete(peer, ids["comment"], 3)))[0] == 200
    status, _, answer = await get(resolve + ids["post"])
    assert (status, answer["error"]) == (404, "not_found")


async def test_piefed_resolve_object(sandbox_factory: Callable[..., Any], peer: Peer) -> None:
    clock = FrozenClock(START)
    sandbox = await sandbox_factory("piefed", clock=clock)
    ids = await post_and_comments(peer, sandbox)
    resolve = f"{sandbox.base}/api/alpha/resolve_object?q="

    status, kind, answer = await get(resolve + ids["post"])
    assert (status, kind, list(answer)) == (200, "application/json", ["post"])
    view = answer["post"]
    assert view["post"]["ap_id"] == ids["post"] and view["post"]["id"] == 1
    assert view["post"]["title"] == "A title" and view["post"]["body"] == "Body **bold**"
    # PieFed's date is when it received the post.
    assert view["post"]["published"] == "2026-12-07T12:00:00.000000Z"
    assert view["creator"]["actor_id"] == peer.actor_id and view["creator"]["user_name"] == "alice"
    assert view["counts"]["comments"] == 2 and view["community"]["name"] == "sandbox"

    status, _, answer = await get(resolve + ids["reply"])
    assert status == 200 and list(answer) == ["comment"]
    reply = answer["comment"]
    assert reply["comment"]["ap_id"] == ids["reply"] and reply["comment"]["path"] == "0.1.2"
    assert reply["post"]["ap_id"] == ids["post"] and reply["comment"]["post_id"] == 1
    assert (await get(resolve + ids["comment"]))[2]["comment"]["counts"]["child_count"] == 1

    no_object = {"code": 400, "message": "No object found.", "status": "Bad Request"}
    assert (await get(resolve + f"{peer.base}/post/404"))[::2] == (400, no_object)
    assert (await send(peer, sandbox, delete(peer, ids["reply"], 1)))[0] == 200
    assert (await get(resolve + ids["reply"]))[::2] == (400, no_object)
    # Exact ap_id: another spelling is not found.
    assert (await get(resolve + ids["post"].upper()))[0] == 400
    # No Lemmy API on PieFed (its HTML 404), but federated_instances is there.
    status, kind, _ = await get(f"{sandbox.base}/api/v3/resolve_object?q={ids['post']}")
    assert (status, kind) == (404, "text/html")
    assert (await get(f"{sandbox.base}/api/v3/federated_instances"))[0] == 200
    community = (await get(resolve + sandbox.group_id))[2]
    assert community["community"]["counts"]["post_count"] == 1

    disabled = await sandbox_factory("piefed", lookup_enabled=False)
    answer = await get(f"{disabled.base}/api/alpha/resolve_object?q={ids['post']}")
    assert answer[::2] == (
        400,
        {"code": 400, "message": "alpha api is not enabled", "status": "Bad Request"},
    )


async def test_pages_render_source_as_each_ui_does(
    sandbox_factory: Callable[..., Any], peer: Peer
) -> None:
    text = 'consumed \\~1,300 MWh of H~2~O, \\*not\\* "quoted"'
    source = {"content": text, "mediaType": "text/markdown"}
    pages = {}
    for software in ("lemmy", "piefed"):
        peer.actor_type = "Service"
        sandbox = await sandbox_factory(software)
        activity = page(peer, sandbox, 1, source=source, published="2025-04-26T10:00:00Z")
        assert (await send(peer, sandbox, activity))[0] == 200
        number = sandbox.threads()[0]["number"]
        status, _, pages[software] = await get(f"{sandbox.base}/post/{number}")
        assert status == 200
        index = (await get(f"{sandbox.base}/"))[2]
        assert "A title" in index and software in index
    # lemmy-ui (markdown-it): CommonMark takes the escapes, ~2~ is a subscript,
    # typographic quotes.
    assert "consumed ~1,300 MWh of H<sub>2</sub>O, *not* “quoted”" in pages["lemmy"]
    # PieFed (markdown2, then its own passes): "\~" is no escape there and
    # shows; its post-pass reads ~2~ as a subscript; smarty-pants quotes.
    assert "consumed \\~1,300 MWh of H<sub>2</sub>O, *not* “quoted”" in pages["piefed"]
    assert "<script" not in pages["lemmy"] + pages["piefed"]
    # Each shows its date: Lemmy the published one, PieFed when it received it.
    assert "2025-04-26 10:00 UTC" in pages["lemmy"] and "received" not in pages["lemmy"]
    assert "(its published 2025-04-26 10:00 UTC is not kept)" in pages["piefed"]
    assert "PieFed hides it from logged-out visitors" in pages["piefed"]

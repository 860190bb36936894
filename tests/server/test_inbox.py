"""The inbox over real HTTP: a peer follows the bot; forgeries and junk are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from mirror.db.models import Follower
from mirror.db.session import write_transaction
from mirror.signatures import generate_private_key
from tests.peer import Peer
from tests.server.conftest import Service, wait_for

JSON = "application/activity+json"


def body_of(activity: dict) -> bytes:
    return json.dumps(activity).encode()


async def deliver(
    service: Service, peer: Peer, activity: dict, *, path: str = "/inbox", **kw
) -> tuple[int, str]:
    body = body_of(activity)
    return await service.post(path, body, peer.signed_post_headers(service.base + path, body, **kw))


def followers(service: Service) -> list[tuple[str, str]]:
    with service.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(Follower.actor_url, Follower.state))]


async def test_follow_is_stored_and_accepted_with_a_verifiable_signature(
    service: Service, peer: Peer
) -> None:
    follow = peer.follow(f"{service.base}/u/mirror")
    status, _ = await deliver(service, peer, follow)
    assert status == 202
    assert followers(service) == [(peer.actor_id, "active")]
    await wait_for(lambda: len(peer.received) == 1)
    accept = peer.received[0]
    assert accept.path == "/users/alice/inbox"
    assert accept.verified  # checked by httpsig, not by our own verifier
    assert accept.headers["Content-Type"] == JSON
    assert accept.headers["User-Agent"].startswith("fedimirror/")
    document = accept.json
    assert document["type"] == "Accept"
    assert document["actor"] == f"{service.base}/u/mirror"
    assert document["object"]["id"] == follow["id"]
    assert document["object"]["actor"] == peer.actor_id
    # The Accept is served at its id.
    status, _headers, body = await service.get(document["id"].removeprefix(service.base))
    assert status == 200 and json.loads(body)["id"] == document["id"]


async def test_personal_inbox_works_too(service: Service, peer: Peer) -> None:
    status, _ = await deliver(
        service, peer, peer.follow(f"{service.base}/u/mirror"), path="/u/mirror/inbox"
    )
    assert status == 202
    assert followers(service) == [(peer.actor_id, "active")]


async def test_duplicate_delivery_is_idempotent(service: Service, peer: Peer) -> None:
    follow = peer.follow(f"{service.base}/u/mirror")
    assert (await deliver(service, peer, follow))[0] == 202
    assert (await deliver(service, peer, follow))[0] == 202
    await wait_for(lambda: len(peer.received) >= 1)
    await service.federation.close()
    assert len(peer.received) == 1


async def test_undo_follow_removes_the_follower(service: Service, peer: Peer) -> None:
    follow = peer.follow(f"{service.base}/u/mirror")
    await deliver(service, peer, follow)
    undo = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.actor_id}#undo/1",
        "type": "Undo",
        "actor": peer.actor_id,
        "object": follow,
    }
    assert (await deliver(service, peer, undo))[0] == 202
    assert followers(service) == [(peer.actor_id, "removed")]


async def test_delete_of_a_gone_follower_verifies_with_the_cached_key(
    service: Service, peer: Peer
) -> None:
    await deliver(service, peer, peer.follow(f"{service.base}/u/mirror"))
    peer.actor_status = 410  # the account is gone: its key cannot be fetched any more
    delete = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.actor_id}#delete",
        "type": "Delete",
        "actor": peer.actor_id,
        "object": peer.actor_id,
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
    }
    # Force a refetch, as if the cache had expired.
    with write_transaction(service.engine) as conn:
        conn.execute(sa.text("UPDATE remote_actor SET fetched_at = '2000-01-01 00:00:00.000000'"))
    assert (await deliver(service, peer, delete))[0] == 202
    assert followers(service) == [(peer.actor_id, "removed")]


async def test_delete_of_an_unknown_gone_actor_is_accepted(service: Service, peer: Peer) -> None:
    peer.actor_status = 410
    delete = {
        "id": f"{peer.actor_id}#delete",
        "type": "Delete",
        "actor": peer.actor_id,
        "object": peer.actor_id,
    }
    assert (await deliver(service, peer, delete))[0] == 202


async def test_key_rotation_is_picked_up(service: Service, peer: Peer) -> None:
    await deliver(service, peer, peer.follow(f"{service.base}/u/mirror", 1))
    peer.key = generate_private_key()  # the peer rotates its key; we cached the old one
    status, _ = await deliver(service, peer, peer.follow(f"{service.base}/u/mirror", 2))
    assert status == 202


async def test_other_activities_are_accepted_and_ignored(service: Service, peer: Peer) -> None:
    like = {
        "id": f"{peer.actor_id}#likes/1",
        "type": "Like",
        "actor": peer.actor_id,
        "object": "https://x.example/1",
    }
    assert (await deliver(service, peer, like))[0] == 202
    assert followers(service) == []


async def test_forged_signature_is_401(service: Service, peer: Peer) -> None:
    status, _ = await deliver(
        service, peer, peer.follow(f"{service.base}/u/mirror"), key=generate_private_key()
    )
    assert status == 401
    assert followers(service) == []


async def test_key_owner_must_be_the_actor(service: Service, peer: Peer) -> None:
    follow = peer.follow(f"{service.base}/u/mirror")
    follow["actor"] = f"{peer.base}/users/mallory"
    status, _ = await deliver(service, peer, follow)
    assert status == 401


async def test_stale_date_is_401(service: Service, peer: Peer) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    status, _ = await deliver(service, peer, peer.follow(f"{service.base}/u/mirror"), now=old)
    assert status == 401


async def test_altered_body_is_401(service: Service, peer: Peer) -> None:
    body = body_of(peer.follow(f"{service.base}/u/mirror"))
    headers = peer.signed_post_headers(service.base + "/inbox", body)
    altered = body.replace(b"Follow", b"Block")
    assert (await service.post("/inbox", altered, headers))[0] == 401


async def test_missing_digest_is_401(service: Service, peer: Peer) -> None:
    body = body_of(peer.follow(f"{service.base}/u/mirror"))
    headers = peer.signed_post_headers(service.base + "/inbox", body)
    headers = {k: v for k, v in headers.items() if k.lower() != "digest"}
    assert (await service.post("/inbox", body, headers))[0] == 401


async def test_unsigned_is_401(service: Service, peer: Peer) -> None:
    body = body_of(peer.follow(f"{service.base}/u/mirror"))
    assert (await service.post("/inbox", body, {"Content-Type": JSON}))[0] == 401


async def test_oversized_body_is_413(service_factory, peer: Peer) -> None:
    service = await service_factory(federation={"inbox_max_bytes": 2048})
    activity = peer.follow(f"{service.base}/u/mirror")
    activity["padding"] = "x" * 4096
    assert (await deliver(service, peer, activity))[0] == 413


async def test_non_json_body_is_400(service: Service, peer: Peer) -> None:
    body = b"this is not json"
    headers = peer.signed_post_headers(service.base + "/inbox", body)
    assert (await service.post("/inbox", body, headers))[0] == 400


async def test_json_that_is_not_an_activity_is_400(service: Service, peer: Peer) -> None:
    assert (await deliver(service, peer, {"hello": "world"}))[0] == 400


async def test_wrong_content_type_is_415(service: Service, peer: Peer) -> None:
    body = body_of(peer.follow(f"{service.base}/u/mirror"))
    headers = peer.signed_post_headers(service.base + "/inbox", body)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = "text/plain"
    assert (await service.post("/inbox", body, headers))[0] == 415


async def test_unknown_local_inbox_is_404(service: Service, peer: Peer) -> None:
    status, _ = await deliver(
        service, peer, peer.follow(f"{service.base}/u/nobody"), path="/u/nobody/inbox"
    )
    assert status == 404


async def test_rfc9421_signed_follow_is_accepted(service: Service, peer: Peer) -> None:
    from tests.peer import rfc9421_headers

    body = body_of(peer.follow(f"{service.base}/u/mirror"))
    headers = rfc9421_headers(peer, service.base + "/inbox", body)
    assert (await service.post("/inbox", body, headers))[0] == 202
    assert followers(service) == [(peer.actor_id, "active")]
    tampered = body.replace(b"Follow", b"Block")
    assert (await service.post("/inbox", tampered, headers))[0] == 401

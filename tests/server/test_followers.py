"""Operator actions on followers, and profile changes announced as Update."""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa

from mirror.db.models import Follower
from mirror.db.session import write_transaction
from mirror.federation.actors import get_actor
from mirror.federation.follows import list_followers, reject_follower, set_state
from mirror.federation.profile import announce_profile
from tests.peer import Peer
from tests.server.conftest import Service, wait_for
from tests.server.test_inbox import deliver


async def follow(service: Service, peer: Peer) -> None:
    assert (await deliver(service, peer, peer.follow(f"{service.base}/u/mirror")))[0] == 202
    await wait_for(lambda: any(r.json["type"] == "Accept" for r in peer.received))


def bot(service: Service):  # type: ignore[no-untyped-def]
    with service.engine.connect() as conn:
        return get_actor(conn, "mirror")


async def test_removed_follower_is_told_with_a_reject(service: Service, peer: Peer) -> None:
    await follow(service, peer)
    with write_transaction(service.engine) as conn:
        now = service.federation.clock.now()
        previous = set_state(conn, "mirror", peer.actor_id, "removed", now)
        assert previous is not None and previous.state == "active"
        assert reject_follower(conn, service.federation, bot(service), previous)
    service.federation.wake()
    await wait_for(lambda: any(r.json["type"] == "Reject" for r in peer.received))
    reject = peer.received[-1]
    assert reject.verified and reject.json["type"] == "Reject"
    assert reject.json["object"]["actor"] == peer.actor_id
    with service.engine.connect() as conn:
        assert list_followers(conn, "mirror") == []


async def test_blocked_actor_cannot_follow_again(service: Service, peer: Peer) -> None:
    with write_transaction(service.engine) as conn:
        set_state(conn, "mirror", peer.actor_id, "blocked", service.federation.clock.now())
    assert (await deliver(service, peer, peer.follow(f"{service.base}/u/mirror", 7)))[0] == 202
    with service.engine.connect() as conn:
        states = conn.execute(sa.select(Follower.state)).scalars().all()
    assert states == ["blocked"]
    await service.federation.close()
    assert peer.received == []


async def test_changed_profile_is_sent_to_followers_as_update(service: Service, peer: Peer) -> None:
    federation = service.federation
    assert await announce_profile(federation, bot(service)) == 0  # first time: nothing to update
    await follow(service, peer)
    assert await announce_profile(federation, bot(service)) == 0  # unchanged
    federation.settings = replace(
        federation.settings,
        instance=replace(federation.settings.instance, display_name="A renamed mirror"),
    )
    assert await announce_profile(federation, bot(service)) == 1
    await wait_for(lambda: any(r.json["type"] == "Update" for r in peer.received))
    update = next(r for r in peer.received if r.json["type"] == "Update")
    assert update.verified
    assert update.path == "/inbox"  # the follower's shared inbox
    assert update.json["object"]["name"] == "A renamed mirror"
    assert update.json["object"]["id"] == f"{service.base}/u/mirror"

"""Publishing into a hosted community over loopback: the test peer follows our Group and
receives its Announces, signed by the Group's key and verified with httpsig; a server that
subscribes later gets the whole archive once; Undo stops it; edits and retractions are
announced too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from mirror.clock import ShiftedClock
from mirror.db.models import Activity, Delivery, DeliveryPace, HostedBacklog
from mirror.db.session import write_transaction
from mirror.federation import backlog
from mirror.federation.communities import host
from mirror.inspection import build_document
from mirror.publish.backfill import PUBLICATIONS
from mirror.publish.refresh import queue_updates
from mirror.publish.retract import delete_publications
from mirror.publish.start import start_backfill
from mirror.publish.target import TargetError
from tests.peer import Peer, Received
from tests.publish.test_backfill import mirror_service, wait_for_run
from tests.server.conftest import Service, wait_for

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def busiest_source(service: Service) -> tuple[str, int, int]:
    """The reconstructed community with the most comments: (handle, posts, comments)."""
    document = build_document(service.engine)
    handles = {c["id"]: c.get("handle") for c in document["communities"]}
    posts: dict[str, set[str]] = {}
    # An item with neither title nor body is left out of every plan.
    for post in document["posts"]:
        handle = handles.get(post.get("community_id") or "")
        if handle and (post.get("title") or post.get("body")):
            posts.setdefault(handle, set()).add(post["id"])
    comments = {
        h: sum(1 for c in document["comments"] if c.get("post") in ids and c.get("body"))
        for h, ids in posts.items()
    }
    best = max(posts, key=lambda h: (comments[h], len(posts[h])))
    assert comments[best] > 0, "the corpus has no community with comments"
    return best, len(posts[best]), comments[best]


async def hosted_corpus(
    service_factory: Callable[..., Any], **sections: Any
) -> tuple[Service, str, int, int]:
    """A service holding the corpus, its busiest community hosted as `archive`."""
    service = await mirror_service(
        lambda **kw: service_factory(**kw, **sections), rate_per_minute=0.0
    )
    source, posts, comments = busiest_source(service)
    with write_transaction(service.engine) as conn:
        host(
            conn,
            source=source,
            name="archive",
            master_key=service.master_key,
            now=service.federation.clock.now(),
            bot_username="mirror",
        )
    return service, "archive", posts, comments


async def subscribe(
    service: Service, peer: Peer, username: str | None = None, number: int = 1
) -> dict[str, Any]:
    """Follow the Group as Lemmy does (WebFinger, Group, Follow); wait for the Accept."""
    group = await peer.discover_group(service.base, "archive")
    follow = peer.follow(group["id"], number, username=username)
    assert await peer.send(group["endpoints"]["sharedInbox"], follow) == 202
    await wait_for(
        lambda: any(
            r.json["type"] == "Accept" and r.json["object"]["id"] == follow["id"]
            for r in peer.received
        )
    )
    return follow


def announces(peer: Peer, kind: str = "Create") -> list[Received]:
    return [
        r
        for r in peer.received
        if r.json["type"] == "Announce" and r.json["object"]["type"] == kind
    ]


def check_thread_order(service: Service, received: list[Received]) -> None:
    """Signed by the Group, the Creates by their authors, each parent before its replies."""
    group = f"{service.base}/c/archive"
    seen: set[str] = set()
    for r in received:
        assert r.verified and r.path == "/inbox", r.json["id"]  # httpsig, the shared inbox
        assert f'keyId="{group}#main-key"' in r.headers["Signature"]
        announce = r.json
        assert announce["actor"] == group and announce["to"] == [PUBLIC]
        assert announce["cc"] == [f"{group}/followers"]
        create = announce["object"]
        obj = create["object"]
        assert create["actor"] == obj["attributedTo"] == f"{service.base}/u/mirror"
        assert obj["audience"] == group and group in obj["to"]
        if obj["type"] == "Page":
            assert obj["replies"] == f"{obj['id']}/replies"
        else:
            assert obj["inReplyTo"] in seen, f"{obj['id']} came before its parent"
        seen.add(obj["id"])


def _outstanding(service: Service) -> int:
    with service.engine.connect() as conn:
        return int(
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(Delivery.state.in_(("pending", "parked")))
            )
            or 0
        )


async def wait_announced(
    service: Service, peer: Peer, count: int, kind: str = "Create"
) -> list[Received]:
    """The Announces of ``kind`` the peer got once the queue is drained: exactly ``count``."""
    await wait_for(
        lambda: len(announces(peer, kind)) >= count and _outstanding(service) == 0, timeout=60
    )
    found = announces(peer, kind)
    assert len(found) == count, (len(found), count)
    return found


async def test_followers_receive_every_post_and_comment_announced_parents_first(
    service_factory: Callable[..., Any], peer: Peer
) -> None:
    service, name, posts, comments = await hosted_corpus(service_factory)
    await subscribe(service, peer)
    handle = f"!{name}@{service.base.removeprefix('http://')}"
    target, report = await start_backfill(service.federation, to=handle)
    assert target.hosted == name and report.planned["followers_only"] == 0
    assert report.planned == {"posts": posts, "comments": comments, "followers_only": 0}
    done = await wait_for_run(service, report.run_id)
    # Stored by definition: the Group holds what it announces.
    assert done["publications"]["confirmed"] == posts + comments == done["total"]
    received = await wait_announced(service, peer, posts + comments)
    check_thread_order(service, received)

    # The outbox: the newest Announce{Create{Page}} inline, unpaged.
    _, _, body = await service.get(f"/c/{name}/outbox")
    outbox = json.loads(body)
    assert outbox["totalItems"] == posts and "first" not in outbox
    assert len(outbox["orderedItems"]) == min(posts, 50)
    assert {a["object"]["object"]["type"] for a in outbox["orderedItems"]} == {"Page"}
    assert all(a["actor"] == f"{service.base}/c/{name}" for a in outbox["orderedItems"])
    # A post's replies: its comments, whole, parents first.
    with_comments = {
        r.json["object"]["object"]["inReplyTo"]
        for r in received
        if "inReplyTo" in r.json["object"]["object"]
    }
    page = next(
        r.json["object"]["object"]
        for r in received
        if r.json["object"]["object"]["type"] == "Page"
        and r.json["object"]["object"]["id"] in with_comments
    )
    status, _, body = await service.get(page["replies"].removeprefix(service.base))
    replies = json.loads(body)
    assert status == 200 and replies["type"] == "OrderedCollection"
    ids = {page["id"]}
    for note in replies["orderedItems"]:
        assert note["type"] == "Note" and note["inReplyTo"] in ids
        ids.add(note["id"])
    assert replies["totalItems"] == len(replies["orderedItems"]) > 0

    # A second run sends nothing.
    seen = len(peer.received)
    _, again = await start_backfill(service.federation, to=f"{service.base}/c/{name}")
    assert again.queued == again.updated == again.requeued == 0
    await wait_for_run(service, again.run_id)
    assert len(peer.received) == seen


async def test_a_server_subscribing_later_gets_the_whole_backlog_once(
    service_factory: Callable[..., Any], peer: Peer
) -> None:
    clock = ShiftedClock()
    service, name, posts, comments = await hosted_corpus(
        service_factory, clock=clock, hosted_defaults={"backlog_rate": 0.0}
    )
    await subscribe(service, peer)
    _, report = await start_backfill(
        service.federation, to=f"!{name}@{service.federation.urls.host}"
    )
    await wait_for_run(service, report.run_id)
    await wait_announced(service, peer, posts + comments)

    clock.advance(timedelta(hours=1))  # an hour later, another server subscribes
    later = Peer(username="carol", others=("dave",), clock=clock)
    await later.start()
    try:
        await subscribe(service, later)
        received = await wait_announced(service, later, posts + comments)
        check_thread_order(service, received)
        # The Accept went first: Lemmy takes a community's Announces once it follows.
        kinds = [r.json["type"] for r in later.received]
        assert kinds[0] == "Accept"
        # Every backlog Announce is the one the first server got (same ids, same JSON).
        first = {r.json["id"]: r.json for r in announces(peer)}
        assert all(first[r.json["id"]] == r.json for r in received)

        # A second follower on the same server costs nothing.
        with service.engine.connect() as conn:
            before = conn.scalar(sa.select(sa.func.count()).select_from(Delivery))
        await subscribe(service, later, username="dave")
        with service.engine.connect() as conn:
            after = conn.scalar(sa.select(sa.func.count()).select_from(Delivery))
            status = {s["host"]: s for s in backlog.status(conn, name)}
        assert after == before + 1  # its Accept only
        assert len(announces(later)) == posts + comments
        later_host = later.base.removeprefix("http://")
        assert status[later_host]["followers"] == 2
        assert status[later_host]["backlog"]["items"] == posts + comments
        await wait_for(
            lambda: _delivered(service, name, later_host) == posts + comments, timeout=10
        )
        first_host = peer.base.removeprefix("http://")
        # The first server followed before anything was published: an empty backlog.
        assert status[first_host]["backlog"]["items"] == 0
    finally:
        await later.close()


def _delivered(service: Service, name: str, host: str) -> int:
    with service.engine.connect() as conn:
        status = {s["host"]: s for s in backlog.status(conn, name)}
    return status[host]["backlog"]["delivered"]


async def test_the_backlog_keeps_its_pace_and_undo_stops_it(
    service_factory: Callable[..., Any], peer: Peer
) -> None:
    service, name, posts, _ = await hosted_corpus(
        service_factory, hosted_defaults={"backlog_rate": 1.0}
    )
    assert posts >= 2, "needs two posts to see the pace"
    _, report = await start_backfill(
        service.federation, to=f"!{name}@{service.federation.urls.host}"
    )
    await wait_for_run(service, report.run_id)  # no followers yet: nothing to send
    follow = await subscribe(service, peer)
    # One post a minute: the first post and its comments go, the second waits its minute.
    await wait_for(lambda: len(announces(peer)) >= 1)
    with service.engine.connect() as conn:
        (row,) = conn.execute(sa.select(HostedBacklog)).all()
        lane = conn.execute(
            sa.select(DeliveryPace).where(DeliveryPace.id == backlog.pace_id(row.id))
        ).one()
    assert lane.interval_s == 60.0 and lane.host == peer.base.removeprefix("http://")
    # The lane's next slot is a minute after the first post: the rest wait for it.
    assert lane.next_at > service.federation.clock.now() + timedelta(seconds=50)
    pages = [r for r in announces(peer) if r.json["object"]["object"]["type"] == "Page"]
    assert len(pages) == 1 and _outstanding(service) > 0

    # Undo: what was not sent is cancelled, and nothing more arrives.
    assert await peer.send(f"{service.base}/inbox", peer.undo(follow)) == 202
    with service.engine.connect() as conn:
        (server,) = backlog.status(conn, name)
    assert server["followers"] == 0 and server["backlog"]["stopped_at"] is not None
    assert server["backlog"]["pending"] == 0 and server["backlog"]["cancelled"] > 0
    # An edit now is announced to no one.
    with write_transaction(service.engine) as conn:
        conn.exec_driver_sql("UPDATE post SET title = title || ' (fixed)' WHERE title IS NOT NULL")
    seen = len(peer.received)
    _, edit = await start_backfill(service.federation, to=f"!{name}@{service.federation.urls.host}")
    assert edit.updated >= 1
    await wait_for_run(service, edit.run_id)
    assert len(peer.received) == seen

    # Following again resumes it: what was cancelled, and the edits made meanwhile.
    await subscribe(service, peer, number=2)
    with service.engine.connect() as conn:
        (server,) = backlog.status(conn, name)
    assert server["backlog"]["stopped_at"] is None and server["backlog"]["pending"] > 0


async def test_updates_and_deletes_are_announced(
    service_factory: Callable[..., Any], peer: Peer
) -> None:
    service, name, posts, comments = await hosted_corpus(service_factory)
    await subscribe(service, peer)
    to = f"!{name}@{service.federation.urls.host}"
    _, report = await start_backfill(service.federation, to=to)
    await wait_for_run(service, report.run_id)
    await wait_announced(service, peer, posts + comments)

    with write_transaction(service.engine) as conn:
        conn.exec_driver_sql("UPDATE post SET title = title || ' (fixed)' WHERE title IS NOT NULL")
    # What `mirror ingest` does after a changed reconstruction: Updates to every target.
    (edit,) = await asyncio.to_thread(queue_updates, service.federation)
    assert edit.target == f"{service.base}/c/{name}"
    assert edit.updated >= 1 and edit.queued == 0
    service.federation.wake()
    updates = await wait_announced(service, peer, edit.updated, "Update")
    for r in updates:
        assert r.verified and r.json["actor"] == f"{service.base}/c/{name}"
        update = r.json["object"]
        assert update["actor"] == f"{service.base}/u/mirror"
        assert update["object"]["type"] == "Page" and "updated" in update["object"]
    # (Lemmy cuts titles at 200 characters: a long one does not show the change.)
    assert any(r.json["object"]["object"]["name"].endswith("(fixed)") for r in updates)

    # `mirror retract` of a post: the author's Delete, announced by the Group.
    with service.engine.connect() as conn:
        post = conn.execute(
            sa.select(PUBLICATIONS.c.id, PUBLICATIONS.c.item_id).where(
                PUBLICATIONS.c.kind == "post"
            )
        ).first()
    with write_transaction(service.engine) as conn:
        count = delete_publications(
            conn,
            urls=service.federation.urls,
            now=service.federation.clock.now(),
            where=PUBLICATIONS.c.item_id == post.item_id,
            inbox_for={},
        )
    assert count == 1
    service.federation.wake()
    (deleted,) = await wait_announced(service, peer, 1, "Delete")
    url = service.federation.urls.object(post.id)
    assert deleted.verified and deleted.json["object"]["object"] == url
    assert deleted.json["object"]["actor"] == f"{service.base}/u/mirror"
    assert "summary" not in deleted.json["object"]  # Lemmy reads a summary as a removal
    # The deleted post leaves the outbox, and a later subscriber's backlog.
    _, _, body = await service.get(f"/c/{name}/outbox")
    assert url not in {a["object"]["object"]["id"] for a in json.loads(body)["orderedItems"]}
    with service.engine.connect() as conn:
        order = [u for u, _ in backlog.archive_order(conn, service.federation.urls, name)]
    assert url not in order and len(order) < posts + comments


async def test_a_hosted_target_takes_only_its_own_source(
    service_factory: Callable[..., Any],
) -> None:
    service, name, _, _ = await hosted_corpus(service_factory)
    ours = service.federation.urls.host
    with pytest.raises(TargetError, match="takes only that community's posts"):
        await start_backfill(service.federation, to=f"!{name}@{ours}", source="unknown")
    with pytest.raises(TargetError, match="no community called 'nothere' is hosted here"):
        await start_backfill(service.federation, to=f"!nothere@{ours}")
    # Nothing was sent to our own inbox: the Group needs no delivery.
    _, report = await start_backfill(service.federation, to=f"!{name}@{ours}", limit=1)
    with service.engine.connect() as conn:
        inboxes = set(conn.scalars(sa.select(Delivery.inbox)))
        types = set(conn.scalars(sa.select(Activity.type).where(Activity.run_id == report.run_id)))
    assert inboxes == set() and types == {"Create", "Announce"}


@pytest.mark.postgres
async def test_hosted_publishing_and_a_backlog_on_postgresql(
    pg_url: str, service_factory: Callable[..., Any], peer: Peer
) -> None:
    # pg_url first: fixtures end in reverse, so the database outlives the service.
    service, name, posts, comments = await hosted_corpus(
        service_factory, database={"url": pg_url}, hosted_defaults={"backlog_rate": 0.0}
    )
    _, report = await start_backfill(
        service.federation, to=f"!{name}@{service.federation.urls.host}"
    )
    await wait_for_run(service, report.run_id)
    await subscribe(service, peer)  # after the run: all of it comes as the backlog
    check_thread_order(service, await wait_announced(service, peer, posts + comments))


async def test_a_piefed_servers_backlog_honours_its_new_account_limit(
    service_factory: Callable[..., Any],
) -> None:
    """PieFed runs can_create_post on announced posts: a young account's fourth post
    would be dropped. Its backlog sends the bot's first three posts (and their comments)
    and the rest once the bot is a day old; comments wait behind their posts."""
    clock = ShiftedClock()
    service, name, posts, comments = await hosted_corpus(
        service_factory, clock=clock, hosted_defaults={"backlog_rate": 0.0}
    )
    assert posts > 3, "needs more posts than PieFed takes from a young account"
    _, report = await start_backfill(
        service.federation, to=f"!{name}@{service.federation.urls.host}"
    )
    await wait_for_run(service, report.run_id)
    piefed = Peer(username="reader", software="piefed", clock=clock)
    await piefed.start()
    try:
        await subscribe(service, piefed)

        def pages() -> list[dict[str, Any]]:
            found = [r.json["object"]["object"] for r in announces(piefed)]
            return [o for o in found if o["type"] == "Page"]

        await wait_for(lambda: len(pages()) == 3, timeout=30)
        replies = 0
        for page in pages():
            _, _, body = await service.get(page["replies"].removeprefix(service.base))
            replies += json.loads(body)["totalItems"]
        # The three posts and their comments; the other posts wait for tomorrow.
        await wait_for(lambda: len(announces(piefed)) == 3 + replies, timeout=30)
        host = piefed.base.removeprefix("http://")
        with service.engine.connect() as conn:
            tomorrow = conn.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(
                    Delivery.host == host,
                    Delivery.state == "pending",
                    Delivery.next_attempt_at > clock.now() + timedelta(hours=23),
                )
            )
        assert tomorrow == posts - 3
        with service.engine.connect() as conn:
            (server,) = [s for s in backlog.status(conn, name) if s["followers"]]
        assert server["backlog"]["software"] == "piefed"
        assert server["backlog"]["last_due_at"] > clock.now().isoformat()

        clock.advance(timedelta(hours=24, minutes=16))
        service.federation.wake()
        received = await wait_announced(service, piefed, posts + comments)
        check_thread_order(service, received)
    finally:
        await piefed.close()


async def test_live_announces_to_a_piefed_follower_honour_its_new_account_limit(
    service_factory: Callable[..., Any], peer: Peer
) -> None:
    """A PieFed server that follows before anything is published gets the young bot's
    first three posts at once and the rest when the bot is a day old, while a Lemmy
    follower gets everything now: PieFed drops the fourth (answering 200)."""
    clock = ShiftedClock()
    service, name, posts, comments = await hosted_corpus(service_factory, clock=clock)
    assert posts > 3, "needs more posts than PieFed takes from a young account"
    piefed = Peer(username="reader", software="piefed", clock=clock)
    await piefed.start()
    try:
        await subscribe(service, piefed)
        await subscribe(service, peer)
        await start_backfill(service.federation, to=f"!{name}@{service.federation.urls.host}")
        # (The run stays open while PieFed's share waits: its deliveries are not done.)
        await wait_for(lambda: len(announces(peer)) >= posts + comments, timeout=60)
        check_thread_order(service, announces(peer))
        assert len(announces(peer)) == posts + comments

        def pages() -> list[dict[str, Any]]:
            found = [r.json["object"]["object"] for r in announces(piefed)]
            return [o for o in found if o["type"] == "Page"]

        await wait_for(lambda: len(pages()) == 3, timeout=30)
        host = piefed.base.removeprefix("http://")
        with service.engine.connect() as conn:
            tomorrow = conn.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(
                    Delivery.host == host,
                    Delivery.state == "pending",
                    Delivery.next_attempt_at > clock.now() + timedelta(hours=23),
                )
            )
        assert tomorrow == posts - 3
        # The held posts' comments wait behind them: every comment there so far
        # came after its parent.
        check_thread_order(service, announces(piefed))

        clock.advance(timedelta(hours=24, minutes=16))
        service.federation.wake()
        check_thread_order(service, await wait_announced(service, piefed, posts + comments))
    finally:
        await piefed.close()

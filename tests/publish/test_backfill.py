"""A full backfill of the five seeds through the service into the sandbox, over loopback.

The sandbox checks what it receives the way Lemmy does and verifies
signatures with httpsig; its stored threads must equal the reconstruction
(every post, every comment, every parent link) up to the documented
adjustments, in both attribution modes, and a second backfill sends nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from mirror.clock import FrozenClock, ShiftedClock
from mirror.db.models import Delivery
from mirror.db.session import write_transaction
from mirror.delivery.enqueue import TooLarge
from mirror.errors import MirrorError
from mirror.federation.actors import get_actor, puppet_username
from mirror.ingest.files import ingest_paths
from mirror.inspection import build_document
from mirror.publish import publications, render, runs
from mirror.publish.backfill import OBJECTS, PUBLICATIONS
from mirror.publish.plan import MAX_DEPTH, NO_TEXT, Options, build_plan, has_text
from mirror.publish.prepare import FOLLOWERS_ONLY, object_id_for
from mirror.publish.start import start_backfill
from mirror.publish.target import TargetError
from mirror.sandbox.app import Instance
from tests.conftest import CAPTURED, SEED, corpus, needs_seeds
from tests.peer import free_port
from tests.server.conftest import Service


async def mirror_service(service_factory: Callable[..., Any], **backfill: Any) -> Service:
    service: Service = (
        await service_factory(backfill=backfill) if backfill else await service_factory()
    )
    await asyncio.to_thread(
        ingest_paths,
        service.engine,
        corpus(),
        clock=FrozenClock(CAPTURED),
        captured_at=CAPTURED,
    )
    return service


async def wait_for_run(service: Service, run_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with service.engine.connect() as conn:
            report = runs.progress(conn, run_id, service.federation.clock.now())
        if report["finished"]:
            return report
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} did not finish: {report}")
        await asyncio.sleep(0.05)


async def settled(service: Service, run_id: int, timeout: float = 60) -> dict[str, int]:
    """The run's item counts once nothing moves until a later time (only waits left)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with service.engine.connect() as conn:
            counts = publications.counts(conn, run_id=run_id)
            due_now = conn.scalar(
                sa.select(sa.func.count())
                .select_from(PUBLICATIONS)
                .where(
                    PUBLICATIONS.c.run_id == run_id,
                    sa.or_(
                        PUBLICATIONS.c.state.in_(("queued", "sent")),
                        sa.and_(
                            PUBLICATIONS.c.state == "waiting",
                            PUBLICATIONS.c.due_at <= service.federation.clock.now(),
                        ),
                    ),
                )
            )
        if not due_now:
            return counts
        assert asyncio.get_running_loop().time() < deadline, counts
        await asyncio.sleep(0.1)


async def wait_deleted(sandbox: Instance, object_id: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not sandbox.objects[object_id].deleted:
        assert asyncio.get_running_loop().time() < deadline, sandbox.refused
        await asyncio.sleep(0.05)


def handle(instance: Instance) -> str:
    return f"sandbox@{instance.host}"


@pytest.mark.parametrize("software", ["lemmy", "piefed"])
@pytest.mark.parametrize("attribution", ["bot", "puppets"])
async def test_backfill_of_the_seeds_equals_the_reconstruction(
    service_factory: Callable[..., Any],
    sandbox_factory: Callable[..., Any],
    attribution: str,
    software: str,
) -> None:
    # PieFed's new-account limit holds posts for a day: the clock is moved past it.
    clock = ShiftedClock()

    async def factory(**sections: Any) -> Service:
        return await service_factory(clock=clock, **sections)

    service = await mirror_service(factory, attribution=attribution, rate_per_minute=0.0)
    sandbox = await sandbox_factory(software, clock=clock)
    target, report = await start_backfill(service.federation, to=handle(sandbox))
    assert target.inbox == f"{sandbox.base}/c/sandbox/inbox" or target.inbox.endswith("/inbox")
    if software == "piefed":
        await settled(service, report.run_id)
        clock.advance(timedelta(hours=24, minutes=16))
    done = await wait_for_run(service, report.run_id, timeout=120)
    assert sandbox.refused == [], sandbox.refused
    assert done["by_state"]["failed"] == 0 and done["by_state"]["parked"] == 0

    urls = service.federation.urls
    document = build_document(service.engine)
    plan = build_plan(document, Options())
    # Everything but what has neither title nor body (a bare listing entry).
    empty = {i["id"] for i in [*document["posts"], *document["comments"]] if not has_text(i)}
    assert report.planned["posts"] == len(document["posts"]) - len(empty) > 0
    assert report.left_out.get(NO_TEXT, 0) == len(empty)

    def url(item_id: str) -> str:
        return urls.object(object_id_for(item_id, target.id))

    expected = {}
    for item in plan.items:
        if item.kind == "post":
            expected[url(item.id)] = ("post", None)
        elif item.kind == "comment":
            expected[url(item.id)] = ("comment", url(item.reply_to))  # type: ignore[arg-type]
    received = {}
    for thread in sandbox.threads():
        received[thread["id"]] = ("post", None)
        for comment in thread["comments"]:
            received[comment["id"]] = ("comment", comment["inReplyTo"])
    assert received == expected

    # Every parent link the reconstruction knows survives, except at the depth cap.
    by_id = {c["id"]: c for c in document["comments"]}
    depth = {i.id: i.depth for i in plan.items if i.kind == "comment"}
    for comment in document["comments"]:
        if comment["post"] is None or comment["id"] in empty:
            continue
        parent = comment["parent"]
        want = url(parent) if parent in by_id and parent not in empty else url(comment["post"])
        if depth[comment["id"]] < MAX_DEPTH:
            assert received[url(comment["id"])][1] == want

    # Authors: the bot, or each author's puppet (unknown authors fall back to the bot).
    authors = {i.id: i.data.get("author") for i in plan.items}
    for thread in sandbox.threads():
        for obj in [thread, *thread["comments"]]:
            item_id = next(k for k in authors if url(k) == obj["id"])
            author = authors[item_id]
            if attribution == "puppets" and author:
                assert obj["attributedTo"] == urls.actor(puppet_username(author))
            else:
                assert obj["attributedTo"] == urls.actor("mirror")
    # Each object carries its own item's body (the plan held none: they are
    # read as the backfill builds), then the attribution.
    bodies = {url(i["id"]): i["body"] for i in [*document["posts"], *document["comments"]]}
    for thread in sandbox.threads():
        for obj in [thread, *thread["comments"]]:
            assert obj["content"].startswith(render.to_html(bodies[obj["id"]] or "")), obj["id"]

    if attribution == "puppets":
        author = next(a for a in authors.values() if a)
        with service.engine.connect() as conn:
            puppet = get_actor(conn, puppet_username(author))
        assert puppet is not None and puppet.kind == "puppet"
        # Its profile says it is a mirror and links the original author.
        user, _, host = author.partition("@")
        status, _, body = await service.get(f"/u/{puppet.username}")
        document = json.loads(body)
        assert status == 200 and document["type"] == "Service"
        assert "automated mirror" in document["summary"]
        assert f'href="https://{host}/u/{user}"' in document["summary"]
        status, _, page = await service.get(f"/u/{puppet.username}", accept="text/html")
        assert f'href="https://{host}/u/{user}"' in page.decode()

    # Bodies arrive with their attribution, and the served object is what was sent.
    first = sandbox.threads()[0]
    assert "Mirrored from an archive" in first["content"]
    status, headers, _ = await service.get(first["id"].removeprefix(service.base))
    assert status == 200 and headers["Content-Type"] == "application/activity+json"

    # Running the same backfill again sends nothing.
    seen = len(sandbox.seen_activities)
    _, again = await start_backfill(service.federation, to=handle(sandbox))
    assert again.queued == again.updated == again.requeued == 0
    assert again.unchanged == len([i for i in plan.items if i.kind != "orphan"]) + len(
        [i for i in plan.items if i.kind == "orphan"]
    )
    # Nothing new: no empty run is recorded.
    assert again.run_id is None
    with service.engine.connect() as conn:
        assert [r["id"] for r in runs.list_runs(conn, service.federation.clock.now())] == [
            report.run_id
        ]
    await asyncio.sleep(0.3)
    assert len(sandbox.seen_activities) == seen


async def test_lemmy_1_0_gets_pages_and_0_19_gets_notes(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirror_service(service_factory, rate_per_minute=0.0)
    new = await sandbox_factory(version="1.0.0")
    old = await sandbox_factory(version="0.19.9")
    for sandbox, kind in ((new, "Page"), (old, "Note")):
        target, report = await start_backfill(service.federation, to=handle(sandbox), limit=2)
        assert target.post_type("auto") == kind
        await wait_for_run(service, report.run_id)
        assert sandbox.refused == []
        assert {t["type"] for t in sandbox.threads()} == {kind}
    assert new.threads()[0]["id"] != old.threads()[0]["id"]  # one object per target


async def test_dry_run_changes_nothing_and_shows_the_first_activities(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirror_service(service_factory)
    sandbox = await sandbox_factory()
    target, report = await start_backfill(service.federation, to=handle(sandbox), dry_run=True)
    assert report.run_id is None and len(report.first) == 3
    create = report.first[0]
    assert create["type"] == "Create" and create["object"]["audience"] == target.id
    assert "https://www.w3.org/ns/activitystreams#Public" in create["object"]["to"]
    with service.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0


async def test_refuses_a_community_where_only_moderators_post(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirror_service(service_factory)
    sandbox = await sandbox_factory(posting_restricted_to_mods=True)
    with pytest.raises(TargetError, match="postingRestrictedToMods"):
        await start_backfill(service.federation, to=handle(sandbox))
    blocking = await sandbox_factory(blocked_domains={"127.0.0.1"})
    with pytest.raises(TargetError, match="blocks our instance"):
        await start_backfill(service.federation, to=handle(blocking))
    with pytest.raises(TargetError, match="not a community"):
        await start_backfill(service.federation, to="just some words")
    with pytest.raises(TargetError, match="cannot reach"):
        await start_backfill(service.federation, to=f"nobody@127.0.0.1:{free_port()}")


async def test_paced_run_is_scheduled_and_can_be_paused_resumed_and_cancelled(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirror_service(service_factory)
    sandbox = await sandbox_factory()
    target, report = await start_backfill(service.federation, to=handle(sandbox), rate=1.0)
    assert target.sandbox  # its NodeInfo says so; --rate paces it all the same
    now = service.federation.clock.now()
    with write_transaction(service.engine) as conn:
        assert runs.pause(conn, report.run_id, now) > 0
    with service.engine.connect() as conn:
        listed = runs.list_runs(conn, now)
    assert listed[0]["state"] == "paused" and listed[0]["by_state"]["parked"] > 0
    with pytest.raises(MirrorError, match=f"^run {report.run_id} is paused already$"):
        with write_transaction(service.engine) as conn:
            runs.pause(conn, report.run_id, now)
    with write_transaction(service.engine) as conn:
        assert runs.resume(conn, report.run_id, now) > 0
    with pytest.raises(MirrorError, match=f"^run {report.run_id} is active already$"):
        with write_transaction(service.engine) as conn:
            runs.resume(conn, report.run_id, now)
    # Paced: only the first post (and its comments) is due; the rest wait their minute.
    await asyncio.sleep(1.0)
    assert len([t for t in sandbox.threads()]) == 1
    with write_transaction(service.engine) as conn:
        assert runs.cancel(conn, report.run_id, now) > 0
    done = await wait_for_run(service, report.run_id)
    assert done["by_state"]["cancelled"] > 0
    with pytest.raises(
        MirrorError, match="is cancelled: only active or planning runs can be paused"
    ):
        with write_transaction(service.engine) as conn:
            runs.pause(conn, report.run_id, now)


async def test_retract_sends_deletes_and_objects_answer_410(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    from mirror.publish.backfill import PUBLICATIONS
    from mirror.publish.retract import delete_publications

    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory()
    target, report = await start_backfill(service.federation, to=handle(sandbox), limit=1)
    await wait_for_run(service, report.run_id)
    post = sandbox.threads()[0]
    with write_transaction(service.engine) as conn:
        count = delete_publications(
            conn,
            urls=service.federation.urls,
            now=service.federation.clock.now(),
            where=PUBLICATIONS.c.run_id == report.run_id,
            inbox_for={target.id: target.inbox},
        )
    assert count >= 1
    service.federation.wake()
    await wait_deleted(sandbox, post["id"])
    async with aiohttp.ClientSession() as session:
        async with session.get(post["id"], headers={"Accept": "application/activity+json"}) as r:
            assert r.status == 410
            assert (await r.json(content_type=None))["type"] == "Tombstone"


async def test_an_excluded_author_gets_deletes_and_a_changed_item_an_update(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    from dataclasses import replace

    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory()
    target, report = await start_backfill(service.federation, to=handle(sandbox), limit=3)
    await wait_for_run(service, report.run_id)
    thread = next(t for t in sandbox.threads() if t["comments"])
    victim = thread["comments"][0]
    document = build_document(service.engine)
    author = next(
        c["author"]
        for c in document["comments"]
        if service.federation.urls.object(object_id_for(c["id"], target.id)) == victim["id"]
    )
    assert author
    settings = service.federation.settings
    service.federation.settings = replace(
        settings, backfill=replace(settings.backfill, exclude_authors=[author])
    )
    _, second = await start_backfill(service.federation, to=handle(sandbox), limit=3)
    assert second.deleted >= 1
    await wait_for_run(service, second.run_id)
    await wait_deleted(sandbox, victim["id"])

    # A changed reconstruction (here: the title of every post) sends Updates.
    with write_transaction(service.engine) as conn:
        conn.exec_driver_sql("UPDATE post SET title = title || ' (fixed)' WHERE title IS NOT NULL")
    _, third = await start_backfill(service.federation, to=handle(sandbox), limit=3)
    assert third.updated >= 1 and third.queued == 0
    await wait_for_run(service, third.run_id)
    titles = [t["name"] for t in sandbox.threads()]
    assert any(title.endswith("(fixed)") for title in titles), titles
    assert sandbox.refused == []


@needs_seeds
async def test_an_item_whose_id_changes_keeps_its_object_and_a_duplicate_is_deleted(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    """The profile shows the lemmy.ml essay by title, the thread shows its body: ingested
    after a backfill, the thread merges the two copies under another id. A second
    backfill must keep the post's object (its comments reply to it), not post it again."""
    service = await service_factory()
    sandbox = await sandbox_factory()
    clock = FrozenClock(CAPTURED)

    def ingest(name: str) -> None:
        ingest_paths(service.engine, [SEED[name]], clock=clock, captured_at=CAPTURED)

    await asyncio.to_thread(ingest, "profile")
    target, first = await start_backfill(service.federation, to=handle(sandbox))
    await wait_for_run(service, first.run_id)
    urls = service.federation.urls
    before = {p["id"] for p in build_document(service.engine)["posts"]}
    await asyncio.to_thread(ingest, "thread")
    after = build_document(service.engine)
    renamed = [p for p in after["posts"] if p["id"] not in before and set(p["aliases"]) & before]
    assert len(renamed) == 1, "the thread no longer renames a profile post: pick another pair"
    (essay,) = renamed
    (old_id,) = set(essay["aliases"]) & before

    _, second = await start_backfill(service.federation, to=handle(sandbox))
    await wait_for_run(service, second.run_id)
    assert sandbox.refused == [], sandbox.refused
    threads = {t["id"]: t for t in sandbox.threads()}
    assert len(threads) == len(after["posts"])  # every post once
    kept = urls.object(object_id_for(old_id, target.id))
    assert urls.object(object_id_for(essay["id"], target.id)) not in threads
    thread_comments = [c for c in after["comments"] if c["post"] == essay["id"]]
    assert thread_comments and len(threads[kept]["comments"]) == len(thread_comments)
    # The merged copy's fuller body reached the kept object as an Update.
    assert second.updated >= 1

    # Had both copies been published, the newer object is a duplicate: deleted.
    duplicate = object_id_for(essay["id"], target.id)
    with write_transaction(service.engine) as conn:
        row = conn.execute(
            sa.select(PUBLICATIONS).where(PUBLICATIONS.c.item_id == essay["id"])
        ).one()
        conn.execute(
            sa.insert(OBJECTS).from_select(
                [c.key for c in OBJECTS.c],
                sa.select(
                    *(sa.literal(duplicate) if c.key == "id" else c for c in OBJECTS.c)
                ).where(OBJECTS.c.id == row.id),
            )
        )
        conn.execute(
            sa.insert(PUBLICATIONS).values(
                {**row._asdict(), "id": duplicate, "item_id": old_id, "created_at": clock.now()}
            )
        )
    _, third = await start_backfill(service.federation, to=handle(sandbox))
    assert third.deleted == 1 and third.queued == 0
    with service.engine.connect() as conn:
        deleted = conn.scalar(sa.select(OBJECTS.c.deleted_at).where(OBJECTS.c.id == duplicate))
        live = conn.scalar(sa.select(OBJECTS.c.deleted_at).where(OBJECTS.c.id == row.id))
    assert deleted is not None and live is None


@needs_seeds
async def test_a_comment_placed_later_replaces_its_followers_only_copy(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    """The bare dump shows a comment without its post: it goes to the followers alone.
    Once the thread shows where it sits, it goes to the community, and the followers'
    standalone copy gets a Delete (they would otherwise hold it twice)."""
    service = await service_factory()
    sandbox = await sandbox_factory()
    clock = FrozenClock(CAPTURED)

    def ingest(name: str) -> None:
        ingest_paths(service.engine, [SEED[name]], clock=clock, captured_at=CAPTURED)

    def followers_only() -> dict[str, Any]:
        with service.engine.connect() as conn:
            rows = conn.execute(
                sa.select(PUBLICATIONS.c.item_id, OBJECTS.c.id, OBJECTS.c.deleted_at)
                .join(OBJECTS, OBJECTS.c.id == PUBLICATIONS.c.id)
                .where(PUBLICATIONS.c.target == FOLLOWERS_ONLY)
            ).all()
        return {row.item_id: row for row in rows}

    await asyncio.to_thread(ingest, "bare")
    target, first = await start_backfill(service.federation, to=handle(sandbox))
    await wait_for_run(service, first.run_id)
    before = followers_only()
    assert before and all(row.deleted_at is None for row in before.values())

    await asyncio.to_thread(ingest, "thread")
    placed = [
        c
        for c in build_document(service.engine)["comments"]
        if c["post"] and {c["id"], *c["aliases"]} & set(before)
    ]
    assert len(placed) == 1, "the thread no longer places a bare comment: pick another pair"
    # The bare dump held it whole and as pieces: each went to the followers.
    stale = {placed[0]["id"], *placed[0]["aliases"]} & set(before)
    assert len(stale) > 1
    _, second = await start_backfill(service.federation, to=handle(sandbox))
    assert second.deleted == len(stale)
    await wait_for_run(service, second.run_id)
    comments = {c["id"] for t in sandbox.threads() for c in t["comments"]}
    urls = service.federation.urls
    assert urls.object(object_id_for(placed[0]["id"], target.id)) in comments
    after = followers_only()
    assert {item for item, row in after.items() if row.deleted_at is not None} == stale

    _, third = await start_backfill(service.federation, to=handle(sandbox))
    assert third.deleted == 0 and third.queued == 0


async def test_a_ban_stops_the_run_and_retry_sends_the_rest_after_it_is_lifted(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    from mirror.delivery import operate

    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory()
    sandbox.banned.add(service.federation.urls.actor("mirror"))
    _, report = await start_backfill(service.federation, to=handle(sandbox))
    done = await wait_for_run(service, report.run_id)
    states = done["by_state"]
    # At most the requests already in flight (per-host limit 2) were refused.
    assert 1 <= states["failed"] <= 2 and states["delivered"] == 0
    posts, comments = report.planned["posts"], report.planned["comments"]
    assert states["parked"] == posts - states["failed"]
    assert {r["error"] for r in sandbox.refused} == {"site_ban"}
    # The refused posts are refused, the rest held by the queue, and the
    # comments, which wait for their posts, parked behind them.
    items = done["publications"]
    assert items["refused"] == states["failed"] and items["held"] == states["parked"]
    assert items["parked"] == comments

    sandbox.banned.clear()
    with write_transaction(service.engine) as conn:
        operate.retry(
            conn, now=service.federation.clock.now(), failed=True, host=sandbox.host.lower()
        )
    service.federation.wake()
    done = await wait_for_run(service, report.run_id)
    assert done["by_state"]["delivered"] == posts + comments
    assert done["done"] == done["total"]


async def test_followers_receive_the_same_creates_and_the_orphans(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    from tests.peer import Peer
    from tests.server.test_followers import follow

    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory()
    peer = Peer()
    await peer.start()
    try:
        await follow(service, peer)
        _, report = await start_backfill(service.federation, to=handle(sandbox))
        await wait_for_run(service, report.run_id)
        creates = [r for r in peer.received if r.json["type"] == "Create"]
        assert all(r.verified and r.path == "/inbox" for r in creates)  # the shared inbox
        to_community = {t["id"] for t in sandbox.threads()} | {
            c["id"] for t in sandbox.threads() for c in t["comments"]
        }
        objects = {r.json["object"]["id"] for r in creates}
        orphans = {r.json["object"]["id"] for r in creates} - to_community
        assert to_community <= objects
        assert len(orphans) == report.planned["followers_only"] > 0
        for r in creates:
            obj = r.json["object"]
            if obj["id"] in orphans:
                assert "inReplyTo" not in obj and "audience" not in obj
                assert obj["cc"] == [service.federation.urls.followers("mirror")]
                assert "not archived" in obj["content"]
    finally:
        await peer.close()


@pytest.mark.postgres
async def test_backfill_on_postgresql(
    pg_url: str, service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    # pg_url first: fixtures end in reverse, so the database outlives the service.
    service: Service = await service_factory(
        database={"url": pg_url}, backfill={"attribution": "puppets", "rate_per_minute": 0.0}
    )
    await asyncio.to_thread(
        ingest_paths,
        service.engine,
        corpus(),
        clock=FrozenClock(CAPTURED),
        captured_at=CAPTURED,
    )
    sandbox = await sandbox_factory()
    _, report = await start_backfill(service.federation, to=handle(sandbox))
    done = await wait_for_run(service, report.run_id)
    assert (
        sandbox.refused == []
        and done["by_state"]["delivered"] == report.planned["posts"] + report.planned["comments"]
    )
    assert done["done"] == done["total"] == sum(report.planned.values())
    _, again = await start_backfill(service.federation, to=handle(sandbox))
    assert again.queued == again.updated == again.requeued == 0


async def test_the_sandbox_fetches_an_unknown_parent_from_us(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory()
    _, report = await start_backfill(service.federation, to=handle(sandbox))
    await wait_for_run(service, report.run_id)
    thread = next(t for t in sandbox.threads() if t["comments"])
    comment = thread["comments"][0]
    assert comment["inReplyTo"] == thread["id"]
    del sandbox.objects[thread["id"]]  # the instance lost the post
    # A changed comment is sent again (an Update); its parent must be fetched.
    with write_transaction(service.engine) as conn:
        conn.exec_driver_sql("UPDATE comment SET body = body || ' (corrected)'")
    _, again = await start_backfill(service.federation, to=handle(sandbox))
    assert again.updated > 0
    await wait_for_run(service, again.run_id)
    assert sandbox.refused == []
    fetched = sandbox.objects[thread["id"]]
    assert fetched.kind == "post" and not fetched.announced  # fetched, not announced


def _types(document: dict[str, Any], keys: set[str]) -> dict[str, type]:
    return {key: type(document[key]) for key in keys}


async def test_created_objects_have_the_shapes_lemmy_sends(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    import json

    from tests.conftest import ROOT

    examples = ROOT / "tests" / "fixtures" / "lemmy"
    page = json.loads((examples / "create_page.json").read_text())
    note = json.loads((examples / "create_note.json").read_text())
    service = await mirror_service(service_factory, rate_per_minute=0.0, post_type="Page")
    sandbox = await sandbox_factory()
    _, report = await start_backfill(service.federation, to=handle(sandbox), dry_run=True)
    create = report.first[0]
    reply = next(a for a in report.first if a["object"].get("inReplyTo"))
    # Every field Lemmy puts on its own Create{Page} / Create{Note}, with the same JSON types
    # (attachment, language and tag are optional and only present when there is something).
    optional = {"attachment", "language", "tag"}
    for ours, theirs in ((create, page), (reply, note)):
        activity_keys = set(theirs) - optional
        assert _types(ours, activity_keys) == _types(theirs, activity_keys)
        object_keys = set(theirs["object"]) - optional
        assert _types(ours["object"], object_keys) == _types(theirs["object"], object_keys)


async def test_an_object_lemmy_would_not_fetch_is_refused_before_anything_is_queued(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any], tmp_path
) -> None:
    # Lemmy 0.19 fetches at most 200 KB of an object: a comment that long is
    # refused with its size before the run queues anything.
    from tests.ingest.test_files import THREAD

    huge = " ".join(f"word{n}" for n in range(40_000))  # ~270 KB in one paragraph
    dump = tmp_path / "huge.txt"
    dump.write_text(THREAD.replace("POISON: black, no sugar", huge))
    service = await service_factory()
    reports = await asyncio.to_thread(
        ingest_paths, service.engine, [dump], clock=FrozenClock(CAPTURED), captured_at=CAPTURED
    )
    assert reports[0].ok, reports[0].error
    sandbox = await sandbox_factory()
    with pytest.raises(TooLarge, match=r"comment \S+ makes a \d+-byte object; Lemmy fetches"):
        await start_backfill(service.federation, to=handle(sandbox))
    with service.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(PUBLICATIONS)) == 0
    assert sandbox.threads() == []


async def test_an_object_keeps_the_author_it_was_first_published_with(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    """A run with other attribution sends nothing for what is there (PieFed would
    silently deny an Update from another actor)."""
    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory()
    _, first = await start_backfill(service.federation, to=handle(sandbox), attribution="bot")
    await wait_for_run(service, first.run_id)
    _, again = await start_backfill(service.federation, to=handle(sandbox), attribution="puppets")
    assert again.queued == again.updated == again.requeued == again.deliveries == 0
    bot = service.federation.urls.actor("mirror")
    authors = {item.object["attributedTo"] for item in sandbox.objects.values()}
    assert authors == {bot}
    with service.engine.connect() as conn:
        assert set(conn.scalars(sa.select(PUBLICATIONS.c.actor))) == {"mirror"}


async def test_a_puppet_never_takes_the_name_of_a_hosted_community(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    """Users and Groups share one namespace: an author whose puppet name a Group
    already has (it was ingested after the Group was hosted) gets a hashed name."""
    from mirror.federation.actors import GROUP, create_actor

    service = await mirror_service(service_factory, rate_per_minute=0.0)
    plan = build_plan(build_document(service.engine), Options(limit=3))
    author = next(i.data["author"] for i in plan.items if i.data.get("author"))
    with write_transaction(service.engine) as conn:
        create_actor(
            conn,
            username=puppet_username(author),
            kind=GROUP,
            master_key=service.master_key,
            now=service.federation.clock.now(),
        )
    sandbox = await sandbox_factory()
    _, report = await start_backfill(
        service.federation, to=handle(sandbox), attribution="puppets", limit=3
    )
    await wait_for_run(service, report.run_id)
    urls = service.federation.urls
    authors = {item.object["attributedTo"] for item in sandbox.objects.values()}
    assert urls.actor(puppet_username(author)) not in authors
    assert urls.actor(puppet_username(author, taken=True)) in authors
    with service.engine.connect() as conn:
        assert get_actor(conn, puppet_username(author)).kind == GROUP  # type: ignore[union-attr]
        puppet = get_actor(conn, puppet_username(author, taken=True))
    assert puppet is not None and puppet.kind == "puppet" and puppet.source_handle == author

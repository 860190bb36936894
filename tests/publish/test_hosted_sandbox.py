"""Issue 21's end-to-end test: real sandboxes subscribe, as Lemmy does, to the hosted Groups
of a mirror service holding the whole corpus, and end with every post and comment of it.

Every source community of the corpus is hosted as its own Group (and `unknown`, for the
items of no known community), the first sandbox subscribes to each through its HTTP API
before anything is published, then each Group is backfilled; what the sandbox stored must
be exactly what the mirror's database says each community holds, parents and authors right.
An hour later a second sandbox subscribes and gets the whole backlog (and the outbox, read
once, stores nothing twice). The first then unsubscribes from one Group: an edit reaches the
second sandbox, and the first only for the Groups it still follows.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import sqlalchemy as sa

from mirror.clock import ShiftedClock
from mirror.db.models import Delivery
from mirror.db.session import write_transaction
from mirror.federation import backlog
from mirror.federation.actors import puppet_username
from mirror.federation.communities import host
from mirror.federation.community_sources import UNKNOWN
from mirror.inspection import build_document
from mirror.publish.plan import MAX_DEPTH, NO_TEXT, has_text
from mirror.publish.prepare import object_id_for
from mirror.publish.start import start_backfill
from mirror.sandbox.app import Instance
from tests.publish.test_backfill import mirror_service, wait_for_run
from tests.server.conftest import Service, wait_for
from tests.server.test_communities import followers_of

#: How a hosted community's backfill names the comments of unknown posts it leaves out.
ORPHANS = "comments of unknown posts (a hosted community holds whole threads)"


@dataclass
class Group:
    """One hosted community and what the mirror's database says it holds, as object URLs."""

    name: str
    source: str
    community_ids: set[str] = field(default_factory=set)
    #: post URL -> its attributedTo
    posts: dict[str, str] = field(default_factory=dict)
    #: comment URL -> (its parent's URL, its attributedTo)
    comments: dict[str, tuple[str, str]] = field(default_factory=dict)

    def handle(self, service: Service) -> str:
        return f"{self.name}@{service.federation.urls.host}"

    def group_id(self, service: Service) -> str:
        return service.federation.urls.community(self.name).id


def _source_of(community: dict[str, Any]) -> str:
    """How `mirror communities host` names a reconstructed community."""
    if community.get("handle"):
        return str(community["handle"])
    if community.get("title") and community.get("instance"):
        return f"{community['title']}@{community['instance']}"
    return str(community["title"])


def host_every_source(service: Service) -> dict[str, Group]:
    """Every source community of the corpus hosted as its own Group (default names), and
    `unknown` when some item has no known community; keyed by Group name."""
    document = build_document(service.engine)
    groups: dict[str, Group] = {}
    sources = [(c["id"], _source_of(c)) for c in document["communities"]]
    known = {c["id"] for c in document["communities"]}
    if any(p.get("community_id") not in known for p in document["posts"]) or any(
        c.get("post") is None for c in document["comments"]
    ):
        sources.append((None, UNKNOWN))
    with write_transaction(service.engine) as conn:
        for community_id, source in sources:
            outcome = host(
                conn,
                source=source,
                master_key=service.master_key,
                now=service.federation.clock.now(),
                bot_username="mirror",
            )
            group = groups.setdefault(
                outcome.hosted.name, Group(outcome.hosted.name, outcome.hosted.source)
            )
            if community_id is not None:
                group.community_ids.add(community_id)
    assert len(groups) >= 2, "the corpus spans several communities"
    return groups


def expect(service: Service, groups: dict[str, Group]) -> dict[str, Any]:
    """Fill each Group with what the database says it holds (puppets attribution); returns
    the items no Group can hold, by why."""
    document = build_document(service.engine)
    urls = service.federation.urls
    by_community = {cid: g for g in groups.values() for cid in g.community_ids}
    unknown = next((g for g in groups.values() if g.source == UNKNOWN), None)
    by_id = {c["id"]: c for c in document["comments"]}

    def author(item: dict[str, Any]) -> str:
        return urls.actor(puppet_username(item["author"]) if item.get("author") else "mirror")

    post_group: dict[str, Group] = {}
    left_out: dict[str, int] = {NO_TEXT: 0, ORPHANS: 0}
    for post in document["posts"]:
        group = by_community.get(post.get("community_id") or "", unknown)
        assert group is not None, post["id"]
        if not has_text(post):
            left_out[NO_TEXT] += 1
            continue
        post_group[post["id"]] = group
        target = group.group_id(service)
        group.posts[urls.object(object_id_for(post["id"], target))] = author(post)
    published = {
        c["id"] for c in document["comments"] if c.get("post") in post_group and has_text(c)
    }
    for comment in document["comments"]:
        if comment.get("post") is None:
            left_out[ORPHANS if has_text(comment) else NO_TEXT] += 1
            continue
        if comment["post"] not in post_group:
            left_out.setdefault("of a post left out", 0)
            left_out["of a post left out"] += 1
            continue
        if comment["id"] not in published:
            left_out[NO_TEXT] += 1
            continue
        # Its ancestors as published: a parent not published (or in another post) is
        # unknown, and the comment replies to the post; Lemmy's depth cap is kept.
        chain = [comment["id"]]
        while True:
            parent = by_id[chain[-1]].get("parent")
            if parent not in published or by_id[parent]["post"] != comment["post"]:
                break
            assert parent not in chain, f"a parent cycle at {parent}"
            chain.append(parent)
        ancestors = chain[1:][::-1]  # from the top-level comment down to the parent
        depth = len(chain)
        if depth > MAX_DEPTH:
            ancestors = ancestors[: MAX_DEPTH - 1]
        parent_item = ancestors[-1] if ancestors else comment["post"]
        group = post_group[comment["post"]]
        target = group.group_id(service)
        url = urls.object(object_id_for(comment["id"], target))
        parent_url = urls.object(object_id_for(parent_item, target))
        group.comments[url] = (parent_url, author(comment))
    total = len(document["posts"]) + len(document["comments"])
    held = sum(len(g.posts) + len(g.comments) for g in groups.values())
    assert held + sum(left_out.values()) == total
    return left_out


async def _post(instance: Instance, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(instance.base + path, data=json.dumps(body)) as response:
            answer = await response.json(content_type=None)
            assert response.status == 200, answer
            return dict(answer)


async def _get(instance: Instance, path: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(instance.base + path) as response:
            assert response.status == 200, path
            if response.content_type == "text/html":
                return await response.text()
            return await response.json(content_type=None)


async def listed(instance: Instance) -> dict[str, dict[str, Any]]:
    """GET /api/sandbox/subscriptions, by Group id."""
    answer = await _get(instance, "/api/sandbox/subscriptions")
    return {s["group"]: s for s in answer["subscriptions"]}


async def subscribe_all(service: Service, sandbox: Instance, groups: dict[str, Group]) -> None:
    """Subscribe through the sandbox's API to every Group; wait for the Accepts and the
    outbox reads."""
    for group in groups.values():
        answer = await _post(
            sandbox, "/api/sandbox/subscribe", {"community": group.handle(service)}
        )
        assert answer["group"] == group.group_id(service)
    wanted = {g.group_id(service) for g in groups.values()}
    await wait_for(
        lambda: (
            set(sandbox.subscriptions) == wanted
            and all(s.accepted and s.outbox_read for s in sandbox.subscriptions.values())
        ),
        timeout=60,
    )


def outstanding(service: Service) -> int:
    with service.engine.connect() as conn:
        return int(
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(Delivery.state.in_(("pending", "parked")))
            )
            or 0
        )


def _stuck(service: Service) -> list[tuple[Any, ...]]:
    with service.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    Delivery.host,
                    Delivery.state,
                    Delivery.attempts,
                    Delivery.last_status,
                    Delivery.last_error,
                    Delivery.next_attempt_at,
                ).where(Delivery.state.in_(("pending", "parked")))
            )
        ]


async def drained(service: Service, *sandboxes: Instance) -> None:
    """Nothing left in the queue; else what is left, and what the sandboxes refused."""
    try:
        await wait_for(lambda: outstanding(service) == 0, timeout=60)
    except AssertionError:
        stuck = _stuck(service)
        refused = [r for s in sandboxes for r in s.refused]
        raise AssertionError(
            f"{len(stuck)} left in the queue: {stuck[:5]}; refused {refused[:5]}"
        ) from None


def check_threads(service: Service, group: Group, threads: list[dict[str, Any]]) -> None:
    """The threads a sandbox shows for the Group are exactly what the database says, once each."""
    posts = {t["id"]: t["attributedTo"] for t in threads}
    assert len(posts) == len(threads) and posts == group.posts, group.name
    comments = [c for t in threads for c in t["comments"]]
    received = {c["id"]: (c["inReplyTo"], c["attributedTo"]) for c in comments}
    assert len(received) == len(comments), f"{group.name}: a comment stored twice"
    assert received == group.comments, group.name
    for thread in threads:
        assert not thread["deleted"] and all(c["post"] == thread["id"] for c in thread["comments"])


async def check_sandbox(service: Service, sandbox: Instance, groups: dict[str, Group]) -> None:
    subscriptions = await listed(sandbox)
    for group in groups.values():
        entry = subscriptions[group.group_id(service)]
        assert entry["community"] == group.handle(service) and entry["accepted"]
        check_threads(service, group, entry["threads"])
    assert sandbox.refused == [], sandbox.refused
    assert sandbox.failed == []


async def backfill_all(
    service: Service, groups: dict[str, Group], *sandboxes: Instance
) -> dict[str, Any]:
    """A backfill run into every Group; waits for each and for the queue; the reports."""
    reports = {}
    for group in groups.values():
        target, report = await start_backfill(service.federation, to=f"!{group.handle(service)}")
        assert target.hosted == group.name
        reports[group.name] = report
    for report in reports.values():
        await wait_for_run(service, report.run_id)
    await drained(service, *sandboxes)
    return reports


async def test_sandboxes_subscribed_to_every_hosted_group_hold_the_whole_corpus(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    clock = ShiftedClock()
    service = await mirror_service(
        lambda **kw: service_factory(**kw, clock=clock, hosted_defaults={"backlog_rate": 0.0}),
        rate_per_minute=0.0,
        attribution="puppets",
    )
    groups = host_every_source(service)
    left_out = expect(service, groups)
    assert sum(len(g.comments) for g in groups.values()) > 0

    # 1. The first sandbox subscribes to every Group before anything is published.
    first = await sandbox_factory(clock=clock)
    await subscribe_all(service, first, groups)
    assert all(s.outbox_items == 0 for s in first.subscriptions.values())
    reports = await backfill_all(service, groups, first)
    for group in groups.values():
        report = reports[group.name]
        assert report.planned == {
            "posts": len(group.posts),
            "comments": len(group.comments),
            "followers_only": 0,
        }, group.name
    # What no community can hold is said: the comments of unknown posts stay out.
    assert sum(r.left_out.get(ORPHANS, 0) for r in reports.values()) == left_out[ORPHANS]
    assert sum(r.left_out.get(NO_TEXT, 0) for r in reports.values()) == left_out[NO_TEXT]
    await check_sandbox(service, first, groups)

    # Its page shows each community it follows, and each post's title under it.
    page = await _get(first, "/")
    for group in groups.values():
        heading = f"<h2>!{html.escape(group.handle(service))}</h2>"
        assert heading in page
        for thread in first.threads(group.group_id(service)):
            assert page.index(html.escape(thread["name"])) > page.index(heading)

    # 2. An hour later a second sandbox subscribes: the backlog brings everything, and
    # what the outbox brings too is stored once.
    clock.advance(timedelta(hours=1))
    second = await sandbox_factory(clock=clock)
    await subscribe_all(service, second, groups)
    await drained(service, first, second)
    await check_sandbox(service, second, groups)
    with service.engine.connect() as conn:
        for group in groups.values():
            status = {s["host"]: s for s in backlog.status(conn, group.name)}
            items = len(group.posts) + len(group.comments)
            assert status[second.host]["backlog"]["items"] == items
            assert status[second.host]["backlog"]["delivered"] == items
            assert status[first.host]["backlog"]["items"] == 0  # followed before anything
    assert any(s.outbox_items > 0 for s in second.subscriptions.values())

    # 3. The first unsubscribes from the busiest Group: an edit reaches the second
    # everywhere, the first only where it still follows.
    left = max(groups.values(), key=lambda g: (len(g.comments), len(g.posts)))
    left_id = left.group_id(service)
    before = first.threads(left_id)
    await _post(first, "/api/sandbox/unsubscribe", {"community": left.handle(service)})
    await wait_for(
        lambda: all(
            state != "active"
            for actor, state, _ in followers_of(service, left.name)
            if actor.startswith(first.base)
        ),
        timeout=60,
    )
    with write_transaction(service.engine) as conn:
        conn.exec_driver_sql("UPDATE post SET title = title || ' (fixed)' WHERE title IS NOT NULL")
    edits = await backfill_all(service, groups, first, second)
    assert edits[left.name].updated >= 1

    def edited(threads: list[dict[str, Any]]) -> bool:
        return all(t["updated"] is not None for t in threads)

    for group in groups.values():
        threads = second.threads(group.group_id(service))
        assert edited(threads), group.name
        check_threads(service, group, threads)
        if group is not left:
            assert edited(first.threads(group.group_id(service))), group.name
    # (Lemmy cuts titles at 200 characters: a long one does not show the change.)
    assert any(t["name"].endswith("(fixed)") for t in second.threads(left_id))
    # Nothing more reached the first for the Group it left: not even refused.
    assert first.threads(left_id) == before
    assert first.refused == [] and second.refused == []
    with service.engine.connect() as conn:
        (server,) = [s for s in backlog.status(conn, left.name) if s["host"] == first.host]
    assert server["followers"] == 0

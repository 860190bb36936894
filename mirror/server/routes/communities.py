"""Hosted communities: the Group (or its page), outbox, followers, moderators, featured.

Served at /c/NAME as Lemmy serves its communities; an unhosted (retired)
Group answers 410, which Lemmy reads as a deleted community.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from mirror import __version__
from mirror.db.models import Activity, ApObject, LocalActor, Publication
from mirror.federation.actors import GROUP
from mirror.federation.communities import Hosted, follower_counts, group_document
from mirror.federation.community_sources import UnknownSource, list_posts, resolve
from mirror.server.appkeys import FEDERATION
from mirror.server.negotiation import activity_json, wants_html
from mirror.server.routes.access import require_signed_fetch
from mirror.server.routes.actors import follower_urls, page_number
from mirror.server.templates import render
from mirror.vocab.collections import build_collection
from mirror.vocab.context import AS
from mirror.vocab.ids import Urls
from mirror.vocab.times import rfc3339

routes = web.RouteTableDef()
#: Lemmy reads up to 50 items inline from an unpaged outbox, PieFed 50.
OUTBOX_ITEMS = 50
PAGE_SIZE = 20


class _Gone(Exception):
    """The Group was unhosted: answered with a Tombstone (see _group_route)."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _group_or_error(request: web.Request) -> tuple[LocalActor, Hosted]:
    """The Group and its row; 404 when there is none, _Gone when it was unhosted."""
    federation = request.app[FEDERATION]
    name = request.match_info["name"]
    actor = await federation.local_actor(name)
    hosted = await federation.hosted_community(name) if actor is not None else None
    if actor is None or actor.kind != GROUP or hosted is None:
        raise web.HTTPNotFound(text="no such community")
    if not hosted.active:
        tombstone = {
            "@context": AS,
            "id": federation.urls.community(name).id,
            "type": "Tombstone",
            "formerType": "Group",
            "deleted": rfc3339(hosted.retired_at) if hosted.retired_at else None,
        }
        # Lemmy reads 410 on fetch as a deleted community.
        raise _Gone(activity_json(tombstone, status=410))
    return actor, hosted


Handler = Callable[[web.Request, LocalActor, Hosted], Awaitable[web.Response]]


def _group_route(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler of one hosted community's URLs, given its Group and row."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        try:
            actor, hosted = await _group_or_error(request)
        except _Gone as gone:
            return gone.response
        return await handler(request, actor, hosted)

    return wrapped


@routes.get("/c/{name}")
@_group_route
async def handle_group(request: web.Request, actor: LocalActor, hosted: Hosted) -> web.Response:
    federation = request.app[FEDERATION]
    if wants_html(request):
        return await _community_page(request, hosted)
    await require_signed_fetch(request)
    return activity_json(group_document(federation.settings, federation.urls, actor, hosted))


async def _community_page(request: web.Request, hosted: Hosted) -> web.Response:
    federation = request.app[FEDERATION]
    number = page_number(request.query.get("page", "1"))

    def load() -> tuple[int, int, list[Any]]:
        with federation.engine.connect() as conn:
            followers, _, _ = follower_counts(conn, hosted.name)
            try:
                source = resolve(conn, hosted.source)
            except UnknownSource:
                return followers, 0, []  # the reconstruction no longer names it so
            total, posts = list_posts(
                conn, source, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
            )
        return followers, total, posts

    followers, total, posts = await asyncio.to_thread(load)
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
        "community.html",
        version=__version__,
        name=hosted.name,
        title=hosted.title,
        host=federation.urls.host,
        group_url=federation.urls.community(hosted.name).id,
        followers=followers,
        source=hosted.source_label,
        source_url=hosted.source_url,
        operator=federation.settings.instance.operator,
        total=total,
        posts=[
            {
                "title": p.title,
                "author": p.author,
                "published": rfc3339(p.published) if p.published else "",
                "comments": p.comments,
            }
            for p in posts
        ],
        page=number,
        pages=pages,
        prev_page=number - 1 if number > 1 else None,
        next_page=number + 1 if number < pages else None,
    )


@routes.get("/c/{name}/outbox")
@_group_route
async def handle_outbox(request: web.Request, _actor: LocalActor, hosted: Hosted) -> web.Response:
    """Unpaged, the newest Announce{Create{Page}} inline: what Lemmy and PieFed read
    on subscribing (comments and edits reach a new server with its backlog)."""
    federation = request.app[FEDERATION]
    await require_signed_fetch(request)

    def load() -> tuple[int, list[dict[str, Any]]]:
        with federation.engine.connect() as conn:
            return announced_posts(conn, federation.urls, hosted.name, OUTBOX_ITEMS)

    total, items = await asyncio.to_thread(load)
    outbox = federation.urls.community(hosted.name).outbox
    return activity_json(build_collection(outbox, total=total, items=items))


#: Candidate rows read per outbox request: its posts' Announces are the newest
#: rows but for the few Updates and Deletes among them.
_SCAN = 4


def announced_posts(
    conn: sa.Connection, urls: Urls, group: str, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """(how many posts the Group announced, the newest ``limit`` Announce{Create{Page}}).

    Only a post's Announce has no `depends_on` and embeds a Create of a
    Page; Updates and Deletes are left out. Newest by when they were
    announced, then by the post's own `published` (a run announces its
    posts at once).
    """
    where = (
        Activity.actor == group,
        Activity.type == "Announce",
        Activity.public.is_(True),
        Activity.depends_on.is_(None),
    )
    rows = conn.execute(
        sa.select(Activity.json, Activity.created_at)
        .where(*where)
        .order_by(Activity.created_at.desc(), Activity.id.desc())
        .limit(limit * _SCAN)
    ).all()

    def is_post(doc: dict[str, Any]) -> bool:
        inner = doc.get("object")
        return (
            isinstance(inner, dict)
            and inner.get("type") == "Create"
            and isinstance(inner.get("object"), dict)
            and inner["object"].get("type") == "Page"
        )

    posts = [(r.created_at, r.json) for r in rows if is_post(r.json)]
    # A deleted post is no longer the Group's (its Delete was announced).
    ids = {doc["object"]["object"]["id"].rsplit("/", 1)[-1] for _, doc in posts}
    deleted = {
        urls.object(i)
        for i in conn.scalars(
            sa.select(ApObject.id).where(ApObject.id.in_(ids), ApObject.deleted_at.is_not(None))
        )
    }
    posts = [p for p in posts if p[1]["object"]["object"]["id"] not in deleted]
    posts.sort(key=lambda p: (p[0], p[1]["object"]["object"].get("published") or ""), reverse=True)
    total = conn.scalar(
        sa.select(sa.func.count())
        .select_from(Publication)
        .where(
            Publication.target == urls.community(group).id,
            Publication.kind == "post",
            ~sa.exists().where(ApObject.id == Publication.id, ApObject.deleted_at.is_not(None)),
        )
    )
    items = [{k: v for k, v in doc.items() if k != "@context"} for _, doc in posts[:limit]]
    return max(total or 0, len(items)), items


@routes.get("/c/{name}/followers")
@_group_route
async def handle_followers(
    request: web.Request, _actor: LocalActor, hosted: Hosted
) -> web.Response:
    federation = request.app[FEDERATION]
    await require_signed_fetch(request)
    total, items = await asyncio.to_thread(follower_urls, federation, hosted.name)
    followers = federation.urls.community(hosted.name).followers
    return activity_json(build_collection(followers, total=total, items=items))


@routes.get("/c/{name}/moderators")
@_group_route
async def handle_moderators(
    request: web.Request, _actor: LocalActor, hosted: Hosted
) -> web.Response:
    """The bot moderates every hosted community (Lemmy reads these as Person ids)."""
    federation = request.app[FEDERATION]
    await require_signed_fetch(request)
    bot = federation.urls.actor(federation.bot_username)
    moderators = federation.urls.community(hosted.name).moderators
    return activity_json(build_collection(moderators, total=1, items=[bot]))


@routes.get("/c/{name}/featured")
@_group_route
async def handle_featured(request: web.Request, _actor: LocalActor, hosted: Hosted) -> web.Response:
    """Nothing is pinned in an archive."""
    federation = request.app[FEDERATION]
    await require_signed_fetch(request)
    featured = federation.urls.community(hosted.name).featured
    return activity_json(build_collection(featured, total=0, items=[]))

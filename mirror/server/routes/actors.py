"""Our actors: the actor document (or profile page), outbox, followers, following."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from mirror import __version__
from mirror.db.models import Activity, Follower, LocalActor
from mirror.federation.actors import BOT, GROUP, actor_document
from mirror.federation.follows import ACTIVE
from mirror.server.appkeys import FEDERATION
from mirror.server.entries import (
    OBJECTS,
    PUBLICATIONS,
    PUBLISHED_AT,
    Entry,
    entry_of,
    select_entries,
)
from mirror.server.negotiation import activity_json, wants_html
from mirror.server.routes.access import require_signed_fetch
from mirror.server.templates import render
from mirror.vocab.actor import original_profile
from mirror.vocab.collections import build_collection, build_page

routes = web.RouteTableDef()
PAGE_SIZE = 20
#: Posts on one page of an HTML profile.
PROFILE_PAGE = 50
POST = "post"


async def _actor_or_404(request: web.Request) -> LocalActor:
    actor = await request.app[FEDERATION].local_actor(request.match_info["username"])
    # A hosted community's Group is at /c/NAME (routes/communities.py), not here.
    if actor is None or actor.kind == GROUP:
        raise web.HTTPNotFound(text="no such actor")
    return actor


@routes.get("/u/{username}")
async def handle_actor(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    actor = await _actor_or_404(request)
    if wants_html(request):
        return await _profile_page(request, actor)
    await require_signed_fetch(request)
    return activity_json(actor_document(federation.settings, federation.urls, actor))


async def _profile_page(request: web.Request, actor: LocalActor) -> web.Response:
    federation = request.app[FEDERATION]
    number = page_number(request.query.get("page", "1"))

    def load() -> tuple[int, dict[str, int], list[Entry]]:
        with federation.engine.connect() as conn:
            followers = _count_followers(conn, actor.username)
            counts = _count_items(conn, actor.username)
            rows = conn.execute(
                _live_posts(select_entries(), actor.username)
                # The dump's time, newest first; posts it gave no time come last.
                .order_by(
                    PUBLISHED_AT.is_(None),
                    PUBLISHED_AT.desc(),
                    OBJECTS.c.created_at.desc(),
                    OBJECTS.c.id,
                )
                .offset((number - 1) * PROFILE_PAGE)
                .limit(PROFILE_PAGE)
            ).all()
        return followers, counts, [entry_of(row, federation.urls) for row in rows]

    followers, counts, posts = await asyncio.to_thread(load)
    last = max(1, -(-counts["posts"] // PROFILE_PAGE))
    if number > last:
        raise web.HTTPNotFound(text=f"no page {number}: the profile has {last}")
    instance = federation.settings.instance
    bot = actor.kind == BOT
    return render(
        "actor.html",
        version=__version__,
        name=instance.display_name if bot else (actor.source_handle or actor.username),
        username=actor.username,
        host=federation.urls.host,
        actor_url=federation.urls.actor(actor.username),
        followers=followers,
        source=None if bot else actor.source_handle,
        source_url=None if bot else original_profile(actor.source_handle or ""),
        operator=instance.operator,
        summary=instance.summary if bot else "",
        counts=counts,
        posts=posts,
        page=number,
        last_page=last,
        first_rank=(number - 1) * PROFILE_PAGE + 1,
    )


def _live_posts(select: sa.Select[Any], username: str) -> sa.Select[Any]:
    return select.where(
        OBJECTS.c.actor == username,
        OBJECTS.c.deleted_at.is_(None),
        PUBLICATIONS.c.kind == POST,
    )


def _count_items(conn: sa.Connection, username: str) -> dict[str, int]:
    """The actor's live posts and comments (a comment of an unknown post is one too)."""
    rows = conn.execute(
        sa.select(PUBLICATIONS.c.kind, sa.func.count())
        .select_from(OBJECTS.join(PUBLICATIONS, PUBLICATIONS.c.id == OBJECTS.c.id))
        .where(OBJECTS.c.actor == username, OBJECTS.c.deleted_at.is_(None))
        .group_by(PUBLICATIONS.c.kind)
    ).all()
    by_kind = {kind: count for kind, count in rows}
    return {"posts": by_kind.pop(POST, 0), "comments": sum(by_kind.values())}


def _count_followers(conn: sa.Connection, username: str) -> int:
    return (
        conn.scalar(
            sa.select(sa.func.count())
            .select_from(Follower)
            .where(Follower.local_username == username, Follower.state == ACTIVE)
        )
        or 0
    )


@routes.get("/u/{username}/outbox")
async def handle_outbox(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    actor = await _actor_or_404(request)
    await require_signed_fetch(request)
    outbox = federation.urls.outbox(actor.username)
    page = request.query.get("page")

    def load(page_number: int | None) -> tuple[int, list[dict[str, Any]]]:
        with federation.engine.connect() as conn:
            where = (Activity.actor == actor.username, Activity.public.is_(True))
            total = conn.scalar(sa.select(sa.func.count()).select_from(Activity).where(*where)) or 0
            if page_number is None:
                return total, []
            rows = conn.scalars(
                sa.select(Activity.json)
                .where(*where)
                .order_by(Activity.created_at.desc(), Activity.id.desc())
                .offset((page_number - 1) * PAGE_SIZE)
                .limit(PAGE_SIZE)
            ).all()
        return total, [_without_context(doc) for doc in rows]

    if page is None:
        total, _ = await asyncio.to_thread(load, None)
        return activity_json(build_collection(outbox, total=total, first=f"{outbox}?page=1"))
    number = page_number(page)
    total, items = await asyncio.to_thread(load, number)
    last = max(1, -(-total // PAGE_SIZE))
    return activity_json(
        build_page(
            f"{outbox}?page={number}",
            part_of=outbox,
            items=items,
            next_page=f"{outbox}?page={number + 1}" if number < last else None,
            prev_page=f"{outbox}?page={number - 1}" if number > 1 else None,
        )
    )


def page_number(text: str) -> int:
    if text in ("true", ""):
        return 1
    try:
        number = int(text)
    except ValueError:
        raise web.HTTPBadRequest(text="page must be a positive integer") from None
    if number < 1:
        raise web.HTTPBadRequest(text="page must be a positive integer")
    return number


def _without_context(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "@context"}


@routes.get("/u/{username}/followers")
async def handle_followers(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    actor = await _actor_or_404(request)
    await require_signed_fetch(request)
    total, items = await asyncio.to_thread(follower_urls, federation, actor.username)
    return activity_json(
        build_collection(federation.urls.followers(actor.username), total=total, items=items)
    )


def follower_urls(federation: Any, username: str) -> tuple[int, list[str] | None]:
    """How many follow an actor, and who ([federation].followers_visible) or None."""
    with federation.engine.connect() as conn:
        total = _count_followers(conn, username)
        if not federation.settings.federation.followers_visible:
            return total, None
        urls = conn.scalars(
            sa.select(Follower.actor_url)
            .where(Follower.local_username == username, Follower.state == ACTIVE)
            .order_by(Follower.created_at, Follower.actor_url)
        ).all()
    return total, list(urls)


@routes.get("/u/{username}/following")
async def handle_following(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    actor = await _actor_or_404(request)
    await require_signed_fetch(request)
    return activity_json(
        build_collection(federation.urls.following(actor.username), total=0, items=[])
    )

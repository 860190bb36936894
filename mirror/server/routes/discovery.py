"""How the fediverse finds us: WebFinger, host-meta, NodeInfo, and the landing page."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from mirror import __version__
from mirror.db.models import ApObject, LocalActor
from mirror.federation.actors import GROUP
from mirror.server.appkeys import FEDERATION
from mirror.server.negotiation import plain_json
from mirror.server.templates import render
from mirror.vocab import nodeinfo, webfinger

routes = web.RouteTableDef()


@routes.get("/.well-known/webfinger")
async def handle_webfinger(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    resource = request.query.get("resource")
    if not resource:
        raise web.HTTPBadRequest(text="the resource parameter is required")
    username = webfinger.resource_username(resource, federation.urls)
    actor = await federation.local_actor(username) if username is not None else None
    if actor is None or username is None:
        raise web.HTTPNotFound(text="no such account here")
    group = actor.kind == GROUP
    if group:
        hosted = await federation.hosted_community(username)
        if hosted is None or not hosted.active:
            raise web.HTTPNotFound(text="no such account here")
    response = plain_json(
        webfinger.build_jrd(federation.urls, username, group=group),
        content_type=webfinger.JRD_JSON,
    )
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@routes.get("/.well-known/host-meta")
async def handle_host_meta(request: web.Request) -> web.Response:
    body = webfinger.build_host_meta(request.app[FEDERATION].urls)
    return web.Response(text=body, content_type="application/xrd+xml")


@routes.get("/.well-known/nodeinfo")
async def handle_nodeinfo_discovery(request: web.Request) -> web.Response:
    document = nodeinfo.build_discovery(request.app[FEDERATION].urls)
    return plain_json(document, content_type="application/json")


@routes.get("/nodeinfo/2.1")
async def handle_nodeinfo(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]

    def counts() -> tuple[int, int]:
        with federation.engine.connect() as conn:
            users = (
                conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(LocalActor)
                    .where(LocalActor.kind != GROUP)
                )
                or 0
            )
            posts = (
                conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(ApObject)
                    .where(ApObject.deleted_at.is_(None))
                )
                or 0
            )
        return users, posts

    users, posts = await asyncio.to_thread(counts)
    document = nodeinfo.build_nodeinfo(
        version=__version__,
        users=users,
        local_posts=posts,
        node_name=federation.settings.instance.display_name,
    )
    return plain_json(document, content_type=nodeinfo.CONTENT_TYPE)


@routes.get("/")
async def handle_landing(request: web.Request) -> web.Response:
    # Lemmy GETs "/" for every newly seen actor, hoping for an instance
    # actor; a quick small page is all it needs.
    federation = request.app[FEDERATION]
    username = federation.bot_username
    return render(
        "landing.html",
        version=__version__,
        name=federation.settings.instance.display_name,
        username=username,
        host=federation.urls.host,
        actor_url=federation.urls.actor(username),
        operator=federation.settings.instance.operator,
    )

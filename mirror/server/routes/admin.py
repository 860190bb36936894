"""The read-only admin page: queue, hosts, recent deliveries, followers, runs, communities.

Never open by default: with no `[admin].token` (or MIRROR_ADMIN_TOKEN) it
does not exist (404). The token comes as `Authorization: Bearer TOKEN`, or
is entered once into a login form that starts a server-side session (an
HttpOnly cookie holding a random secret; see mirror.server.admin_auth for
sessions, the Origin check, throttling and the headers).
"""

from __future__ import annotations

import asyncio
import hmac
import math
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from mirror.db.base import table_of
from mirror.db.models import Activity, ApObject, Community, Delivery, Post, Publication
from mirror.delivery import operate
from mirror.delivery.states import operator_state
from mirror.federation.follows import list_followers
from mirror.publish import publications, runs
from mirror.server import admin_auth, display
from mirror.server.admin_auth import COOKIE, Throttle, throttle_key
from mirror.server.appkeys import FEDERATION
from mirror.server.routes.access import client_address
from mirror.server.templates import render

routes = web.RouteTableDef()
RECENT = 50
THROTTLE = web.AppKey("admin_throttle", Throttle)


def _token(request: web.Request) -> str:
    token = request.app[FEDERATION].settings.admin.token
    if not token:
        raise web.HTTPNotFound(text="the admin page is disabled (no [admin].token)")
    return token


def _matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def _throttled(request: web.Request, client: str) -> web.Response | None:
    """The 429 page for a client that must wait before its next token is compared."""
    federation = request.app[FEDERATION]
    wait = request.app[THROTTLE].wait(client, federation.clock.now())
    if not wait:
        return None
    seconds = max(1, math.ceil(wait.total_seconds()))
    response = _page(
        request,
        "admin_login.html",
        status=429,
        error=f"too many wrong tokens from your address; try again in {seconds} s",
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def _page(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    return admin_auth.styled(
        lambda nonce: render(
            template, status=status, csp_nonce=nonce, **context, **_common(request)
        )
    )


@routes.get("/admin")
async def admin(request: web.Request) -> web.Response:
    token = _token(request)
    federation = request.app[FEDERATION]
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        client = throttle_key(client_address(request))
        if (refusal := _throttled(request, client)) is not None:
            return refusal
        if not _matches(bearer[7:], token):
            request.app[THROTTLE].failed(client, federation.clock.now())
            return _page(request, "admin_login.html", status=401, error=None)
        request.app[THROTTLE].succeeded(client)
    else:
        # A session secret is 256 random bits: guessing it is hopeless, so a
        # stale or forged cookie is not counted as a wrong token.
        valid = await asyncio.to_thread(
            admin_auth.session_is_valid,
            federation.engine,
            token,
            request.cookies.get(COOKIE, ""),
            federation.clock.now(),
        )
        if not valid:
            return _page(request, "admin_login.html", status=401, error=None)
    before = _before(request.query.get("before"))
    context = await asyncio.to_thread(_gather, federation, before)
    return _page(request, "admin.html", **context)


def _before(text: str | None) -> int | None:
    """Recent deliveries are paged by id: ``?before=ID`` shows those older than ID."""
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise web.HTTPBadRequest(text="before must be a delivery id (a positive integer)")
    return int(text)


@routes.get("/admin/login")
async def login_form(request: web.Request) -> web.Response:
    _token(request)
    return _page(request, "admin_login.html", error=None)


@routes.post("/admin/login")
async def login(request: web.Request) -> web.Response:
    token = _token(request)
    federation = request.app[FEDERATION]
    admin_auth.check_origin(request, federation.urls.base)
    client = throttle_key(client_address(request))
    if (refusal := _throttled(request, client)) is not None:
        return refusal
    form = await request.post()
    if not _matches(str(form.get("token", "")), token):
        request.app[THROTTLE].failed(client, federation.clock.now())
        return _page(request, "admin_login.html", status=401, error="wrong token")
    request.app[THROTTLE].succeeded(client)
    secret = await asyncio.to_thread(
        admin_auth.create_session, federation.engine, token, federation.clock.now()
    )
    response = web.HTTPSeeOther("/admin")
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="Strict",
        secure=federation.urls.base.startswith("https://"),
        path="/admin",
        max_age=int(admin_auth.SESSION.total_seconds()),
    )
    raise response


@routes.post("/admin/logout")
async def logout(request: web.Request) -> web.Response:
    token = _token(request)
    federation = request.app[FEDERATION]
    admin_auth.check_origin(request, federation.urls.base)
    # The session ends on the server: a copy of the cookie is worthless after this.
    await asyncio.to_thread(
        admin_auth.end_session, federation.engine, token, request.cookies.get(COOKIE, "")
    )
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(COOKIE, path="/admin")
    raise response


def _common(request: web.Request) -> dict[str, Any]:
    from mirror import __version__

    return {"version": __version__, "base": request.app[FEDERATION].urls.base}


def _gather(federation: Any, before: int | None = None) -> dict[str, Any]:
    now = federation.clock.now()
    deliveries = table_of(Delivery)
    activities = table_of(Activity)
    with federation.engine.connect() as conn:
        status = operate.status(conn, now)
        recent = [
            {
                **dict(row),
                "state": operator_state(row.state, row.attempts, row.locked_until, now),
            }
            for row in conn.execute(
                sa.select(
                    deliveries.c.id,
                    deliveries.c.host,
                    deliveries.c.state,
                    deliveries.c.attempts,
                    deliveries.c.locked_until,
                    deliveries.c.last_status,
                    deliveries.c.last_error,
                    deliveries.c.updated_at,
                    activities.c.type,
                    activities.c.object_id,
                )
                .join(activities, activities.c.id == deliveries.c.activity_id)
                .where(deliveries.c.id < before if before else sa.true())
                # Newest first by id: the primary key, so no scan of a large queue.
                .order_by(deliveries.c.id.desc())
                .limit(RECENT + 1)
            ).mappings()
        ]
        older = recent[RECENT - 1]["id"] if len(recent) > RECENT else None
        recent = recent[:RECENT]
        titles = _titles(conn, federation.urls, [d["object_id"] for d in recent])
        followers = list_followers(conn, federation.bot_username)
        backfills = runs.list_runs(conn, now)
        not_confirmed = publications.not_confirmed(conn, limit=RECENT)
        communities = [
            dict(row)
            for row in conn.execute(
                sa.select(
                    Community.id,
                    Community.name,
                    Community.instance,
                    Community.title,
                    sa.func.count(Post.id).label("posts"),
                )
                .outerjoin(Post, Post.community_id == Community.id)
                .group_by(Community.id, Community.name, Community.instance, Community.title)
                .order_by(Community.instance, Community.title)
            ).mappings()
        ]
        published = dict(
            conn.execute(
                sa.select(Publication.target, sa.func.count()).group_by(Publication.target)
            ).all()
        )
    return {
        "queue": status,
        "recent": recent,
        "titles": titles,
        "before": before,
        "older": older,
        "followers": followers,
        "runs": backfills,
        "not_confirmed": not_confirmed,
        "communities": communities,
        "published": published,
        "now": now,
    }


def _titles(conn: sa.Connection, urls: Any, object_urls: list[str | None]) -> dict[str, str]:
    """Our objects' titles or first words, by URL (one query for the page's deliveries)."""
    prefix = urls.object("")
    ids = {u.removeprefix(prefix) for u in object_urls if u and u.startswith(prefix)}
    if not ids:
        return {}
    rows = conn.execute(sa.select(ApObject.id, ApObject.json).where(ApObject.id.in_(ids)))
    return {urls.object(row.id): display.title_of(row.json or {}, limit=60) for row in rows}

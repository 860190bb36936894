"""The read-only admin page: queue, hosts, recent deliveries, followers, runs, communities.

Never open by default: with no `[admin].token` (or MIRROR_ADMIN_TOKEN) it
does not exist (404). The token comes as `Authorization: Bearer TOKEN`, or
is entered once into a login form that sets an HttpOnly session cookie
holding an HMAC of the token (never the token itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from mirror.db.base import table_of
from mirror.db.models import Activity, Community, Delivery, Post, Publication
from mirror.delivery import operate
from mirror.delivery.states import operator_state
from mirror.federation.follows import list_followers
from mirror.publish import publications, runs
from mirror.server.appkeys import FEDERATION
from mirror.server.templates import render

routes = web.RouteTableDef()
COOKIE = "mirror_admin"
RECENT = 50


def _token(request: web.Request) -> str:
    token = request.app[FEDERATION].settings.admin.token
    if not token:
        raise web.HTTPNotFound(text="the admin page is disabled (no [admin].token)")
    return token


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"fedimirror admin session", hashlib.sha256).hexdigest()


def _authorized(request: web.Request, token: str) -> bool:
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), _session_value(token).encode())


@routes.get("/admin")
async def admin(request: web.Request) -> web.Response:
    token = _token(request)
    if not _authorized(request, token):
        return render("admin_login.html", status=401, error=None, **_common(request))
    federation = request.app[FEDERATION]
    context = await asyncio.to_thread(_gather, federation)
    return render("admin.html", **context, **_common(request))


@routes.get("/admin/login")
async def login_form(request: web.Request) -> web.Response:
    _token(request)
    return render("admin_login.html", error=None, **_common(request))


@routes.post("/admin/login")
async def login(request: web.Request) -> web.Response:
    token = _token(request)
    form = await request.post()
    given = str(form.get("token", ""))
    if not hmac.compare_digest(given.encode(), token.encode()):
        return render("admin_login.html", status=401, error="wrong token", **_common(request))
    response = web.HTTPSeeOther("/admin")
    response.set_cookie(
        COOKIE,
        _session_value(token),
        httponly=True,
        samesite="Strict",
        secure=request.app[FEDERATION].urls.base.startswith("https://"),
        path="/admin",
        max_age=12 * 3600,
    )
    raise response


@routes.post("/admin/logout")
async def logout(request: web.Request) -> web.Response:
    _token(request)
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(COOKIE, path="/admin")
    raise response


def _common(request: web.Request) -> dict[str, Any]:
    from mirror import __version__

    return {"version": __version__, "base": request.app[FEDERATION].urls.base}


def _gather(federation: Any) -> dict[str, Any]:
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
                # Newest first by id: the primary key, so no scan of a large queue.
                .order_by(deliveries.c.id.desc())
                .limit(RECENT)
            ).mappings()
        ]
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
        "followers": followers,
        "runs": backfills,
        "not_confirmed": not_confirmed,
        "communities": communities,
        "published": published,
        "now": now,
    }

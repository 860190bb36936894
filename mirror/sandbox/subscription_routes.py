"""The sandbox's test API for subscribing to remote communities, and its subscriber user.

POST /api/sandbox/subscribe and /api/sandbox/unsubscribe take
{"community": "name@host"}; GET /api/sandbox/subscriptions lists each with
whether its Accept came, whether its outbox was read, and its threads.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from mirror.sandbox import subscriptions
from mirror.sandbox.rules import Refused
from mirror.sandbox.state import INSTANCE, SESSION

ACTIVITY_JSON = "application/activity+json"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/u/{name}", person)
    router.add_post("/api/sandbox/subscribe", subscribe)
    router.add_post("/api/sandbox/unsubscribe", unsubscribe)
    router.add_get("/api/sandbox/subscriptions", subscription_list)


def _json(data: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.json_response(data, status=status, content_type=content_type)


async def person(request: web.Request) -> web.Response:
    if request.match_info["name"] != subscriptions.SUBSCRIBER:
        return _json({"error": "not_found"}, 404)
    return _json(subscriptions.person(request.app[INSTANCE]), content_type=ACTIVITY_JSON)


async def _handle_of(request: web.Request) -> str:
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("community"), str):
        raise Refused("invalid_request", 'the body must be {"community": "name@host"}')
    return data["community"]


async def subscribe(request: web.Request) -> web.Response:
    """Test API: follow a remote community as a Lemmy user does; the Accept comes later."""
    instance = request.app[INSTANCE]
    try:
        handle = await _handle_of(request)
        scheme = request.query.get("scheme") or urlsplit(instance.base).scheme
        found = await subscriptions.subscribe(request.app[SESSION], instance, handle, scheme)
    except Refused as exc:
        return _json({"error": exc.error, "message": str(exc)}, 400)
    return _json(
        {"group": found.group["id"], "follow": found.follow["id"]}, 200, "application/json"
    )


async def unsubscribe(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    try:
        handle = await _handle_of(request)
        await subscriptions.unsubscribe(request.app[SESSION], instance, handle)
    except Refused as exc:
        return _json({"error": exc.error, "message": str(exc)}, 400)
    return _json({"unsubscribed": handle})


async def subscription_list(request: web.Request) -> web.Response:
    listing = subscriptions.listing(request.app[INSTANCE])
    return _json({"subscriptions": listing})

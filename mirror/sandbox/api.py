"""The sandbox's JSON routes: each profile's lookup, and the tests' own view.

The lookups (resolve_object) answer as the real servers answer an anonymous
client: lemmy_api.py (Lemmy's /api/v3/) and piefed_api.py (PieFed's
/api/alpha/). Both servers serve `/api/v3/federated_instances`;
`/api/threads` is the sandbox's own view of everything it stored, refused and
failed.
"""

from __future__ import annotations

from aiohttp import web

from mirror.sandbox.lemmy_api import resolve_v3
from mirror.sandbox.piefed_api import piefed_not_found, resolve_alpha
from mirror.sandbox.state import INSTANCE
from mirror.sandbox.views import json_response


def add_routes(router: web.UrlDispatcher, api: str) -> None:
    router.add_get("/api/threads", threads_json)
    router.add_get("/api/v3/federated_instances", federated_instances)
    if api == "v3":
        router.add_get("/api/v3/resolve_object", resolve_v3)
    else:
        router.add_get("/api/alpha/resolve_object", resolve_alpha)
        # PieFed has no Lemmy API: anything else under /api/v3/ is its HTML 404.
        router.add_get("/api/v3/{tail:.*}", piefed_not_found)


async def threads_json(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    return json_response(
        {
            "threads": instance.threads(),
            "refused": instance.refused,
            "failed": instance.failed,
            "announces": instance.announces,
            "followers": sorted(instance.followers),
        }
    )


async def federated_instances(request: web.Request) -> web.Response:
    blocked = sorted(request.app[INSTANCE].blocked_domains)
    listing = {"linked": [], "allowed": [], "blocked": [{"domain": d} for d in blocked]}
    return json_response({"federated_instances": listing})

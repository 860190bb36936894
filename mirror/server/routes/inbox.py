"""POST to an inbox: HTTP-level checks here, everything else in federation.inbox."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from mirror.federation.actors import GROUP
from mirror.federation.inbox import receive
from mirror.server.appkeys import FEDERATION
from mirror.server.routes.access import public_url
from mirror.vocab.context import JSON_TYPES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.post("/inbox")
async def handle_shared_inbox(request: web.Request) -> web.Response:
    return await _handle(request, None)


@routes.post("/u/{username}/inbox")
async def handle_actor_inbox(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    actor = await request.app[FEDERATION].local_actor(username)
    if actor is None or actor.kind == GROUP:
        raise web.HTTPNotFound(text="no such actor")
    return await _handle(request, username)


@routes.post("/c/{name}/inbox")
async def handle_group_inbox(request: web.Request) -> web.Response:
    """A hosted community's inbox (Lemmy's senders use the shared one when they can)."""
    name = request.match_info["name"]
    federation = request.app[FEDERATION]
    actor = await federation.local_actor(name)
    if actor is None or actor.kind != GROUP:
        raise web.HTTPNotFound(text="no such community")
    return await _handle(request, name)


async def _handle(request: web.Request, username: str | None) -> web.Response:
    federation = request.app[FEDERATION]
    limit = federation.settings.federation.inbox_max_bytes
    peer = request.remote or "?"
    if request.content_type not in JSON_TYPES:
        return _refuse(415, f"content type {request.content_type or 'missing'!r}", request, peer)
    if request.content_length is not None and request.content_length > limit:
        return _refuse(413, f"{request.content_length} bytes > {limit}", request, peer)
    try:
        body = await _read(request, limit)
    except (ConnectionResetError, HttpProcessingError) as exc:
        # The client went away mid-body, or sent a body that does not parse
        # (a bad chunk, a short Content-Length): its mistake, not ours.
        return _refuse(400, f"the body did not arrive whole: {exc}", request, peer)
    if body is None:
        return _refuse(413, f"body over {limit} bytes", request, peer)
    verdict = await receive(
        federation,
        username=username,
        method=request.method,
        target=request.path_qs,
        url=public_url(request),
        headers=request.headers,
        body=body,
    )
    metrics = federation.metrics
    if verdict.code:
        metrics.signature_failures.labels(verdict.code).inc()
    if verdict.accepted:
        metrics.inbox_requests.labels("accepted").inc()
        log.info("inbox %s: accepted %s", request.path, verdict.reason)
        return web.Response(status=202)
    response = _refuse(verdict.status, verdict.reason, request, peer)
    if verdict.retry_after_s is not None:
        response.headers["Retry-After"] = str(verdict.retry_after_s)
    return response


async def _read(request: web.Request, limit: int) -> bytes | None:
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(status: int, reason: str, request: web.Request, peer: str) -> web.Response:
    # The reason goes to our log; the client gets the status and a short word.
    request.app[FEDERATION].metrics.inbox_requests.labels(str(status)).inc()
    log.info("inbox %s from %s refused with %d: %s", request.path, peer, status, reason)
    text = {
        400: "malformed activity",
        401: "signature check failed",
        403: "refused: this community is a read-only archive",
        413: "body too large",
        415: "expected application/activity+json",
        503: "try again later",
    }.get(status, "refused")
    return web.Response(status=status, text=text)

"""Authorized fetch: when configured, JSON GETs must carry a valid HTTP signature."""

from __future__ import annotations

import logging

from aiohttp import web

from mirror.federation.inbox import verify_sender
from mirror.federation.remote import ActorUnavailable
from mirror.server.appkeys import FEDERATION
from mirror.signatures import SignatureError

log = logging.getLogger(__name__)


def public_url(request: web.Request) -> str:
    """The request URL as the signer saw it: behind our configured base URL."""
    return request.app[FEDERATION].urls.base + request.path_qs


async def require_signed_fetch(request: web.Request) -> None:
    federation = request.app[FEDERATION]
    if not federation.settings.federation.authorized_fetch:
        return
    try:
        # Any verified actor may read (Lemmy 1.0 signs with its instance
        # actor, type Application); there is no activity whose actor to match.
        await verify_sender(
            federation,
            None,
            method=request.method,
            target=request.path_qs,
            url=public_url(request),
            headers=request.headers,
            body=None,
        )
    except (SignatureError, ActorUnavailable) as exc:
        log.info("refused unsigned or badly signed GET %s: %s", request.path_qs, exc)
        raise web.HTTPUnauthorized(text="this server requires signed requests") from None

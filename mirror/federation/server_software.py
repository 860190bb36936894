"""Which software a follower's server runs, from its NodeInfo (for the limits it keeps).

Asked once, when a server's first follower of a hosted community arrives:
PieFed runs its new-account limit on announced posts too (app/utils.py
`can_create_post`), so that server's backlog honours it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mirror.net.client import FetchError, fetch_json

if TYPE_CHECKING:
    from mirror.federation.service import Federation

log = logging.getLogger(__name__)
NODEINFO_SCHEMAS = (
    "http://nodeinfo.diaspora.software/ns/schema/2.1",
    "http://nodeinfo.diaspora.software/ns/schema/2.0",
)


async def nodeinfo(get: Callable[[str], Awaitable[Any]], url: str) -> dict[str, Any] | None:
    """The NodeInfo document of ``url``'s server, through ``get`` (a JSON GET); None if it has none.

    ``get``'s own errors pass through: each caller decides what a failure means.
    """
    parts = urlsplit(url)
    index = await get(f"{parts.scheme}://{parts.netloc}/.well-known/nodeinfo")
    links = {
        link.get("rel"): link.get("href")
        for link in (index.get("links", []) if isinstance(index, dict) else [])
        if isinstance(link, dict)
    }
    href = next((links[s] for s in NODEINFO_SCHEMAS if isinstance(links.get(s), str)), None)
    if href is None:
        return None
    info = await get(href)
    return info if isinstance(info, dict) else None


async def software_of(federation: Federation, url: str) -> str | None:
    """The NodeInfo software name of ``url``'s server; None when it does not say."""
    settings = federation.settings.federation

    async def get(target: str) -> Any:
        _, data = await fetch_json(
            federation.session,
            target,
            clock=federation.clock,
            allowed=federation.allowed,
            max_bytes=settings.fetch_max_bytes,
            accept="application/json",
        )
        return data

    try:
        info = await nodeinfo(get, url)
        name = (info or {}).get("software", {}).get("name")
        return name if isinstance(name, str) else None
    except (FetchError, AttributeError) as exc:
        log.info("NodeInfo of %s: %s; its software is unknown", urlsplit(url).netloc, exc)
        return None

"""Ask a target server, as an anonymous client, whether it holds one of our objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from mirror.net.client import FetchError, query_api
from mirror.net.guard import Allowance
from mirror.publish.servers import Server

#: Lookup answers are small; a larger one is not what we asked for.
MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Found:
    pass


@dataclass(frozen=True, slots=True)
class NotFound:
    reason: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The server offers no lookup to us (API off, login required, no such route)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Later:
    """The lookup itself failed for now (network, 5xx, 429): ask again, uncounted."""

    reason: str
    #: The server says we ask too fast: slow down for all its lookups.
    too_fast: bool = False


Answer = Found | NotFound | Unavailable | Later


def lookup_url(server: Server, target_id: str, object_url: str) -> str:
    """The lookup's URL on the target's host, for ``object_url``."""
    parts = urlsplit(target_id)
    assert server.lookup_path is not None
    return f"{parts.scheme}://{parts.netloc}{server.lookup_path}?q={quote(object_url, safe='')}"


async def ask(
    session: aiohttp.ClientSession,
    server: Server,
    target_id: str,
    object_url: str,
    *,
    allowed: Allowance,
) -> Answer:
    """Whether the target holds ``object_url`` (not deleted)."""
    if server.lookup_path is None:
        return Unavailable(f"{server.name} offers no lookup")
    url = lookup_url(server, target_id, object_url)
    try:
        status, data = await query_api(session, url, allowed=allowed, max_bytes=MAX_ANSWER_BYTES)
    except FetchError as exc:
        return Later(str(exc))
    if status == 200:
        if _names(data, object_url):
            return Found()
        return NotFound(f"the lookup answered with another object, or a deleted one ({url})")
    error = _error(data)
    if status == 429 or (status == 400 and any(m in error for m in server.too_fast)):
        return Later(f"lookup: HTTP {status} {error}".strip(), too_fast=True)
    if status >= 500:
        return Later(f"lookup: HTTP {status}")
    if status in (400, 404) and any(marker in error for marker in server.not_found):
        return NotFound(f"{server.name} does not show it ({error})")
    return Unavailable(f"lookup: HTTP {status} {error}".strip())


def _names(data: Any, object_url: str) -> bool:
    """The answer describes our object: some `ap_id` in it is its URL.

    Lemmy nests the object in a view (`{"post": {"post": {"ap_id": ...}}}`),
    PieFed in its own; looking for the id anywhere in the answer reads both.
    Lemmy 1.0 answers 200 for a deleted comment (or a deleted post that has
    comments) with `"deleted": true`: that is not holding it.
    """
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if value.get("ap_id") == object_url:
                return not value.get("deleted") and not value.get("removed")
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _error(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    parts = [data.get(key) for key in ("error", "message")]
    return " ".join(p for p in parts if isinstance(p, str))

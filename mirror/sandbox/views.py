"""What both lookups read from a stored item: its body, date, language, place in the tree."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mirror.sandbox.state import Instance, Stored


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def parse_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def item_date(instance: Instance, item: Stored) -> datetime:
    return parse_time(instance.shown_date(item)) or datetime.now(UTC)


def markdown_body(obj: dict[str, Any]) -> str | None:
    """The body both servers keep: `source` when it is Markdown, else the content."""
    source = obj.get("source")
    if isinstance(source, dict) and isinstance(source.get("content"), str):
        return str(source["content"])
    content = obj.get("content")
    return content if isinstance(content, str) else None


def link(obj: dict[str, Any]) -> str | None:
    for attachment in obj.get("attachment") or []:
        if isinstance(attachment, dict) and attachment.get("type") == "Link":
            href = attachment.get("href")
            return href if isinstance(href, str) else None
    return None


def language(obj: dict[str, Any]) -> str | None:
    language = obj.get("language")
    identifier = language.get("identifier") if isinstance(language, dict) else None
    return identifier if isinstance(identifier, str) else None


def comment_path(instance: Instance, item: Stored) -> list[int]:
    """Comment ids from the top comment down to this one (both servers' `path`, after 0)."""
    ids = []
    current: Stored | None = item
    while current is not None and current.kind == "comment":
        ids.append(current.local_id)
        current = instance.objects.get(current.parent or "")
    return ids[::-1]


def comments_of(instance: Instance, post: Stored) -> list[Stored]:
    return [i for i in instance.objects.values() if i.kind == "comment" and i.post == post.id]


def descendants(instance: Instance, item: Stored) -> int:
    children = instance.children()
    count, stack = 0, [item.id]
    while stack:
        below = children.get(stack.pop(), [])
        count += len(below)
        stack.extend(c.id for c in below)
    return count


def self_vote(item: Stored) -> int:
    # Both servers count the author's own vote on what arrives in a Create;
    # a parent Lemmy fetched has none.
    return 1 if item.announced else 0


def account_published(instance: Instance, actor: str) -> datetime:
    published = parse_time((instance.actors.get(actor) or {}).get("published"))
    return published or instance.actor_seen.get(actor) or datetime.now(UTC)

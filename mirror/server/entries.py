"""What a page shows of a published object: its content, and what the archive said of it.

One select reads an object with its publication and the reconstructed item
behind it (score, original author, time as precise as the dump gave it),
so a page reads any number of objects in one query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup

from mirror.db.base import table_of
from mirror.db.models import Alias, ApObject, Author, Comment, Community, Post, Publication
from mirror.publish.attribution import parse_time, split_content
from mirror.publish.render import sanitize
from mirror.server import display
from mirror.vocab.actor import original_profile
from mirror.vocab.ids import Urls

OBJECTS = table_of(ApObject)
PUBLICATIONS = table_of(Publication)
_ALIASES = table_of(Alias)
_POSTS = table_of(Post)
_COMMENTS = table_of(Comment)
_AUTHORS = table_of(Author)
_COMMUNITIES = table_of(Community)
#: The item an object was built from: publications keep the id it had then,
#: and a later merge may have made that id an alias of another.
ITEM_ID = sa.func.coalesce(_ALIASES.c.target, PUBLICATIONS.c.item_id)
#: When the original was written, as the dump had it; else the object's own time.
PUBLISHED_AT = sa.func.coalesce(_POSTS.c.published_at, _COMMENTS.c.published_at)


def _either(name: str) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(_POSTS.c[name], _COMMENTS.c[name]).label(name)


def select_entries() -> sa.Select[Any]:
    """Objects with their publication and item; callers add where, order and limit."""
    return sa.select(
        OBJECTS.c.id,
        OBJECTS.c.actor,
        OBJECTS.c.json,
        OBJECTS.c.deleted_at,
        PUBLICATIONS.c.kind,
        PUBLICATIONS.c.parent_id,
        _either("score"),
        _either("upvotes"),
        _either("downvotes"),
        PUBLISHED_AT.label("published_at"),
        _either("published_raw"),
        _either("published_precision_s"),
        _AUTHORS.c.handle.label("author"),
        _COMMUNITIES.c.name.label("community_name"),
        _COMMUNITIES.c.instance.label("community_instance"),
        _COMMUNITIES.c.title.label("community_title"),
    ).select_from(
        OBJECTS.outerjoin(PUBLICATIONS, PUBLICATIONS.c.id == OBJECTS.c.id)
        .outerjoin(_ALIASES, _ALIASES.c.alias == PUBLICATIONS.c.item_id)
        .outerjoin(_POSTS, _POSTS.c.id == ITEM_ID)
        .outerjoin(_COMMENTS, _COMMENTS.c.id == ITEM_ID)
        .outerjoin(
            _AUTHORS, _AUTHORS.c.id == sa.func.coalesce(_POSTS.c.author_id, _COMMENTS.c.author_id)
        )
        .outerjoin(_COMMUNITIES, _COMMUNITIES.c.id == _POSTS.c.community_id)
    )


@dataclass(slots=True)
class Entry:
    """One object as the pages show it."""

    id: str
    url: str
    actor: str
    actor_url: str
    kind: str  # post, comment, orphan (a comment of an unknown post), or "" (no publication)
    title: str
    #: The sanitised content, without and with the attribution block.
    body: Markup
    attribution: Markup
    author: str | None
    author_url: str | None
    community: str | None
    community_url: str | None
    published: datetime | None
    precision_s: int | None
    published_raw: str | None
    points: str
    deleted: bool
    parent_id: str | None
    #: The object's own inReplyTo (for objects without a publication).
    in_reply_to: str | None
    #: A post has a name (an object without a publication is judged by that alone).
    is_post: bool
    replies: list[Entry] = field(default_factory=list)

    @property
    def when(self) -> str:
        return display.human_time(self.published, self.precision_s)

    @property
    def iso(self) -> str:
        if self.published is None:
            return ""
        return self.published.strftime("%Y-%m-%dT%H:%M:%SZ")

    def count(self) -> int:
        """Replies under this entry, at every depth."""
        total, stack = 0, list(self.replies)
        while stack:
            entry = stack.pop()
            total += 1
            stack.extend(entry.replies)
        return total


def entry_of(row: Any, urls: Urls) -> Entry:
    document = row.json if isinstance(row.json, dict) else {}
    content = document.get("content")
    body, block = split_content(sanitize(content)) if isinstance(content, str) else ("", "")
    published = row.published_at or parse_time(_text(document.get("published")))
    community = None
    if row.community_name and row.community_instance:
        community = f"{row.community_name}@{row.community_instance}"
    return Entry(
        id=row.id,
        url=urls.object(row.id),
        actor=row.actor,
        actor_url=urls.actor(row.actor),
        kind=row.kind or "",
        title=display.title_of(document),
        body=Markup(body),
        attribution=Markup(block),
        author=row.author,
        author_url=original_profile(row.author) if row.author else None,
        community=community or row.community_title,
        community_url=(
            f"https://{row.community_instance}/c/{row.community_name}" if community else None
        ),
        published=published,
        precision_s=row.published_precision_s if row.published_at else None,
        published_raw=row.published_raw if row.published_at else None,
        points=display.points(row.score, row.upvotes, row.downvotes),
        deleted=row.deleted_at is not None,
        parent_id=row.parent_id,
        in_reply_to=_text(document.get("inReplyTo")),
        is_post=row.kind == "post" if row.kind else _text(document.get("name")) is not None,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

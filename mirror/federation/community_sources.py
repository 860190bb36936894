"""The reconstructed community a hosted Group shows, and its posts.

A source is named as `mirror backfill --from` names one
(mirror.publish.plan.community_matches): ``name@instance``, or where the
pages printed only a title, ``Title@instance`` or the title; ``unknown``
stands for the posts of no known community.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.db.models import Author, Comment, Community, Post
from mirror.errors import MirrorError

UNKNOWN = "unknown"


class UnknownSource(MirrorError):
    """A source that names no reconstructed community, or several."""


@dataclass(frozen=True, slots=True)
class Source:
    #: How it is stored and matched: the handle when there is one.
    spec: str
    name: str | None
    instance: str | None
    title: str | None
    community_ids: tuple[str, ...]

    @property
    def handle(self) -> str | None:
        return f"{self.name}@{self.instance}" if self.name and self.instance else None

    @property
    def original_url(self) -> str | None:
        """The original community on its Lemmy (`/c/NAME`), or its instance when that is all."""
        if self.handle:
            return f"https://{self.instance}/c/{self.name}"
        return f"https://{self.instance}/" if self.instance else None

    @property
    def label(self) -> str:
        if self.spec == UNKNOWN:
            return "posts of no known community"
        return f"!{self.handle}" if self.handle else self.spec


def resolve(conn: sa.Connection, spec: str) -> Source:
    """The reconstructed community ``spec`` names; UnknownSource when none or several do."""
    wanted = spec.strip().lstrip("!")
    if wanted == UNKNOWN:
        return Source(UNKNOWN, None, None, None, ())
    rows = [
        row
        for row in conn.execute(sa.select(Community).order_by(Community.id))
        if wanted in _names(row)
    ]
    if not rows:
        raise UnknownSource(
            f"source {spec!r}: no reconstructed community is called that "
            "(name@instance, its title, or unknown; `mirror inspect` lists them)"
        )
    handles = sorted({f"{r.name}@{r.instance}" for r in rows if r.name and r.instance})
    if len(handles) > 1:
        raise UnknownSource(
            f"source {spec!r} names {len(handles)} communities ({', '.join(handles)}); "
            "name one by name@instance"
        )
    with_handle = next((r for r in rows if r.name and r.instance), None)
    first = with_handle or rows[0]
    instances = {r.instance for r in rows if r.instance}
    instance = first.instance or (instances.pop() if len(instances) == 1 else None)
    if with_handle is not None:
        canonical = f"{first.name}@{first.instance}"
    elif first.title and instance:
        canonical = f"{first.title}@{instance}"
    else:
        canonical = wanted
    return Source(
        spec=canonical,
        name=first.name,
        instance=instance,
        title=first.title or next((r.title for r in rows if r.title), None),
        community_ids=tuple(r.id for r in rows),
    )


def _names(row: Any) -> set[str]:
    names = set()
    if row.name and row.instance:
        names.add(f"{row.name}@{row.instance}")
    if row.title:
        names.add(row.title)
        if row.instance:
            names.add(f"{row.title}@{row.instance}")
    return names


@dataclass(frozen=True, slots=True)
class PostLine:
    """A post as a hosted community's page lists it."""

    id: str
    title: str
    author: str | None
    published: datetime | None
    comments: int


def list_posts(
    conn: sa.Connection, source: Source, *, offset: int, limit: int
) -> tuple[int, list[PostLine]]:
    """The source's posts, newest first (unknown times last), and how many there are."""
    where = (
        Post.community_id.is_(None)
        if source.spec == UNKNOWN
        else Post.community_id.in_(source.community_ids)
    )
    total = conn.scalar(sa.select(sa.func.count()).select_from(Post).where(where)) or 0
    comments = (
        sa.select(sa.func.count())
        .select_from(Comment)
        .where(Comment.post_id == Post.id)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(Post.id, Post.title, Post.published_at, Author.handle, comments.label("n"))
        .outerjoin(Author, Author.id == Post.author_id)
        .where(where)
        .order_by(Post.published_at.is_(None), Post.published_at.desc(), Post.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return total, [
        PostLine(r.id, r.title or "(untitled)", r.handle, r.published_at, r.n or 0) for r in rows
    ]

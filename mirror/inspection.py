"""Read the stored reconstruction back: one JSON document, or readable threads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db.models import Alias, Author, Comment, Community, DumpFile, Observation, Post
from mirror.wording import counted

Doc = dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def _handle(name: str | None, instance: str | None) -> str | None:
    return f"{name}@{instance}" if name and instance else None


def build_document(engine: Engine) -> Doc:
    """The whole reconstruction in the shape ``mirror inspect --json`` prints."""
    return _document(engine, texts=True)


def build_outline(engine: Engine) -> Doc:
    """The document without bodies and sources, saying instead whether each item
    has a body (``has_body``): what planning a backfill reads.

    Bodies are most of a reconstruction's memory (the benchmark corpus's
    30,000 items: 114 MB with them, 30 MB without); a backfill reads them
    a few hundred at a time as it builds objects (:func:`load_bodies`).
    """
    return _document(engine, texts=False)


def load_bodies(conn: sa.Connection, ids: Sequence[str]) -> dict[str, str | None]:
    """The bodies of these posts and comments, by id."""
    bodies: dict[str, str | None] = {}
    for table in (Post, Comment):
        bodies.update(conn.execute(sa.select(table.id, table.body).where(table.id.in_(ids))).all())
    return bodies


def _document(engine: Engine, *, texts: bool) -> Doc:
    with engine.connect() as conn:
        communities = {r.id: r for r in conn.execute(sa.select(Community).order_by(Community.id))}
        authors = {r.id: r for r in conn.execute(sa.select(Author).order_by(Author.handle))}
        sources = _sources(conn) if texts else {}
        aliases = aliases_of(conn)
        posts = list(conn.execute(items_query(Post, texts)))
        comments = list(conn.execute(items_query(Comment, texts)))
    shape = Shapes(communities, {a.id: a.handle for a in authors.values()}, aliases, sources, texts)
    return {
        "communities": [community_fields(c) for c in communities.values()],
        "authors": [author_fields(a) for a in authors.values()],
        "posts": [shape.post(p) for p in posts],
        "comments": [shape.comment(c) for c in comments],
    }


def author_fields(a: Any) -> Doc:
    return {
        "id": a.id,
        "handle": a.handle,
        "name": a.name,
        "instance": a.instance,
        "display_name": a.display_name,
        "pronouns": a.pronouns,
        "bio": a.bio,
    }


def community_fields(c: Any) -> Doc:
    return {
        "id": c.id,
        "name": c.name,
        "instance": c.instance,
        "title": c.title,
        "handle": _handle(c.name, c.instance),
        "description": c.description,
        "readers": c.readers,
        "users_now": c.users_now,
    }


class Shapes:
    """Rows of posts and comments as the document's items.

    The whole document passes every author and alias; a streamed plan
    (mirror.publish.stream) passes those of one chunk, so both read items
    of the same shape.
    """

    def __init__(
        self,
        communities: dict[str, Any],
        authors: dict[str, str],
        aliases: dict[str, list[str]],
        sources: dict[str, list[Doc]],
        texts: bool,
    ) -> None:
        self.communities = communities
        self.authors = authors
        self.aliases = aliases
        self.sources = sources
        self.texts = texts

    def _community(self, community_id: str | None) -> Doc:
        c = self.communities.get(community_id) if community_id else None
        return {
            "community": _handle(c.name, c.instance) if c else None,
            "community_id": c.id if c else None,
            "community_title": c.title if c else None,
        }

    def _item(self, r: Any) -> Doc:
        fields: Doc = {"author": self.authors.get(r.author_id) if r.author_id else None}
        if self.texts:
            fields["body"] = r.body
        else:
            fields["has_body"] = bool(r.has_body)
        fields |= {
            "score": r.score,
            "upvotes": r.upvotes,
            "downvotes": r.downvotes,
            "published": _iso(r.published_at),
            "published_raw": r.published_raw,
            "edited": r.edited,
            "edited_at": _iso(r.edited_at),
            "edited_raw": r.edited_raw,
            # Lemmy's code (what objects send), and the name the page showed.
            "language": r.language,
            "language_name": r.language_name,
            "confidence": r.confidence,
            "aliases": [a for a in self.aliases.get(r.id, []) if a != r.id],
        }
        if self.texts:
            fields["sources"] = self.sources.get(r.id, [])
        return fields

    def post(self, p: Any) -> Doc:
        return {
            "id": p.id,
            "title": p.title,
            "title_derived": p.title_derived,
            **self._community(p.community_id),
            **self._item(p),
            "like_ratio": p.like_ratio,
            "cross_posted_from": p.cross_posted_from,
            "link_domain": p.link_domain,
            "listing_rank": p.listing_rank,
        }

    def comment(self, c: Any) -> Doc:
        return {
            "id": c.id,
            "post": c.post_id,
            "parent": c.parent_id,
            "parent_known": c.parent_known,
            **self._item(c),
            "descendants": c.descendants,
        }


def items_query(model: type[Post] | type[Comment], texts: bool) -> sa.Select[Any]:
    if texts:
        return sa.select(*model.__table__.c).order_by(model.id)
    # Without the body, whether there is one: the plan leaves out what has no text.
    columns = [c for c in model.__table__.c if c.name != "body"]
    has_body = sa.func.coalesce(sa.func.length(sa.func.trim(model.body)), 0) > 0
    return sa.select(*columns, has_body.label("has_body")).order_by(model.id)


def sources_query() -> sa.Select[Any]:
    """Observations as sources, in the document's order (the id settles ties, so that a
    page's sources come in the order the whole document's do)."""
    return (
        sa.select(Observation.item_id, DumpFile.name, Observation.first_line, Observation.last_line)
        .join(DumpFile, DumpFile.sha256 == Observation.dump_sha256)
        .order_by(DumpFile.name, Observation.first_line, Observation.id)
    )


def _sources(conn: sa.Connection) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = defaultdict(list)
    for item_id, name, first, last in conn.execute(sources_query()):
        out[item_id].append({"file": name, "first_line": first, "last_line": last})
    return out


def aliases_of(conn: sa.Connection, of: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Each item's aliases (of these items only, when given)."""
    out: dict[str, list[str]] = defaultdict(list)
    query = sa.select(Alias.alias, Alias.target).order_by(Alias.alias)
    if of is not None:
        query = query.where(Alias.target.in_(of))
    for alias, target in conn.execute(query):
        out[target].append(alias)
    return out


def summary(doc: Doc) -> str:
    """How many of each: the line `mirror inspect` opens with."""
    return ", ".join(
        counted(len(doc[key]), one, key)
        for key, one in (
            ("posts", "post"),
            ("comments", "comment"),
            ("authors", "author"),
            ("communities", "community"),
        )
    )


def render_threads(doc: Doc, width: int = 100) -> Iterator[str]:
    """Readable threads: each post, then its comments indented under their parents."""
    by_post: dict[str | None, list[Doc]] = defaultdict(list)
    for comment in doc["comments"]:
        by_post[comment["post"]].append(comment)
    for post in doc["posts"]:
        yield from _render_post(post, by_post.get(post["id"], []), width)
        yield ""
    orphans = by_post.get(None, [])
    if orphans:
        yield f"── comments whose post is unknown ({len(orphans)}) ──"
        yield from _render_comments(orphans, width)


def _render_post(post: Doc, comments: list[Doc], width: int) -> Iterator[str]:
    title = post["title"] or "(no title)"
    marker = " (derived)" if post["title_derived"] else ""
    yield f"■ {title}{marker}  [{post['id']}]"
    where = post["community"] or post["community_title"] or "unknown community"
    who = post["author"] or "unknown author"
    yield f"  {who} in {where} · {_meta(post)}"
    if post["cross_posted_from"]:
        yield f"  cross-posted from {post['cross_posted_from']}"
    if post["body"]:
        yield f"  {_excerpt(post['body'], width - 2)}"
    yield from _render_comments(comments, width)


def _render_comments(comments: list[Doc], width: int) -> Iterator[str]:
    children: dict[str | None, list[Doc]] = defaultdict(list)
    ids = {c["id"] for c in comments}
    for c in comments:
        parent = c["parent"] if c["parent"] in ids else None
        children[parent].append(c)

    def walk(parent: str | None, depth: int) -> Iterator[str]:
        for c in children.get(parent, []):
            indent = "    " * depth + "  "
            place = "" if c["parent_known"] or c["parent"] else " (parent unknown)"
            who = c["author"] or "unknown author"
            yield f"{indent}└ {who} · {_meta(c)}{place}  [{c['id']}]"
            yield f"{indent}  {_excerpt(c['body'] or '', max(20, width - len(indent) - 2))}"
            yield from walk(c["id"], depth + 1)

    yield from walk(None, 1)


def _meta(item: Doc) -> str:
    parts = []
    if item["score"] is not None:
        parts.append(counted(item["score"], "point"))
    if item["upvotes"] is not None:
        parts.append(f"+{item['upvotes']}/-{item['downvotes']}")
    if item["published_raw"]:
        parts.append(item["published_raw"])
    if item["edited"]:
        parts.append("edited" + (f" {item['edited_raw']}" if item["edited_raw"] else ""))
    if item["language_name"]:
        parts.append(item["language_name"])
    parts.append(f"confidence {item['confidence']}")
    return " · ".join(parts)


def _excerpt(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"

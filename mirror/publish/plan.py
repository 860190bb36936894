"""Which reconstructed items a backfill sends, in what order, replying to what.

Pure: takes the stored reconstruction (mirror.inspection's document) and
the options, returns the ordered items. A post comes before its comments, a
parent before its replies, oldest first within a level (unknown times
last). Adjustments, each said in the item's attribution line:
- a comment whose parent is unknown is attached to its post (top level);
- Lemmy refuses comments deeper than 50 levels: deeper ones reply to their
  ancestor at depth 49, so they sit at depth 50;
- a comment whose post is unknown cannot go to a community: it goes to the
  followers as a standalone Note, or is skipped (config).
Items with neither title nor body (a listing entry the page showed nothing
of) are left out: they would be an "(untitled)" post with nothing in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Lemmy's MAX_COMMENT_DEPTH_LIMIT (shared/docs/lemmy-receive-rules.md §4).
MAX_DEPTH = 50
UNKNOWN_SOURCE = "unknown"
ALL_SOURCES = "all"


@dataclass(frozen=True, slots=True)
class Options:
    source: str = ALL_SOURCES
    since: datetime | None = None
    limit: int | None = None
    unknown_post_comments: str = "followers"
    exclude_authors: frozenset[str] = frozenset()
    exclude_communities: frozenset[str] = frozenset()
    exclude_items: frozenset[str] = frozenset()


def options_from(config: Any, **chosen: Any) -> Options:
    """Options with the config's exclusions ([backfill]) and the command's choices."""
    return Options(
        unknown_post_comments=config.unknown_post_comments,
        exclude_authors=frozenset(config.exclude_authors),
        exclude_communities=frozenset(config.exclude_communities),
        exclude_items=frozenset(config.exclude_items),
        **chosen,
    )


@dataclass(slots=True)
class Item:
    """One item to publish: a post, a comment in a community, or a followers-only comment."""

    kind: str  # post, comment, or orphan (a comment of an unknown post)
    data: dict[str, Any]
    post: str | None = None
    #: The item this one replies to (a comment id, or the post id when top level).
    reply_to: str | None = None
    depth: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.data["id"])


@dataclass(slots=True)
class Plan:
    items: list[Item]
    #: Items left out, with why (excluded, skipped orphans...): for the report.
    left_out: dict[str, int]

    def count(self, kind: str) -> int:
        return sum(1 for item in self.items if item.kind == kind)


def _time_key(item: dict[str, Any]) -> tuple[int, str, str]:
    published = item.get("published")
    return (0, published, item["id"]) if published else (1, "", item["id"])


def community_matches(spec: str, post: dict[str, Any], communities: dict[str, Any]) -> bool:
    """`--from` names a community by handle (name@instance) or, where the page
    printed only its title, by ``Title@instance`` or the title itself."""
    if spec == ALL_SOURCES:
        return True
    if spec == UNKNOWN_SOURCE:
        return post.get("community_id") is None
    community = communities.get(post.get("community_id") or "")
    if community is None:
        return False
    names = {community.get("handle"), community.get("title")}
    if community.get("title") and community.get("instance"):
        names.add(f"{community['title']}@{community['instance']}")
    return spec.lstrip("!") in names


def is_excluded(item: dict[str, Any], options: Options, communities: dict[str, Any]) -> bool:
    if (
        item["id"] in options.exclude_items
        or set(item.get("aliases") or ()) & options.exclude_items
    ):
        return True
    if item.get("author") and item["author"] in options.exclude_authors:
        return True
    community = communities.get(item.get("community_id") or "")
    return bool(community and community.get("handle") in options.exclude_communities)


#: Why an item with no text is not published (the plan's report says how many).
NO_TEXT = "neither title nor body"


def has_text(item: dict[str, Any]) -> bool:
    """A title or a body, from the document (``body``) or the outline (``has_body``)."""
    if item.get("title"):
        return True
    if "body" in item:
        return bool((item["body"] or "").strip())
    return bool(item["has_body"])


def admit_post(
    post: dict[str, Any], options: Options, communities: dict[str, Any], left_out: dict[str, int]
) -> bool:
    """Whether a post is planned (before --limit); a left-out one is counted with why."""
    if not community_matches(options.source, post, communities):
        return False
    if options.since and not (
        post.get("published") and datetime.fromisoformat(post["published"]) >= options.since
    ):
        left_out["older than --since or time unknown"] += 1
        return False
    if is_excluded(post, options, communities):
        left_out["excluded by the config"] += 1
        return False
    if not has_text(post):
        left_out[NO_TEXT] += 1
        return False
    return True


def thread(
    post: dict[str, Any],
    comments: list[dict[str, Any]],
    options: Options,
    communities: dict[str, Any],
    left_out: dict[str, int],
) -> list[Item]:
    """A chosen post and its comments (all of them, any order), in publication order."""
    scope = {"community_id": post.get("community_id")}
    kept = []
    for comment in comments:
        if is_excluded({**comment, **scope}, options, communities):
            left_out["excluded by the config"] += 1
        elif not has_text(comment):
            # Its replies are attached to the post, as when a parent was not archived.
            left_out[NO_TEXT] += 1
        else:
            kept.append(comment)
    items = [Item("post", post, post=post["id"])]
    present = {c["id"] for c in kept}
    by_parent: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for comment in kept:
        parent = comment.get("parent")
        # A parent that is excluded or not in this post is as good as unknown here.
        by_parent[parent if parent in present else None].append(comment)
    _walk(items, by_parent, post["id"])
    return items


def admit_orphan(
    comment: dict[str, Any], options: Options, communities: dict[str, Any], left_out: dict[str, int]
) -> bool:
    """Whether a comment of an unknown post may go to the followers (before the config's choice)."""
    if options.source not in (ALL_SOURCES, UNKNOWN_SOURCE):
        return False
    if is_excluded({**comment, "community_id": None}, options, communities):
        return False
    if not has_text(comment):
        left_out[NO_TEXT] += 1
        return False
    return True


ORPHAN_NOTE = "a reply in a thread that was not archived"
ORPHANS_SKIPPED = "comments of unknown posts (skipped by the config)"


def build_plan(document: dict[str, Any], options: Options) -> Plan:
    """The whole plan at once, from a document (mirror.publish.stream walks the database
    the same way a chunk at a time)."""
    communities = {c["id"]: c for c in document["communities"]}
    left_out: dict[str, int] = defaultdict(int)
    posts = [
        p
        for p in sorted(document["posts"], key=_time_key)
        if admit_post(p, options, communities, left_out)
    ]
    if options.limit is not None:
        left_out["beyond --limit"] += max(0, len(posts) - options.limit)
        posts = posts[: options.limit]
    chosen = {p["id"] for p in posts}
    by_post: dict[str, list[dict[str, Any]]] = defaultdict(list)
    orphans = []
    for comment in document["comments"]:
        if comment.get("post") is None:
            if admit_orphan(comment, options, communities, left_out):
                orphans.append(comment)
        elif comment["post"] in chosen:
            by_post[comment["post"]].append(comment)

    items: list[Item] = []
    for post in posts:
        items.extend(thread(post, by_post.get(post["id"], []), options, communities, left_out))

    if options.unknown_post_comments == "skip":
        left_out[ORPHANS_SKIPPED] += len(orphans)
    else:
        for comment in sorted(orphans, key=_time_key):
            items.append(Item("orphan", comment, notes=[ORPHAN_NOTE]))
    return Plan(items, dict(left_out))


def _walk(
    items: list[Item],
    by_parent: dict[str | None, list[dict[str, Any]]],
    post_id: str,
) -> None:
    """Pre-order, oldest sibling first; a stack, since threads can be deeper than recursion."""
    stack: list[tuple[dict[str, Any], list[str]]] = [
        (c, []) for c in reversed(sorted(by_parent.get(None, []), key=_time_key))
    ]
    while stack:
        comment, ancestors = stack.pop()
        path = [*ancestors, comment["id"]]
        notes = []
        if not ancestors and comment.get("parent") is not None:
            notes.append("its parent comment was not archived; attached to the post")
        elif not ancestors and not comment.get("parent_known", True):
            notes.append("where it sat in the thread is unknown; attached to the post")
        if len(path) > MAX_DEPTH:
            reply_to = ancestors[MAX_DEPTH - 2]
            notes.append(f"attached at depth {MAX_DEPTH}, the deepest Lemmy allows")
        else:
            reply_to = ancestors[-1] if ancestors else post_id
        items.append(
            Item(
                "comment",
                comment,
                post=post_id,
                reply_to=reply_to,
                depth=min(len(path), MAX_DEPTH),
                notes=notes,
            )
        )
        children = sorted(by_parent.get(comment["id"], []), key=_time_key)
        stack.extend((child, path) for child in reversed(children))


def excluded_ids(document: dict[str, Any], options: Options) -> list[str]:
    """Every item (and alias) the config now excludes: their mirrored objects get Deletes."""
    communities = {c["id"]: c for c in document["communities"]}
    post_community = {p["id"]: p.get("community_id") for p in document["posts"]}
    out = []
    for item in document["posts"]:
        if is_excluded(item, options, communities):
            out.extend([item["id"], *(item.get("aliases") or ())])
    for item in document["comments"]:
        scoped = {**item, "community_id": post_community.get(item.get("post") or "")}
        if is_excluded(scoped, options, communities):
            out.extend([item["id"], *(item.get("aliases") or ())])
    return out

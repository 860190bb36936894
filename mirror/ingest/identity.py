"""Stable ids from what identifies an item in the dumps.

An id is a kind letter and a hash of the item's *natural key*: the parts of
an observation that every copy of the same item shares.

- community: its handle, else its title and instance (or description).
- author: the handle.
- post: its community and the first characters of its normalised body
  (quote style and whitespace mapped away, so every copy agrees), else its
  title, else its place in the dump.
- comment: its author and the first characters of its normalised body; a
  short body ("Thanks!") is not distinctive, so its post (or its place in
  the dump) joins the key.

Copies that carry less context (no author, no community) get other keys;
when they are matched to the same item the item keeps the smallest id and
the others become aliases (:mod:`mirror.ingest.store`). The surviving id
therefore does not depend on which copy was ingested first.
"""

from __future__ import annotations

from functools import lru_cache

from mirror.reconstruct.model import ParsedAuthor, ParsedCommunity
from mirror.reconstruct.text import fingerprint, normalize

#: Characters of the normalised body that key an item.
KEY_CHARS = 256
#: Characters of the normalised body whose hash finds candidate copies.
HEAD_CHARS = 48
#: Bodies shorter than this are too generic to identify an item alone.
DISTINCTIVE_CHARS = 48

PREFIX = {"post": "p", "comment": "c", "author": "a", "community": "g"}
KIND_OF_PREFIX = {prefix: kind for kind, prefix in PREFIX.items()}


def make_id(kind: str, *parts: str) -> str:
    return PREFIX[kind] + fingerprint(kind, *parts)


def community_key(community: ParsedCommunity | None) -> str:
    """What names a community inside other keys ("" when unknown)."""
    if community is None:
        return ""
    if community.handle:
        return community.handle.lower()
    title = normalize(community.title or "").casefold()
    if community.instance:
        return f"title:{title}@{community.instance}"
    # A sidebar without a host: title and description together.
    return f"title:{title}|{normalize(community.description or '')[:KEY_CHARS].casefold()}"


def community_id(community: ParsedCommunity) -> str | None:
    key = community_key(community)
    return make_id("community", key) if key and key != "title:|" else None


def author_id(author: ParsedAuthor | None) -> str | None:
    return _author_id(author.handle) if author and author.handle else None


@lru_cache(maxsize=4096)
def _author_id(handle: str) -> str:
    # A dump names the same few people on every item.
    return make_id("author", handle.lower())


def body_head(body_norm: str) -> str | None:
    return fingerprint(body_norm[:HEAD_CHARS]) if body_norm else None


def title_key(title: str | None) -> str | None:
    return fingerprint(normalize(title).casefold()) if title else None


def post_id(*, community: str, body_norm: str, title: str | None, dump_sha: str, line: int) -> str:
    if body_norm:
        return make_id("post", community, body_norm[:KEY_CHARS])
    if title:
        return make_id("post", community, "title", normalize(title).casefold())
    return make_id("post", community, "at", dump_sha, str(line))


def comment_id(*, author: str, body_norm: str, post: str | None, dump_sha: str, line: int) -> str:
    if len(body_norm) >= DISTINCTIVE_CHARS:
        return make_id("comment", author, body_norm[:KEY_CHARS])
    context = post if post else f"at:{dump_sha}:{line}"
    return make_id("comment", author, body_norm, context)


def disambiguated(natural: str, *context: str) -> str:
    """The id for an item whose natural key collides with a different item."""
    return make_id(KIND_OF_PREFIX[natural[0]], natural, *context)

"""Parsed items as table rows, and the rules that fold one copy into another."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from json import encoder as json_encoder
from json.encoder import encode_basestring_ascii
from typing import Any

from mirror.ingest import identity
from mirror.ingest.match import BODIES_REMEMBERED, norm, norm_head, paras, unellipsed
from mirror.reconstruct.model import (
    Confidence,
    ParsedAuthor,
    ParsedComment,
    ParsedCommunity,
    ParsedPost,
)
from mirror.reconstruct.text import fingerprint
from mirror.reconstruct.times import Moment

Row = dict[str, Any]

#: Paragraphs shorter than this are too common to find an item by.
PARAGRAPH_INDEX_CHARS = 40

COUNT_FIELDS = {
    "post": ("score", "upvotes", "downvotes", "like_ratio", "listing_rank"),
    "comment": ("score", "upvotes", "downvotes", "descendants"),
}
FILL_FIELDS = {
    "post": ("author_id", "community_id", "cross_posted_from", "link_domain"),
    "comment": ("author_id", "post_id"),
    "community": ("name", "instance", "title", "description", "founded_raw"),
    "author": (
        "display_name",
        "pronouns",
        "bio",
        "posts_count_raw",
        "comments_count_raw",
        "joined_raw",
        "cake_day_raw",
    ),
}
LATEST_FIELDS = {
    "community": ("readers", "users_now"),
    "author": ("posts_count_raw", "comments_count_raw"),
}


def confidence_rank(value: str | None) -> int:
    return Confidence(value).rank if value else -1


def paragraph_hashes(body: str | None) -> frozenset[str]:
    return _paragraph_hashes(body) if body else frozenset()


def needs_fragments(body: str | None, *, low: bool) -> bool:
    """Whether a comment is indexed by its paragraphs (fragment rows), for pieces to find.

    A sure comment of one paragraph is found by its head already (a piece
    of it is all of it); pieces (low) and comments of several paragraphs
    need them, even when only one paragraph is long enough to be hashed: a
    piece of that paragraph alone has another head.
    """
    return bool(body) and (low or len(paras(body)) >= 2)


@lru_cache(maxsize=BODIES_REMEMBERED)
def _paragraph_hashes(body: str) -> frozenset[str]:
    return frozenset(fingerprint(p) for p in paras(body) if len(p) >= PARAGRAPH_INDEX_CHARS)


def _moment_columns(prefix: str, moment: Moment | None) -> Row:
    if moment is None:
        return {f"{prefix}_at": None, f"{prefix}_raw": None}
    return {f"{prefix}_at": moment.estimated, f"{prefix}_raw": moment.raw}


def _item_columns(item: ParsedPost | ParsedComment, captured_at: datetime | None) -> Row:
    body = item.body
    votes = item.votes
    shows_counts = (
        votes.score is not None
        or votes.upvotes is not None
        or votes.downvotes is not None
        or votes.like_ratio is not None
    )
    row: Row = {
        "author_id": identity.author_id(item.author),
        "body": body,
        "body_head": identity.body_head(norm_head(body, identity.HEAD_CHARS)) if body else None,
        "score": votes.score,
        "upvotes": votes.upvotes,
        "downvotes": votes.downvotes,
        "counts_captured_at": captured_at,
        "published_precision_s": item.published.precision_s if item.published else None,
        "edited_precision_s": item.edited_at.precision_s if item.edited_at else None,
        "edited": item.edited,
        "language": item.language,
        "language_name": item.language_name,
        "confidence": item.confidence.value,
        "_shows_counts": shows_counts,
    }
    row.update(_moment_columns("published", item.published))
    row.update(_moment_columns("edited", item.edited_at))
    return row


def post_row(post: ParsedPost, community_id: str | None, captured_at: datetime | None) -> Row:
    row = _item_columns(post, captured_at)
    row["_shows_counts"] = row["_shows_counts"] or post.listing_rank is not None
    row.update(
        community_id=community_id,
        title=post.title,
        title_derived=post.title_derived,
        title_key=identity.title_key(post.title) if post.title and not post.title_derived else None,
        like_ratio=post.votes.like_ratio,
        cross_posted_from=post.cross_posted_from,
        link_domain=post.link_domain,
        listing_rank=post.listing_rank,
    )
    return row


def comment_row(comment: ParsedComment, captured_at: datetime | None) -> Row:
    row = _item_columns(comment, captured_at)
    row["_shows_counts"] = row["_shows_counts"] or comment.descendants is not None
    row.update(
        post_id=None,
        parent_id=None,
        parent_known=comment.parent_known,
        descendants=comment.descendants,
    )
    return row


def community_row(community: ParsedCommunity) -> Row:
    return {
        "name": community.name,
        "instance": community.instance,
        "title": community.title,
        "description": community.description,
        "readers": community.readers,
        "users_now": community.users_now,
        "founded_raw": community.founded.raw if community.founded else None,
    }


def author_row(author: ParsedAuthor) -> Row:
    return {
        "handle": author.handle,
        "name": author.name,
        "instance": author.instance,
        "display_name": author.display_name,
        "pronouns": author.pronouns,
        "bio": author.bio,
        "posts_count_raw": author.posts_count_raw,
        "comments_count_raw": author.comments_count_raw,
        "joined_raw": author.joined.raw if author.joined else None,
        "cake_day_raw": author.cake_day_raw,
    }


#: Row keys a provenance record leaves out: the text (provenance points at
#: the lines it came from), keys derived from it, and the writer's own.
_NOT_OBSERVED = frozenset({"id", "body", "body_head", "title_key", "created_at", "updated_at"})


def observation_data(row: Row) -> str:
    """What one copy said besides its text, for the provenance record (a JSON object).

    Serialised when the copy is observed; the writer appends the references
    it resolved (:func:`with_references`) and stores the text as it is.
    """
    said = {
        key: value
        for key, value in row.items()
        if value is not None and key not in _NOT_OBSERVED and key[0] != "_"
    }
    return _dumps(said)


def _times(value: Any) -> str:
    """What json cannot write itself that a record holds: times, in ISO 8601."""
    if isinstance(value, datetime):
        # Equal times in other offsets are written differently: both are the key.
        return _isoformat(value, value.utcoffset())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """json's C encoder with json.dumps's settings, or None where there is none."""
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:
        return None
    # markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan
    settings = (None, _times, encode_basestring_ascii, None, ": ", ", ")
    try:
        return make(*settings, False, False, True)
    except TypeError:  # another signature: json.dumps it is
        return None


@lru_cache(maxsize=256)
def _isoformat(value: datetime, _offset: timedelta | None) -> str:
    # A dump's records share their times (the capture time, estimates hours
    # before it): a cached one costs a tenth of formatting it again.
    return value.isoformat()


_ENCODE = _c_encoder()


def _dumps(obj: dict[str, Any]) -> str:
    """``json.dumps(obj)`` with times in ISO 8601, by one C encoder built once.

    json.dumps builds its C encoder anew on every call (json/encoder.py,
    JSONEncoder.iterencode): half the time of a provenance record's
    dozen keys, and every copy of every dump has one.
    """
    return "".join(_ENCODE(obj, 0)) if _ENCODE is not None else json.dumps(obj, default=_times)


def with_references(data: str, references: dict[str, str]) -> str:
    """A provenance record (a JSON object's text) with these keys appended."""
    if not references:
        return data
    ids = "".join(references.values())
    if ids.isascii() and ids.isalnum():
        # Ids (ASCII letters and digits) need no escaping; json.dumps built an
        # encoder per call, for every copy stored.
        extra = ", ".join([f'"{key}": "{value}"' for key, value in references.items()])
    else:
        extra = json.dumps(references)[1:-1]
    return f"{data[:-1]}, {extra}}}" if data != "{}" else f"{{{extra}}}"


def fold(kind: str, dst: Row, src: Row) -> bool:
    """Fold the copy ``src`` into the stored item ``dst``; True if ``dst`` changed.

    Known values are never lost: unknown fields are filled, the better copy
    of a body or a time wins, counts come from the most recent snapshot.
    Every choice is a total order on the two values, so folding copies in
    any order gives the same item.
    """
    before = dict(dst)
    for field in FILL_FIELDS.get(kind, ()):
        if src.get(field) is not None and (
            dst.get(field) is None
            or (field not in _REFERENCES and str(src[field]) < str(dst[field]))
        ):
            dst[field] = src[field]
    for field in LATEST_FIELDS.get(kind, ()):
        if src.get(field) is not None:
            dst[field] = src[field]
    if kind in ("post", "comment"):
        _fold_item(kind, dst, src)
    return dst != before


# Ids of other items: the first known one stays (compatibility was checked).
_REFERENCES = frozenset({"author_id", "community_id", "post_id"})


def _typography(text: str) -> int:
    """How much typographic detail (curly quotes, dashes) a copy kept."""
    return sum(1 for ch in text if ord(ch) > 127)


def _better_text(new: str, old: str) -> bool:
    """Whether ``new`` is the better copy of a text than ``old``.

    More text wins (first without the "..." that marks a copy cut short:
    "garden don..." is as long as "garden don't."), then more typography;
    the smaller text breaks ties, so that the choice is a total order and
    folding copies in any order keeps the same one.
    """
    new_rank, old_rank = _text_rank(new), _text_rank(old)
    return new_rank > old_rank if new_rank != old_rank else new < old


def _text_rank(text: str) -> tuple[int, int, int]:
    normal = norm(text)
    return len(unellipsed(normal)), len(normal), _typography(text)


def _time_rank(row: Row, prefix: str) -> tuple[Any, ...]:
    """Lower is better: the finer precision, then the earlier estimate."""
    at = row.get(f"{prefix}_at")
    return (
        row.get(f"{prefix}_precision_s") or 0,
        at.timestamp() if at else float("inf"),
        row.get(f"{prefix}_raw") or "",
    )


def _fold_item(kind: str, dst: Row, src: Row) -> None:
    if kind == "post" and src.get("title"):
        src_real, dst_real = not src.get("title_derived"), not dst.get("title_derived")
        if (
            not dst.get("title")
            or (src_real and not dst_real)
            or (src_real == dst_real and _better_text(src["title"], dst["title"]))
        ):
            dst["title"], dst["title_derived"] = src["title"], src.get("title_derived", False)
            dst["title_key"] = src.get("title_key")
    if kind == "comment" and src.get("parent_known") and not dst.get("parent_known"):
        dst["parent_id"], dst["parent_known"] = src.get("parent_id"), True

    if src.get("language_name") is not None and _language_rank(src) < _language_rank(dst):
        dst["language"], dst["language_name"] = src.get("language"), src["language_name"]

    if src.get("body") is not None and _better_body(dst, src):
        dst["body"], dst["body_head"] = src["body"], src.get("body_head")

    if src.get("_shows_counts", True):
        src_time, dst_time = src.get("counts_captured_at"), dst.get("counts_captured_at")
        for field in COUNT_FIELDS[kind]:
            value, current = src.get(field), dst.get(field)
            if value is None:
                continue
            newer = dst_time is None or (src_time is not None and src_time > dst_time)
            tie = src_time == dst_time and current is not None and value > current
            if current is None or newer or tie:
                dst[field] = value
        if src_time is not None and (dst_time is None or src_time > dst_time):
            dst["counts_captured_at"] = src_time
        if "_shows_counts" in dst:
            # It holds counts now: folded into another item in turn (a bare
            # piece into a smaller-id piece in the same batch), it passes them on.
            dst["_shows_counts"] = True

    if src.get("published_raw") and (
        dst.get("published_raw") is None
        or _time_rank(src, "published") < _time_rank(dst, "published")
    ):
        for column in ("published_at", "published_raw", "published_precision_s"):
            dst[column] = src.get(column)

    if src.get("edited") is True:
        better_time = src.get("edited_raw") and (
            dst.get("edited_raw") is None or _time_rank(src, "edited") < _time_rank(dst, "edited")
        )
        if dst.get("edited") is not True or better_time:
            dst["edited"] = True
            if better_time or dst.get("edited_raw") is None:
                for column in ("edited_at", "edited_raw", "edited_precision_s"):
                    dst[column] = src.get(column)
    elif dst.get("edited") is None and src.get("edited") is False:
        dst["edited"] = False

    if confidence_rank(src.get("confidence")) > confidence_rank(dst.get("confidence")):
        dst["confidence"] = src["confidence"]


def _language_rank(row: Row) -> tuple[bool, bool, str, str]:
    """Lower is better: a language shown, then one with Lemmy's code, then the smaller.

    The code and the name the page showed go together (a copy's code with
    another copy's name would say what neither page said).
    """
    code, name = row.get("language"), row.get("language_name")
    return name is None, code is None, code or "", name or ""


def _better_body(dst: Row, src: Row) -> bool:
    """A body from a surer copy wins; between equally sure copies the fuller one."""
    if dst.get("body") is None:
        return True
    src_rank = confidence_rank(src.get("confidence"))
    dst_rank = confidence_rank(dst.get("confidence"))
    if src_rank != dst_rank:
        return src_rank > dst_rank
    return _better_text(src["body"], dst["body"])

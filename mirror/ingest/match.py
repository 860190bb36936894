"""When two copies are the same item: text relations and context compatibility.

Copies differ in quote style, whitespace, indentation, blank lines and
truncation. Two texts are the same when, after normalising, they are equal,
or one is a clear prefix of the other (a truncated copy), or one's
paragraphs are an in-order subset of the other's starting at the same
first paragraph. A low-confidence piece (cut from marker-less text) is the
same item as a fuller copy when its paragraphs are a contiguous run of it.

Context must not conflict: authors, communities, posts and real titles
that both copies show must agree.
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from typing import Any

from mirror.reconstruct.text import body_paragraphs, normalize

Row = dict[str, Any]

#: A truncated copy must keep at least this much text to count as a prefix.
MIN_PREFIX_CHARS = 40
#: Bodies whose normal forms are remembered. An entry keeps its body alive
#: as well: at 4,096 these caches held 80 MB of an ingest's 210 MB; at
#: 1,024 the benchmark corpus still hits as often (norm 44% against 46%).
BODIES_REMEMBERED = 1024


class Relation(Enum):
    NONE = 0
    EQUAL = 1
    PREFIX = 2  # one is a truncated copy of the other
    SUBSET = 3  # one's paragraphs are an in-order subset of the other's


@lru_cache(maxsize=BODIES_REMEMBERED)
def norm(body: str) -> str:
    # The same as normalize(body): whitespace collapses, so joining the
    # normalised paragraphs with a space gives the normalised whole.
    return " ".join(paras(body))


def norm_head(body: str, chars: int) -> str:
    """``norm(body)[:chars]``, normalising only as much of the body as that takes.

    Ids and heads use the opening of a text; a listing's post bodies are
    long. Normalising a prefix of the raw text gives a prefix of the
    normalised whole (whitespace only collapses, quotes map one character
    at a time), so a long enough prefix settles it.
    """
    cut = 2 * chars + 64
    while cut < len(body):
        head = normalize(body[:cut])
        if len(head) >= chars:
            return head[:chars]
        cut *= 4
    return norm(body)[:chars]


@lru_cache(maxsize=BODIES_REMEMBERED)
def paras(body: str) -> tuple[str, ...]:
    return tuple(body_paragraphs(body))


def text_relation(a: str | None, b: str | None) -> Relation:
    """How two bodies relate, symmetric in its arguments."""
    if not a or not b:
        return Relation.NONE
    if a == b:  # most copies match as they are: no need to normalise them
        return Relation.EQUAL
    # Most truncated copies are a raw prefix of the whole, and normalising a
    # prefix gives a prefix of the normalised whole (see norm_head): the
    # long whole need not be normalised (benchmark: 1,200 of 1,600 prefixes,
    # whole bodies of ~20,000 characters).
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if long.startswith(short):
        if long[len(short) :].isspace():
            return Relation.EQUAL
        stripped = unellipsed(norm(short))
        if len(stripped) >= MIN_PREFIX_CHARS:
            return Relation.PREFIX
    na, nb = norm(a), norm(b)
    if na == nb:
        return Relation.EQUAL
    # Both ways: a copy cut short with "..." can be as long as the whole
    # ("garden don..." against "garden don't."), so length does not tell
    # which one is the truncated copy.
    for short, long in ((na, nb), (nb, na)):
        stripped = unellipsed(short)
        if len(stripped) >= MIN_PREFIX_CHARS and long.startswith(stripped):
            return Relation.PREFIX
    pa, pb = paras(a), paras(b)
    small, big = (pa, pb) if len(pa) <= len(pb) else (pb, pa)
    if len(small) >= 2 and small[0] == big[0] and _is_subsequence(small, big):
        return Relation.SUBSET
    return Relation.NONE


def unellipsed(text: str) -> str:
    """A normalised text without the ellipsis a truncated copy may end in."""
    return text[:-3].rstrip() if text.endswith("...") else text


def is_piece_of(piece: str | None, whole: str | None) -> bool:
    """True when ``piece``'s paragraphs are a contiguous run of ``whole``'s."""
    if not piece or not whole:
        return False
    small, big = paras(piece), paras(whole)
    if not small or len(small) > len(big) or sum(map(len, small)) < MIN_PREFIX_CHARS:
        return False
    width = len(small)
    return any(big[i : i + width] == small for i in range(len(big) - width + 1))


def _is_subsequence(small: tuple[str, ...], big: tuple[str, ...]) -> bool:
    it = iter(big)
    return all(any(p == q for q in it) for p in small)


def _agree(a: Any, b: Any) -> bool:
    return a is None or b is None or a == b


def same_title(a: Row, b: Row) -> bool:
    """Real (not derived) titles both copies show must be the same."""
    if a.get("title_derived") or b.get("title_derived"):
        return True
    ta, tb = a.get("title"), b.get("title")
    if not ta or not tb:
        return True
    return normalize(ta).casefold() == normalize(tb).casefold()


def communities_compatible(a: Row | None, b: Row | None) -> bool:
    """Two community rows can be one: nothing both show differs."""
    if a is None or b is None or a["id"] == b["id"]:
        return True
    if a.get("name") and b.get("name") and a["name"].lower() != b["name"].lower():
        return False
    if not _agree(a.get("instance"), b.get("instance")):
        return False
    ta, tb = a.get("title"), b.get("title")
    return not (ta and tb and normalize(ta).casefold() != normalize(tb).casefold())


def posts_compatible(a: Row, b: Row) -> bool:
    """Two post rows can be the same post, as far as author, source and title go.

    Their communities are compared by the caller, who can resolve merged ids.
    """
    if not _agree(a.get("author_id"), b.get("author_id")):
        return False
    if not _agree(a.get("cross_posted_from"), b.get("cross_posted_from")):
        return False
    return same_title(a, b)


def comments_compatible(a: Row, b: Row) -> bool:
    """Two comment rows can be the same comment (their posts are checked by the caller)."""
    return _agree(a.get("author_id"), b.get("author_id"))

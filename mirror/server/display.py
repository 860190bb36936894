"""How the HTML pages write what they show: times, first words, scores.

Jinja filters and helpers, registered in :mod:`mirror.server.templates`;
pure, so each is tested on its own.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

from mirror.publish.attribution import split_content

_TAG = re.compile(r"<[^>]+>")
#: Block ends that must not glue two words together when the tags go.
_BLOCK_END = re.compile(r"</(?:p|li|ul|ol)>|<br\s*/?>|<hr\s*/?>", re.IGNORECASE)
DAY = 86400


def plain_text(markup: str) -> str:
    """The words of sanitised HTML, without tags or entities, on one line."""
    text = _TAG.sub("", _BLOCK_END.sub(" ", markup))
    return " ".join(html.unescape(text).split())


def first_words(text: str, limit: int = 80) -> str:
    """``text`` cut at a word boundary to about ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(" ,;:.") + "…"


def title_of(document: dict[str, Any], limit: int = 80) -> str:
    """A post's name; else the first words of the body (never of the attribution block)."""
    name = document.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    content = document.get("content")
    body, block = split_content(content) if isinstance(content, str) else ("", "")
    text = plain_text(body) or plain_text(block)
    return first_words(text, limit) if text else "(no text)"


def human_time(moment: datetime | None, precision_s: int | None = None) -> str:
    """A date as precise as the archive knew it: "12 Mar 2025, 14:05 UTC" down to "2022"."""
    if moment is None:
        return "time unknown"
    if precision_s is None or precision_s <= 3600:
        return f"{moment.day} {moment:%b %Y, %H:%M} UTC"
    if precision_s < 30 * DAY:
        return f"{moment.day} {moment:%b %Y}"
    if precision_s < 365 * DAY:
        return f"{moment:%b %Y}"
    return f"{moment:%Y}"


def points(score: int | None, upvotes: int | None = None, downvotes: int | None = None) -> str:
    """The score as the dump showed it; "" when it showed none."""
    if score is None and upvotes is not None and downvotes is not None:
        score = upvotes - downvotes
    if score is None:
        return ""
    text = f"{score} point{'' if abs(score) == 1 else 's'}"
    if upvotes is not None and downvotes is not None:
        text += f" (+{upvotes}/−{downvotes})"
    return text

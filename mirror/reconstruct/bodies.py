"""Post bodies: the cross-post marker and titles derived from the text."""

from __future__ import annotations

import re

from mirror.reconstruct.text import first_sentence

CROSS_POSTED = re.compile(r"^cross-posted from:\s*(?P<url>https?://\S+)\s*$", re.IGNORECASE)
TITLE_LIMIT = 200


def split_cross_post(paras: list[str]) -> tuple[list[str], str | None]:
    """Remove a leading ``cross-posted from: URL`` paragraph; return (rest, URL)."""
    if paras and (match := CROSS_POSTED.match(paras[0].strip())):
        return paras[1:], match["url"]
    return paras, None


def derive_title(paras: list[str]) -> str | None:
    """A title for a post that shows none: the first sentence of its first paragraph."""
    for para in paras:
        sentence = first_sentence(para, TITLE_LIMIT)
        if sentence:
            return sentence
    return None

"""Which kind of page a dump is, from the markers it holds.

Strong markers decide: comment headers (``[–] user@host N points``) make a
post page, a sidebar followed by ranked items a listing, bullets with
lemmy-ui icon words a profile. Text without any marker is a flattened post
page when it opens with a cross-post line or a heading, bare comments when
it is prose, and refused otherwise.
"""

from __future__ import annotations

import itertools
import json
import re

from mirror.reconstruct.bodies import CROSS_POSTED
from mirror.reconstruct.formats import listing, profile
from mirror.reconstruct.headers import COMMENT_HEADER
from mirror.reconstruct.model import DumpKind
from mirror.reconstruct.sidebar import SUBMITTED_ON, find_sidebar_end, parse_sidebar


class NotADump(ValueError):
    """The text is none of the known page kinds; the message says why."""


_TAG_LINE = re.compile(r"^\s*</?[A-Za-z!][^>]*>")
#: A line of code ends in one of these (before any trailing whitespace).
_CODE_ENDINGS = (";", "{", "}")
_WORD = re.compile(r"[^\W\d_]{2,}")
#: ASCII bytes that are not letters (deleted to count the letters).
_ASCII_NOT_LETTERS = bytes(b for b in range(128) if not chr(b).isalpha())
_ASCII_SPACES = bytes(b for b in range(128) if chr(b).isspace())
_ASCII = bytes(range(128))
_MAX_SCAN = 400
#: Lines of content that tell prose from markup, code and data.
_PROSE_LINES = 200


def detect(lines: list[str]) -> DumpKind:
    """The page kind of a dump, or NotADump with the reason."""
    head = lines[:_MAX_SCAN]
    # NBSP-only lines are blank too (str.strip removes NBSP); is_blank inlined.
    # The prose checks read the first _PROSE_LINES lines of content only.
    content = list(itertools.islice((line for line in lines if line.strip()), _PROSE_LINES))
    if not content:
        raise NotADump("empty file (only blank lines)")

    if any(
        "[" in line and line.lstrip()[:1] == "[" and COMMENT_HEADER.match(line.strip())
        for line in lines
    ):
        return DumpKind.THREAD
    if any(SUBMITTED_ON.match(line.strip()) for line in head[:5]):
        return DumpKind.THREAD
    if _looks_like_profile(head):
        return DumpKind.PROFILE
    sidebar = find_sidebar_end(lines)
    if sidebar is not None and parse_sidebar(lines, None) is not None:
        if next(listing.iter_item_starts(lines, sidebar + 1), None) is not None:
            return DumpKind.LISTING
        return DumpKind.THREAD

    _refuse_non_prose(content)
    first = content[0].strip()
    if CROSS_POSTED.match(first) or (len(content) > 1 and _is_heading(first, content[1])):
        return DumpKind.FLAT
    return DumpKind.BARE


def _letters_and_visible(text: str) -> tuple[int, int]:
    """How many characters are letters (what ``[^\\W\\d_]`` matches) and how many not whitespace.

    The ASCII part is counted in C, by deleting bytes: a regex substitution
    over 4 KiB took a quarter of a millisecond (3% of parsing the benchmark
    corpus), a regex search for the non-ASCII ones and splitting into words
    half of what was left. The few other characters (quotes, dashes,
    accented letters) are looked at one at a time.
    """
    ascii_part = text.encode("ascii", "ignore")
    letters = len(ascii_part.translate(None, _ASCII_NOT_LETTERS))
    spaces = len(ascii_part) - len(ascii_part.translate(None, _ASCII_SPACES))
    if len(ascii_part) != len(text):
        # UTF-8 without its ASCII bytes is the text's other characters.
        others = text.encode("utf-8", "surrogatepass").translate(None, _ASCII)
        for ch in others.decode("utf-8", "surrogatepass"):
            if ch.isspace():
                spaces += 1
            elif ch.isalnum() and not ch.isdecimal():
                letters += 1
    return letters, len(text) - spaces


def _looks_like_profile(head: list[str]) -> bool:
    # Profile items are bullets: a page without the bullet character has none.
    if "\u2022" not in "\n".join(head) or not any(profile.ITEM.match(line) for line in head):
        return False
    return any(line.strip() in profile.ICONS or profile.STAT.match(line) for line in head)


def _is_heading(line: str, following: str) -> bool:
    words = line.split()
    if not 2 <= len(words) <= 12 or re.search(r"[.!?:;,]$", line):
        return False
    capitals = sum(1 for word in words if word[:1].isupper())
    return capitals / len(words) >= 0.6 and len(following.strip()) >= 200


def _refuse_non_prose(content: list[str]) -> None:
    # ``content``: the first _PROSE_LINES lines of content. They tell markup,
    # code and data from prose; no need to read on.
    text = "\n".join(content).strip()
    if text[:1] in "{[":
        try:
            json.loads(text)
        except ValueError:
            pass
        else:
            raise NotADump("not a page dump: the file is JSON")
    tags = sum(1 for line in content if _TAG_LINE.match(line))
    if tags / len(content) >= 0.3:
        raise NotADump("not a page dump: the file is HTML or XML markup, not page text")
    # line.rstrip() strips what the regex \s matches: a search for [;{}]\s*$
    # tried every position of every line, a fifth of this check's time.
    code = sum(1 for line in content if line.rstrip()[-1:] in _CODE_ENDINGS)
    if code / len(content) >= 0.3:
        raise NotADump("not a page dump: the file looks like source code")
    # A few pages of text settle the letter ratio; all 200 lines cost a tenth of parsing.
    sample = text[:4096]
    letters, visible = _letters_and_visible(sample)
    if visible and letters / visible < 0.6:
        raise NotADump("not a page dump: too few letters for page text")
    if not any(len(_WORD.findall(line)) >= 4 for line in content):
        raise NotADump("not a page dump: no line of prose (four words or more)")

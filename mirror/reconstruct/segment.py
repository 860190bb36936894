"""Cutting marker-less text (one paragraph per line) into posts and comments.

Flattened comment sections and bare comment files show no boundaries, so
every cut here is a guess, made by the stated rules below and stored with
confidence "low". The rules never invent an author or a parent.

Post body end (flat dumps): the post runs until the first paragraph that
opens a reply by enumerating points, ``(1)`` or ``1)``, or that addresses
the poster ("OP ", "your post", "your discussion", ...). With neither, the
whole text is the post.

Comment grouping: every paragraph starts a new comment, except one that

1. continues an enumeration of the current comment (``(2)`` after ``(1)``),
2. is a citation line (short, three words or more, no sentence punctuation
   at the end) inside an enumerated comment,
3. follows a paragraph that ends with a colon (it announces what follows),
4. opens with a connective that needs a preceding sentence
   ("Furthermore", "Moreover", "Also,", "That's why", ...).
"""

from __future__ import annotations

import re

# "(1)" and "1)", not "1.": essays number their own sections with "1.".
ENUMERATION = re.compile(r"^\(?(?P<n>\d{1,2})\)\s")
REPLY_ADDRESS = re.compile(
    r"\b(?:OP\b|your (?:post|discussion|essay|article|argument|point)s?\b)", re.IGNORECASE
)
CONNECTIVE = re.compile(
    r"^(?:Furthermore|Moreover|Additionally|Also,|In addition|That's why|That is why|"
    r"This is how|This is why|Which is why|Therefore|Thus,|Hence,|Edit:|EDIT:|PS:|P\.S\.)",
)
SENTENCE_END = re.compile(r"[.!?:;\"')\]…]$")
CITATION_MAX = 90

RULES = (
    "post body ends at the first paragraph that enumerates points or addresses the poster",
    "comments: one per paragraph, except enumerations, citation lines, "
    "colon lead-ins and connectives continue the current comment",
)


def post_body_end(paras: list[str]) -> int:
    """Index of the first paragraph that is not part of the post (len if none)."""
    for index, para in enumerate(paras):
        if index == 0:
            continue
        match = ENUMERATION.match(para)
        if match and match["n"] == "1":
            return index
        head = para[:200]
        # The address holds "op" or "your" in any case (no other character
        # matches those letters case-insensitively: a test checks all of
        # Unicode); most paragraphs hold neither, and the search is slow.
        low = head.lower()
        if ("op" in low or "your" in low) and REPLY_ADDRESS.search(head):
            return index
    return len(paras)


def is_citation(para: str) -> bool:
    """A short reference line ("Marx, Critique of the German Ideology")."""
    text = para.strip()
    return (
        len(text) <= CITATION_MAX
        and len(text.split()) >= 3
        and not SENTENCE_END.search(text)
        and "\n" not in text
    )


def group_comments(paras: list[str]) -> list[tuple[int, int]]:
    """Group paragraph indices into comments: [(first, last_inclusive), ...]."""
    groups: list[tuple[int, int]] = []
    enumerated = 0  # the last enumeration number of the current comment
    for index, para in enumerate(paras):
        text = para.strip()
        if not groups:
            groups.append((index, index))
            enumerated = _enumeration(text) if _enumeration(text) == 1 else 0
            continue
        previous = paras[index - 1].strip()
        number = _enumeration(text)
        continues = (
            (enumerated and number == enumerated + 1)
            or (enumerated and is_citation(text))
            or previous.endswith(":")
            or bool(CONNECTIVE.match(text))
        )
        if continues:
            groups[-1] = (groups[-1][0], index)
            if enumerated and number == enumerated + 1:
                enumerated = number
        else:
            groups.append((index, index))
            enumerated = 1 if number == 1 else 0
    return groups


def _enumeration(text: str) -> int:
    match = ENUMERATION.match(text)
    return int(match["n"]) if match else 0

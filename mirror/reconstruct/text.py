"""Text helpers shared by the dump parsers: lines, paragraphs, normalisation."""

from __future__ import annotations

import hashlib
import re

NBSP = "\u00a0"

# Quote styles belong to the copy, not to the text (one copy of a comment has
# curly quotes, another straight ones), so comparisons map them away.
_QUOTES = (
    ("\u2018", "'"),
    ("\u2019", "'"),
    ("\u201a", "'"),
    ("\u201b", "'"),
    ("\u2032", "'"),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u201e", '"'),
    ("\u201f", '"'),
    ("\u2033", '"'),
    ("\u2026", "..."),
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_lines(text: str) -> list[str]:
    """Split on LF only; keep the last line even without a final newline.

    ``str.splitlines`` would also split on form feeds, U+2028 and other
    characters that can occur inside a paragraph of a dump.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "" and text.endswith("\n"):
        lines.pop()
    if "\r" not in text:
        return lines
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def is_blank(line: str) -> bool:
    """True for empty lines and lines of spaces or NBSPs only."""
    return not line.strip()


def is_nbsp_only(line: str) -> bool:
    return bool(line) and NBSP in line and not line.replace(NBSP, "").strip()


def clean_line(line: str) -> str:
    """Strip indentation and trailing blanks (including NBSP) from a body line."""
    return line.strip()


def paragraphs(lines: list[str]) -> list[str]:
    """Group body lines into paragraphs: blank lines separate, each kept line is cleaned.

    Lines inside one paragraph are joined with a newline, so a paragraph that
    the page wrapped keeps its line breaks.
    """
    out: list[str] = []
    current: list[str] = []
    for line in lines:
        if is_blank(line):
            if current:
                out.append("\n".join(current))
                current = []
        else:
            current.append(clean_line(line))
    if current:
        out.append("\n".join(current))
    return out


def join_paragraphs(paras: list[str]) -> str:
    return "\n\n".join(paras)


def normalize(text: str) -> str:
    """The comparison form of a text: quotes mapped, whitespace collapsed."""
    if not text.isascii():
        # str.replace runs in C; str.translate with a mapping does not.
        for old, new in _QUOTES:
            if old in text:
                text = text.replace(old, new)
    return collapse_whitespace(text)


def collapse_whitespace(text: str) -> str:
    """Whitespace runs as one space, none at either end: ``" ".join(text.split())``.

    Most paragraphs are already that but for the line breaks a page wrapped
    them at; checking that costs a few scans in C, where splitting makes an
    object per word (the corpus's paragraphs: twice as fast).
    """
    flat = text.replace("\n", " ")
    if "  " not in flat and flat[:1] != " " and flat[-1:] != " " and _only_spaces(flat):
        return flat
    # str.split() splits on every Unicode space, NBSP included.
    return " ".join(text.split())


def _only_spaces(text: str) -> bool:
    """Whether the only whitespace ``text`` holds is the space."""
    if text.isascii():
        # Each test is a memchr; isprintable looks every character up in
        # Unicode's tables (ingest: 2.8% of all instructions).
        return (
            "\t" not in text
            and "\r" not in text
            and "\x0b" not in text
            and "\x0c" not in text
            and "\x1c" not in text
            and "\x1d" not in text
            and "\x1e" not in text
            and "\x1f" not in text
        )
    # Every whitespace character but the space is unprintable (a test checks
    # all of Unicode), so a printable text has no other kind.
    return text.isprintable()


def body_paragraphs(body: str) -> list[str]:
    """The normalised paragraphs of a stored body."""
    return [p for p in (normalize(part) for part in body.split("\n\n")) if p]


def fingerprint(*parts: str) -> str:
    """A short stable hash of its parts (hex, 64 bits).

    Each part is followed by a unit separator: the hash of ``part1 US part2
    US ...``, fed in one call (ids are made of it: it may never change).
    """
    data = "\x1f".join(parts) + "\x1f" if parts else ""
    # A copy of an empty hasher skips the constructor's parameter handling:
    # a third of the time for the short texts hashed here.
    hasher = _EMPTY_HASH.copy()
    hasher.update(data.encode("utf-8"))
    return hasher.hexdigest()


_EMPTY_HASH = hashlib.blake2b(digest_size=8)


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of a text, at most ``limit`` characters, cut at a word."""
    # Whitespace runs as one space: str.split() splits on exactly what \s matches.
    flat = collapse_whitespace(text)
    match = _SENTENCE_END.search(flat)
    sentence = flat[: match.start()] if match else flat
    sentence = sentence.strip()
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"

"""Dump text -> Markdown that lemmy-ui and PieFed render back to the same text.

The dumps hold text as a page showed it, not Markdown; the `source` of our
objects is that text, protected only where a renderer would read it as
syntax *at that position*. Real servers render `source` themselves:

- lemmy-ui: markdown-it (`html: false, linkify: true, typographer: true`)
  with markdown-it-sub (`~x~`), -sup (`^x^`), -footnote, -container
  (`::: spoiler`), ruby (`{base|ruby}`) and bidi (src/shared/markdown.ts).
- PieFed: markdown2 with its extras, after and before its own regexes over
  the text and the HTML (app/utils.py `markdown_to_html`, `allowlist_html`).

Where a character needs protection, a backslash escape is used when
markdown2 undoes it too (its escape set, `MARKDOWN2_ESCAPES`), else a
numeric character reference (`&#126;`), which both renderers decode. Some
places take a reference even for a markdown2 escape, because a PieFed regex
reads the raw text before markdown2 does and ignores backslashes (noted
where it happens). Everything else is written as it is: "Thank you!",
"1,300 MWh", "Marx & Engels", "~1,300", "snake_case".

URLs become autolinks (`<https://...>`), or `[url](<href>)` where PieFed
would break the autolink (FRAGILE_URL); lines end in a backslash (a hard
line break in CommonMark and in markdown2 with `breaks: on_backslash`), or
in two spaces after a `www.` word (BARE_LINK_END); paragraphs are separated
by a blank line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

URL = re.compile(r"https?://[^\s<>\"']+")
#: Punctuation that ends a sentence rather than a URL.
URL_TAIL = ".,;:!?)]}’”"

#: What CommonMark lets a backslash escape (spec 2.4: ASCII punctuation).
ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
#: What markdown2 undoes after a backslash (markdown2.py `g_escape_table`); any
#: other `\x` shows its backslash on PieFed ("consumed \~1,300 MWh").
MARKDOWN2_ESCAPES = frozenset("\\`*_{}[]()>#+-.!")
#: Characters a decision is taken for one by one inside a line.
INLINE = re.compile(r"[`*_\[\]<>&|^!]")
BACKSLASH = re.compile(r"\\")
#: An entity either renderer would decode: CommonMark's `&name;`, `&#9;`,
#: `&#x9;`, and markdown2's looser `&#?[xX]?(hex|word);` (`_AMPERSAND_RE`).
ENTITY = re.compile(r"&(?:#[xX]?)?\w+;")
#: CommonMark's e-mail autolink, whose local part may start with a digit or `.`.
EMAIL_AUTOLINK = re.compile(r"<[^\s<>@]+@[^\s<>]+>")
#: What the typographers would rewrite beyond quotes, dashes and ellipses:
#: markdown-it's replacements (lib/rules_core/replacements.mjs: `,,` -> `,`,
#: `????` -> `???`, (c) (r) (tm) -> © ® ™, `+-` -> ±) and markdown2's
#: smarty-pants (`. . .` -> `…`, eating the spaces); and `:::`, a spoiler
#: (markdown-it-container; PieFed matches it anywhere in its HTML).
REWRITTEN = re.compile(r",{2,}|[?!]{4,}|\((?:[cCrR]|[tT][mM])\)|\+-|:{3,}|\. (?=\. \.)")
#: What every match of REWRITTEN holds.
REWRITTEN_MARKS = (",,", "??", "!!", "?!", "!?", "(", "+-", ":::", ". . .")
#: Whatever any rule here could protect holds one of these, or is a mark at a
#: line's start (LINE_START) or a typographer's abbreviation (ABBREVIATION):
#: a paragraph with none is written as it is (most paragraphs of prose).
#: Substring tests: together cheaper than one regex search over the text.
MARKS = (*"\\`*_[]<>&|^~", "![", "://", ",,", "??", "!!", "?!", "!?", "+-", ":::", ". . .")
LINE_START = re.compile(r"^(?:[#=+\->:]|\d{1,9}[.)])", re.MULTILINE)
ABBREVIATION = re.compile(r"\((?:[cCrR]|[tT][mM])\)")
#: A line ending in a word PieFed's markdown2 links as it stands (`www.`...).
BARE_LINK_END = re.compile(r"www\.\S*$")

# Marks that start a block only at the start of a line (CommonMark §4, §5).
ATX_HEADING = re.compile(r"#{1,6}(?:[ \t]|$)")
BULLET = re.compile(r"[-+*](?:[ \t]|$)")
ORDERED = re.compile(r"\d{1,9}([.)])(?:[ \t]|$)")
THEMATIC_BREAK = re.compile(r"([-*_])(?:[ \t]*\1){2,}[ \t]*$")
#: A setext underline makes the line before it a heading; markdown2 too.
SETEXT = re.compile(r"(?:=+|-+)[ \t]*$")
#: A table's delimiter row (GFM tables in markdown-it, markdown2 `tables`):
#: only pipes, colons, dashes and spaces, with a dash.
TABLE_DELIMITER = re.compile(r"[|:\-][|:\- \t]*$")


def _reference(ch: str) -> str:
    return f"&#{ord(ch)};"


def _backslash(ch: str) -> str:
    # Only for characters both renderers unescape; the others take a reference.
    return "\\" + ch if ch in MARKDOWN2_ESCAPES else _reference(ch)


def split_url(match: str) -> tuple[str, str]:
    """A URL as matched, and the sentence punctuation after it."""
    url = match
    tail = ""
    while url and url[-1] in URL_TAIL:
        # A closing bracket that opens inside the URL belongs to it (Wikipedia links).
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        tail = url[-1] + tail
        url = url[:-1]
    return url, tail


def pieces(line: str) -> Iterator[tuple[bool, str]]:
    """(is_url, text) runs of one line."""
    position = 0
    for match in URL.finditer(line):
        url, _ = split_url(match.group(0))
        if match.start() > position:
            yield False, line[position : match.start()]
        yield True, url
        position = match.start() + len(url)
    if position < len(line):
        yield False, line[position:]


#: URLs PieFed breaks as autolinks: allowlist_html's regexes for `~~...~~`,
#: `^x^` and `{a|b}` run over its HTML, where the URL stands twice (the
#: href and the text) with nothing between that stops them; markdown2 reads
#: code spans before autolinks, so a backtick in one pairs with another; it
#: writes an autolink's text as it is, so `&amp;` in it would show as `&`;
#: it reads `*`/`_` inside an autolink with a character outside its
#: autolink pattern (markdown2.py `_sorta_html_tokenize_re`) as emphasis;
#: and PieFed's handle_bold_em makes `**x**`/`__x__` bold before markdown2.
FRAGILE_URL = re.compile(r"~~|\*\*|__|[\^{}|`]|&(?:#[xX]?)?\w+;|[^\w~:/?#\[\]@!$&'()*+,;%=.\\-]")
#: How those characters are written in an href (RFC 3986 §2.1; `~` is the
#: same URL either way, §2.3) and in the link's text.
_HREF = str.maketrans({ch: f"%{ord(ch):02X}" for ch in "~^{}|`"})
_TEXT = {ch: _reference(ch) for ch in "~^{}|"}
_BOLD = str.maketrans({"*": "%2A", "_": "%5F"})


class _Line:
    """One line as it will be written: text characters, and URLs as links.

    ``view`` is the line with each URL written `<url>` (a FRAGILE_URL:
    `[url]`), so that a character next to a URL sees the `<` or `[` a
    renderer will see; ``text[i]`` says whether ``view[i]`` is dump text
    (which may be protected) or part of a link (written as it is, or as a
    whole).
    """

    __slots__ = ("links", "protect", "text", "view")

    def __init__(self, line: str, *, urls: bool = True) -> None:
        view: list[str] = []
        text: list[bool] = []
        #: Position -> how the character is written, for protected characters.
        self.protect: dict[int, str] = {}
        #: Where each URL written `[url](<href>)` ends: a `[` before it could open a link.
        self.links: list[int] = []
        for is_url, run in pieces(line) if urls else [(False, line)]:
            if is_url:
                if FRAGILE_URL.search(run):
                    # Written `[text](<href>)`; its neighbours see the `[`.
                    start = len(text)
                    self.protect[start] = _link(run)
                    self.protect.update({k: "" for k in range(start + 1, start + len(run) + 2)})
                    view.append(f"[{run}]")
                    self.links.append(start + len(run) + 1)
                else:
                    view.append(f"<{run}>")
                text.extend([False] * (len(run) + 2))
            else:
                view.append(run)
                text.extend([True] * len(run))
        self.view = "".join(view)
        self.text = text


def _link(url: str) -> str:
    """A URL as `[its text](<href>)`, for the URLs an autolink would not survive."""
    line = _Line(url, urls=False)
    context = _Context(backticks=True, link_before=0, fragment=True)
    _block_marks(line)
    _inline(line, context, 0)
    for i, ch in enumerate(line.view):
        if ch in _TEXT:
            line.protect[i] = _TEXT[ch]
        elif ch == "_":
            line.protect[i] = "\\_"  # see _Context.underscores
    # CommonMark decodes references and escapes in a link's destination; markdown2
    # writes it as it is, and the browser decodes the references.
    href = ENTITY.sub(lambda m: "&amp;" + m.group(0)[1:], url.translate(_HREF))
    href = re.sub(r"\*{2,}|_{2,}", lambda m: m.group(0).translate(_BOLD), href)
    href = re.sub(r"\\(?=[!-/:-@\[-`{-~]|$)", r"\\\\", href)  # `$`: before our `>`
    return f"[{_write(line, breaks=True)}](<{href}>)"


class _Context:
    """What the rules need to know beyond one line."""

    __slots__ = ("backticks", "fragment", "link_before", "underscores")

    def __init__(
        self, *, backticks: bool, link_before: int, fragment: bool, underscores: bool = False
    ) -> None:
        #: Protect every backtick (two or more in the paragraph could pair).
        self.backticks = backticks
        #: Protect every `_`: two lines hold one. CommonMark leaves `snake_case`
        #: alone, but markdown2 (`middle-word-em: False`) hashes the text from
        #: one word-inner `_` to the next, across lines too, and a hard break
        #: inside the hash is lost (markdown2.py MiddleWordEm `liberal_em_re`).
        self.underscores = underscores
        #: A `[` before this offset in the paragraph could open a link: a
        #: `](` or `][` follows it.
        self.link_before = link_before
        #: A piece of a line (the attribution's): its neighbours are unknown.
        self.fragment = fragment


def _is_space(ch: str) -> bool:
    return ch == "" or ch.isspace()


def _is_punctuation(ch: str) -> bool:
    # CommonMark counts Unicode punctuation and symbols; anything neither space
    # nor letter/digit is taken as punctuation (where unsure, that protects more).
    return ch != "" and not ch.isspace() and not ch.isalnum()


def _flanking(before: str, after: str) -> tuple[bool, bool]:
    """(left-flanking, right-flanking) for a delimiter run (CommonMark §6.2)."""
    left = not _is_space(after) and (
        not _is_punctuation(after) or _is_space(before) or _is_punctuation(before)
    )
    right = not _is_space(before) and (
        not _is_punctuation(before) or _is_space(after) or _is_punctuation(after)
    )
    return left, right


def _block_marks(line: _Line) -> None:
    """Marks that make a block at the start of a line: headings, lists, quotes, breaks."""
    view = line.view
    if not view or not line.text[0]:
        return
    first = view[0]
    if first == "#" and ATX_HEADING.match(view):
        line.protect[0] = "\\#"
    elif first in "-+*" and BULLET.match(view):
        line.protect[0] = "\\" + first
    elif first == ">":
        # A reference, not `\>`: PieFed's regexes read the raw text before
        # markdown2 (handle_blockquotes, and `>!...!<` in handle_reddit_spoilers).
        line.protect[0] = "&gt;"
    elif first.isdigit() and (match := ORDERED.match(view)):
        line.protect[match.start(1)] = "\\" + match.group(1)
    if THEMATIC_BREAK.match(view) or SETEXT.match(view):
        line.protect[0] = _backslash(first)
    if TABLE_DELIMITER.match(view) and "-" in view:
        # Without its delimiter row no table forms, in either renderer.
        line.protect[0] = _backslash(first) if first != "|" else _reference("|")
        for i, ch in enumerate(view):
            if ch == "|":
                line.protect[i] = _reference("|")


def _runs(view: str, position: int) -> tuple[int, int]:
    """The run of the character at ``position``: (start, end)."""
    ch = view[position]
    start = position
    while start > 0 and view[start - 1] == ch:
        start -= 1
    end = position + 1
    while end < len(view) and view[end] == ch:
        end += 1
    return start, end


def _paired(lines: list[_Line]) -> None:
    """Protect `~` and `^` that could pair: two or more in a token without spaces.

    markdown-it-sub/-sup read `~x~`/`^x^` with no space inside, where an
    escaped newline (our line break) is no space, so a token goes on across
    lines, nor is an escaped space (`~a\\ b~`). PieFed's allowlist_html does
    the same with regexes over its HTML (`~([^~\\s]+)~`,
    `\\^([^\\^\\s]+)\\^`) and strikes `~~...~~` anywhere on a line.
    """
    joined = "\x01".join(line.view for line in lines)
    if "~" not in joined and "^" not in joined:
        return
    where = [(n, i) for n, line in enumerate(lines) for i in range(len(line.view) + 1)]
    for ch, writing in (("~", "&#126;"), ("^", "&#94;")):
        for token in re.finditer(r"(?:\\\s|\S)+", joined):
            found = []
            for k in range(token.start(), token.end()):
                n, i = where[k]
                if joined[k] == ch and lines[n].text[i]:
                    found.append((n, i))
            if len(found) >= 2:
                for n, i in found:
                    lines[n].protect[i] = writing


def _rewritten(line: _Line) -> None:
    """Break up what a typographer would rewrite (REWRITTEN), keeping its characters."""
    view, text, protect = line.view, line.text, line.protect
    for match in REWRITTEN.finditer(view):
        start, end = match.span()
        if not text[start]:
            continue
        ch = view[start]
        if ch == ",":
            protect.update({i: "&#44;" for i in range(start + 1, end)})
        elif ch in "?!":
            protect.update({i: _backslash(view[i]) for i in range(start + 3, end)})
        elif ch in "(+":
            protect[start] = "\\" + ch
        elif ch == ":":
            protect.update({i: "&#58;" for i in range(start, end)})
        elif start not in protect:
            # `. . .`: its middle dot, unless its first dot is a middle one already.
            protect[start + 2] = "\\."


def _inline(line: _Line, context: _Context, offset: int, *, broken: bool = False) -> None:
    """Characters that would be read as syntax where they stand.

    ``broken``: a hard line break (our backslash) follows the line, so its
    last character is followed by a `\\`, not by the end of a line.
    """
    view, text, protect = line.view, line.text, line.protect
    if any(mark in view for mark in REWRITTEN_MARKS):  # cheaper than the search
        _rewritten(line)
    for match in INLINE.finditer(view):
        i = match.start()
        if not text[i] or i in protect:
            continue
        ch = view[i]
        if ch == "]" and not context.fragment:
            continue
        before = view[i - 1] if i else ""
        after = view[i + 1] if i + 1 < len(view) else ("\\" if broken else "")
        if context.fragment:
            before = before or "."  # unknown neighbours: assume the worst
            after = after or "."
        writing = _rule(ch, i, view, before, after, context, offset)
        if writing is not None:
            protect[i] = writing


def _rule(
    ch: str,
    i: int,
    view: str,
    before: str,
    after: str,
    context: _Context,
    offset: int,
) -> str | None:
    """How the character at ``i`` must be written, or None for as it is."""
    if ch == "*":
        start, end = _runs(view, i)
        # A lone `*` between spaces is text everywhere; any other may open or
        # close emphasis (CommonMark flanking; markdown2's `_em_re` is looser).
        lone = end - start == 1 and _is_space(before) and _is_space(after)
        return None if lone else "\\*"
    if ch == "_":
        start, end = _runs(view, i)
        if end - start >= 2 or context.underscores:
            # PieFed makes `__x__` bold anywhere, inside words too (handle_bold_em).
            return "\\_"
        left, right = _flanking(before, after)
        opens = left and (not right or _is_punctuation(before))
        closes = right and (not left or _is_punctuation(after))
        return "\\_" if opens or closes else None
    if ch == "`":
        return "\\`" if context.backticks else None
    if ch == "[":
        # `&#91;`, not `\[`: PieFed rewrites `[!x@y](...)` and `![...](...)` with
        # regexes that read the raw text (handle_lemmy_autocomplete, handle_video_embeds).
        if context.fragment or after == "^" or offset + i < context.link_before:
            return "&#91;"
        if i == 0 and "]:" in view:  # a link reference definition
            return "&#91;"
        return None
    if ch == "]":
        # In a link's text (the attribution's), a `]` would end it.
        return "\\]" if context.fragment else None
    if ch == "<":
        # An autolink, an e-mail autolink or HTML could start here (markdown2
        # passes HTML through; PieFed keeps the tags it allows).
        opens = after != "" and after.isascii() and (after.isalpha() or after in "/!?$<")
        return "&lt;" if opens or EMAIL_AUTOLINK.match(view, i) else None
    if ch == ">":
        # PieFed makes `>!text!<` a spoiler (handle_reddit_spoilers), before markdown2.
        return "&gt;" if after == "!" and "!<" in view[i:] else None
    if ch == "&":
        return "&amp;" if ENTITY.match(view, i) else None
    if ch == "|":
        start, end = _runs(view, i)
        if end - start >= 2:
            return "&#124;"  # markdown2's `tg-spoiler` extra: ||text||
        if "{" in view[:i] and "}" in view[i:]:
            return "&#124;"  # ruby, {base|text}: lemmy-ui's plugin, PieFed's allowlist_html
        return None
    if ch == "!":
        # `![...](...)` is an image; `&#33;`, as PieFed's handle_video_embeds reads
        # `![...](...)` in the raw text.
        return "&#33;" if after == "[" else None
    if ch == "^":
        if after == "[":
            return "&#94;"  # markdown-it-footnote: ^[inline note]
        # markdown2 links `www.` text (PieFed's link-patterns): the href and the
        # text then hold the `^` twice, a pair for allowlist_html's `^x^`.
        start = max(view.rfind(" ", 0, i), view.rfind("\t", 0, i)) + 1
        return "&#94;" if "www." in view[start:i] else None
    return None


def _write(line: _Line, *, breaks: bool) -> str:
    """The line with its protections, and a backslash protected where it would escape."""
    view, protect = line.view, line.protect
    if "\\" in view:
        for i in reversed([m.start() for m in BACKSLASH.finditer(view)]):
            if not line.text[i] or i in protect:
                continue
            following = protect.get(i + 1, view[i + 1])[:1] if i + 1 < len(view) else ""
            # `\` escapes the ASCII punctuation written after it, and before a line
            # break (ours, or the paragraph's end) it would be the break itself.
            if following == "<":
                # markdown2 turns `\<` into `&lt;` before it reads `\\` (markdown2.py
                # `_escape_special_chars`): the backslash would show, the autolink break.
                protect[i] = "&#92;"
            elif following in ASCII_PUNCTUATION if following else breaks:
                protect[i] = "\\\\"
    if not protect:
        return view
    out = []
    last = 0
    for i in sorted(protect):
        out.append(view[last:i])
        out.append(protect[i])
        last = i + 1
    out.append(view[last:])
    return "".join(out)


def _paragraph_context(lines: list[_Line]) -> _Context:
    views = [line.view for line in lines]
    joined = "\n".join(views)
    links = [m.start() for m in re.finditer(r"\][ \t]*[(\[]", joined)]
    offset = 0
    for line in lines:
        links.extend(offset + end for end in line.links)
        offset += len(line.view) + 1
    return _Context(
        backticks=joined.count("`") >= 2,
        link_before=max(links, default=-1),
        fragment=False,
        underscores=sum("_" in view for view in views) >= 2,
    )


def _escape_lines(lines: list[str]) -> list[str]:
    parsed = [_Line(line) for line in lines]
    context = _paragraph_context(parsed)
    _paired(parsed)
    out = []
    offset = 0
    for n, line in enumerate(parsed):
        if line.view:
            _block_marks(line)
            _inline(line, context, offset, broken=n + 1 < len(parsed))
        out.append(_write(line, breaks=True))
        offset += len(line.view) + 1
    return out


def escape_line(text: str) -> str:
    """A piece of text to put inside Markdown as written (a link text, an emphasis).

    Its neighbours are unknown, so it is protected as if any character
    could stand next to it: every `[`, `]`, backtick, `~` and `^`,
    emphasis marks at its ends, and the marks that start a block.
    """
    line = _Line(text)
    if not line.view:
        return ""
    context = _Context(backticks=True, link_before=0, fragment=True)
    for i, ch in enumerate(line.view):
        if ch in "~^" and line.text[i]:  # a partner may stand in the next piece
            line.protect[i] = _reference(ch)
    _block_marks(line)
    _inline(line, context, 0)
    return _write(line, breaks=True)


def paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _needs_rules(paragraph: str) -> bool:
    return (
        any(mark in paragraph for mark in MARKS)
        or LINE_START.search(paragraph) is not None
        or ("(" in paragraph and ABBREVIATION.search(paragraph) is not None)
    )


def to_markdown(text: str) -> str:
    """Markdown that renders as the text was written: paragraphs, lines, characters."""
    blocks = []
    for paragraph in paragraphs(text):
        # Leading spaces would make an indented code block, trailing ones a
        # break; neither shows in a rendered paragraph.
        lines = [line.strip(" \t") for line in paragraph.split("\n")]
        if _needs_rules("\n".join(lines)):
            lines = _escape_lines(lines)
        # A hard line break keeps single newlines: a backslash at the end, or two
        # spaces after a `www.` word, which markdown2's link-patterns (PieFed)
        # would otherwise link with the backslash and the break in it.
        ends = ["  \n" if BARE_LINK_END.search(line) else "\\\n" for line in lines[:-1]]
        blocks.append("".join(line + end for line, end in zip(lines, [*ends, ""], strict=True)))
    return "\n\n".join(blocks)

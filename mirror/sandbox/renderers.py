"""The renderers real servers run on an object's `source`, as the sandbox's pages show it.

- lemmy-ui renders `source` with markdown-it (src/shared/markdown.ts in
  LemmyNet/lemmy-ui: `html: false, linkify: true, typographer: true`, the
  markdown-it default preset with tables and strikethrough), with
  markdown-it-sub, -sup, -footnote and -container "spoiler". Here:
  markdown-it-py with those settings and mdit-py-plugins' equivalents
  (lemmy-ui's ruby, bidi and html5-embed plugins have none; ruby is in the
  PieFed model below, bidi only sets `dir`).
- PieFed renders `source` with markdown2 and the extras of app/utils.py
  `markdown_to_html`, wrapped in passes of its own over the Markdown before
  and over the HTML after. Those passes are modelled here from reading that
  file (theatl-social/pyfedi); PieFed's code is not copied. The model keeps
  what can change the text a reader sees and leaves out what cannot
  (link rewriting, quote straightening inside tags, custom emoji, which
  depend on the instance) and PieFed's stashing of code spans before each
  pass (which only hides text from a pass: the model is stricter).

So a stray escape in `source` shows on the sandbox's pages as it would on
the real server's, and the tests read the same renderers.
"""

from __future__ import annotations

import html
import re
from typing import Any

import markdown2
from markdown_it import MarkdownIt
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.subscript import sub_plugin
from mdit_py_plugins.superscript import superscript_plugin

# -- lemmy-ui ---------------------------------------------------------------------


def _spoiler_validate(params: str, *args: object) -> bool:
    # lemmy-ui's spoilerConfig.validate: `params.trim().match(/^spoiler\s+(.*)$/)`.
    return re.match(r"spoiler\s+(.*)$", params.strip()) is not None


def _spoiler_render(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    # lemmy-ui's spoiler container: "::: spoiler title" becomes <details>.
    token = tokens[idx]
    if token.nesting == 1:
        title = token.info.strip().removeprefix("spoiler").strip()
        return f"<details><summary> {html.escape(title)} </summary>\n"
    return "</details>\n"


LEMMY_UI = (
    MarkdownIt("js-default", {"html": False, "linkify": True, "typographer": True})
    .use(sub_plugin)
    .use(superscript_plugin)
    .use(footnote_plugin)
    .use(container_plugin, name="spoiler", validate=_spoiler_validate, render=_spoiler_render)
)


def lemmy_ui(markdown: str) -> str:
    return LEMMY_UI.render(markdown)


# -- PieFed -----------------------------------------------------------------------

#: PieFed's `allowed_tags` (app/utils.py): allowlist_html drops any other tag, contents too.
PIEFED_TAGS = frozenset(
    (
        "p", "strong", "a", "ul", "ol", "li", "em", "blockquote", "cite", "br", "h1", "h2", "h3",
        "h4", "h5", "h6", "pre", "div", "video", "source", "code", "img", "details", "summary",
        "table", "tr", "td", "th", "tbody", "thead", "hr", "span", "small", "sub", "sup", "s",
        "tg-spoiler", "ruby", "rt", "rp",
    )
)  # fmt: skip
#: The extras markdown_to_html passes to markdown2 (link-patterns with a URL pattern).
BARE_URL = re.compile(r"\b((?:https?://|(?<!//)www\.)\w[\w\-]*(?:\.\w[\w\-]*)*[^<>\s\"']*)")
PIEFED_EXTRAS = {
    "middle-word-em": False,
    "tables": True,
    "fenced-code-blocks": None,
    "strike": True,
    "tg-spoiler": True,
    "link-patterns": [(BARE_URL, r"\1")],
    "breaks": {"on_backslash": True},
    "tag-friendly": True,
    "smarty-pants": True,
    "enhanced-images": True,
    "footnotes": True,
    "markdown-in-html": True,
}
#: Contents of `<...>` that escape_non_html_angle_brackets keeps as they are.
EMOTICONS = frozenset({"3", "\\3", "|:‑)", ":‑|"})
ACTOR = re.compile(r"[!@~][a-zA-Z0-9_.-]*@[a-zA-Z0-9_.-]*\b")
VIDEO = re.compile(r"\.(?:mp4|webm|mov|avi|mkv)$", re.IGNORECASE)


def _angle_brackets(text: str) -> str:
    """`<...>` that is not an allowed tag, a URL or an emoticon becomes `&lt;...&gt;`."""

    def keep_or_escape(match: re.Match[str]) -> str:
        inner = match.group(1)
        content = inner.strip().lower()
        name = (content[1:] if content.startswith("/") else content).split()
        allowed = bool(name) and name[0] in PIEFED_TAGS
        if allowed or re.match(r"(?:https?://|www\.)\S", content) or content in EMOTICONS:
            return match.group(0)
        return f"&lt;{inner}&gt;"

    return re.sub(r"<([^<>\n]+?)>", keep_or_escape, text)


def _blockquotes(text: str) -> str:
    """Runs of lines starting with `>` become `<blockquote markdown="1">` (nested too)."""
    quoted = re.compile(r"((?:^[ \t]*>[ \t]?.*(?:\n|$))+)", re.M)
    marker = re.compile(r"^[ \t]*>[ \t]?", re.M)

    def wrap(match: re.Match[str]) -> str:
        inner = marker.sub("", match.group(1))
        out = f'<blockquote markdown="1">{inner}</blockquote>\n'
        return _blockquotes(out) if marker.search(inner) else out

    return quoted.sub(wrap, text)


def _actor_links(text: str) -> str:
    """`[!c@host](url)` and `[@u@host](url)` (Lemmy's autocompletion) lose their link."""

    def unlink(match: re.Match[str]) -> str:
        label = match.group(1)
        return label if ACTOR.match(label) else match.group(0)

    return re.sub(r"\[([!@~].*?)\]\(.*?\)", unlink, text)


def _before_markdown2(text: str) -> str:
    text = re.sub(r">!\s?(.+?)\s?!<", r"<tg-spoiler>\1</tg-spoiler>", text)
    text = _angle_brackets(text)
    text = _blockquotes(text)
    # handle_bold_em: ***x*** / ___x___, then **x** / __x__, anywhere (across lines too).
    strong = r"<em><strong>\2</strong></em>"
    text = re.sub(r"(\*\*\*|___)(?=\S)(.+?)(?<=\S)\1", strong, text, flags=re.S)
    text = re.sub(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", r"<strong>\2</strong>", text, flags=re.S)
    text = _actor_links(text)
    text = re.sub(r"^:{3}\sspoiler[ ]*?$", "::: spoiler Spoiler", text, flags=re.M)
    text = re.sub(r"^:{3}\sspoiler\s+?(\S.+?)?$", r"::: spoiler \1\n", text, flags=re.M)
    text = re.sub(r"^:{3}\s*?$", "\n:::\n", text, flags=re.M)

    def video(match: re.Match[str]) -> str:
        return "<video></video>" if VIDEO.search(match.group(2)) else match.group(0)

    return re.sub(r"!\[(.*?)\]\((\S*?)\)", video, text)


def _after_markdown2(html: str) -> str:
    opening = re.compile(r"^<p>:{3}\sspoiler\s+?(\S.+?)?</p>$", re.M)
    closing = re.compile(r"^<p>:{3}\s*?</p>$", re.M)
    if len(opening.findall(html)) == len(closing.findall(html)):
        html = opening.sub(r"<details><summary>\1</summary><div>", html)
        html = closing.sub("</div></details>", html)
    # allowlist_html: Lemmy syntax that markdown2 left in the HTML.
    html = html.replace("<h2>:::</h2>", "<p>:::</p>")
    html = re.sub(
        r":{3}\s*?spoiler\s+?(\S.+?)(?:\n|</p>)(.+?)(?:\n|<p>):{3}",
        r"<details><summary>\1</summary><div><p>\2</p></div></details>",
        html,
        flags=re.S,
    )
    html = re.sub(r"~~(.*)~~", r"<s>\1</s>", html)
    links: list[str] = []

    def stash(match: re.Match[str]) -> str:
        links.append(match.group(0))
        return f"\x00{len(links) - 1}\x00"

    html = re.sub(r"<a href=[\s\S]*?</a>", stash, html)
    html = re.sub(r"~([^~\s]+)~", r"<sub>\1</sub>", html)
    html = re.sub(r"\x00(\d+)\x00", lambda m: links[int(m.group(1))], html)
    html = re.sub(r"\^([^\^\s]+)\^", r"<sup>\1</sup>", html)
    return re.sub(r"\{(.+?)\|(.+?)\}", r"<ruby>\1<rp>(</rp><rt>\2</rt><rp>)</rp></ruby>", html)


def piefed(markdown: str) -> str:
    html = markdown2.Markdown(extras=PIEFED_EXTRAS).convert(_before_markdown2(markdown))
    return _after_markdown2(str(html))

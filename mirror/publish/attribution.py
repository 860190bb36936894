"""The block every mirrored object ends with: where it came from, by whom, when.

PieFed ignores an object's `published` (it shows when it received it), so
the original date lives here, in the text, for every server to show.
"""

from __future__ import annotations

import html
import re
from datetime import datetime

from mirror.publish import render
from mirror.publish.plan import Item

#: Where the block starts in an object's content: the body's HTML never has a rule.
BLOCK_OPENING = "<hr><p><small>"


def attribution(item: Item, *, actor_is_bot: bool) -> tuple[str, str]:
    """The block that says where a mirrored item came from: (markdown, HTML)."""
    data = item.data
    author = data.get("author")
    community = data.get("community")
    published, raw = data.get("published"), data.get("published_raw")
    when = f"on {published[:10]}" if published else raw
    parts_md: list[str] = []
    parts_html: list[str] = []

    def say(text: str, url: str | None = None) -> None:
        if url:
            parts_md.append(f"[{render.escape_line(text)}](<{url}>)")
            parts_html.append(f'<a href="{url}">{_escape(text)}</a>')
        else:
            parts_md.append(render.escape_line(text))
            parts_html.append(_escape(text))

    say("Mirrored from an archive: originally by ")
    if author:
        user, _, host = author.partition("@")
        say(author, f"https://{host}/u/{user}")
    else:
        say("an unknown author")
    if item.kind == "post" or community:
        say(" in ")
        if community:
            name, _, host = community.partition("@")
            say(community, f"https://{host}/c/{name}")
        elif data.get("community_title"):
            say(str(data["community_title"]))
        else:
            say("an unknown community")
    say(f", {when}" if when else ", time unknown")
    if data.get("edited"):
        say(" (edited)")
    say(".")
    if item.kind == "post" and data.get("cross_posted_from"):
        say(" Cross-posted from ")
        say(data["cross_posted_from"], data["cross_posted_from"])
        say(".")
    for note in item.notes:
        say(f" Note: {note}.")
    if not actor_is_bot:
        say(" This account is a mirror, not the author.")
    markdown = "---\n\n*" + "".join(parts_md) + "*"
    html = render.sanitize(BLOCK_OPENING + "".join(parts_html) + "</small></p>")
    return markdown, html


def split_content(content: str) -> tuple[str, str]:
    """An object's content HTML as (body, attribution block); no block: ("content", "")."""
    body, opening, block = content.rpartition(BLOCK_OPENING)
    return (body, opening + block) if opening else (content, "")


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def derived_title(body: str) -> str:
    first = body.strip().split("\n", 1)[0]
    match = re.match(r"(.+?[.!?])(\s|$)", first)
    return (match.group(1) if match else first)[:200]

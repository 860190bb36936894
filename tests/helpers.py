"""Small helpers shared by tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mirror.reconstruct import DumpKind, ParsedDump, parse_dump


def parse_file(
    path: Path, captured_at: datetime | None = None, kind: DumpKind | None = None
) -> ParsedDump:
    return parse_dump(path.read_text(encoding="utf-8"), kind=kind, captured_at=captured_at)


def body_starts(items, prefix: str):
    """The one item whose body starts with ``prefix`` (quote style ignored)."""
    from mirror.reconstruct.text import normalize

    found = [i for i in items if i.body and normalize(i.body).startswith(normalize(prefix))]
    assert len(found) == 1, f"{len(found)} items start with {prefix!r}"
    return found[0]


def publish_notes(conn, urls, inboxes: list[str], count: int, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """Queue ``count`` Creates of small Notes by the bot to ``inboxes``."""
    from mirror.delivery import enqueue
    from mirror.vocab.activities import recipe
    from mirror.vocab.context import PUBLIC

    for n in range(count):
        note = {"id": urls.object(f"n{n}"), "type": "Note", "content": f"<p>{n}</p>"}
        enqueue.publish(
            conn,
            urls=urls,
            username="mirror",
            recipe=recipe("create", username="mirror", object=note, to=[PUBLIC], cc=[]),
            inboxes=inboxes,
            now=now,
        )


#: The paragraph a comment of MULTI_PARAGRAPH_THREAD holds after a short one: the
#: only one long enough to be indexed.
SECOND_PARAGRAPH = "A second paragraph, long enough to be indexed on its own."
#: A post page with one comment of two paragraphs (the first too short to index).
MULTI_PARAGRAPH_THREAD = (
    "this post was submitted on 3 Mar 2024\n12 points (90% liked)\n\nTea\n\n10 readers\n"
    "1 users here now\n\nAbout tea.\n\nfounded 2 years ago\nMODERATORS\n\u00a0\n\n"
    "A post about tea, long enough to be known by its opening.\n\n"
    f"[\u2013] ana@tea.example 3 points 2 days ago\n\nShort first.\n\n{SECOND_PARAGRAPH}"
)

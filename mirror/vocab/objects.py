"""The objects we publish: a mirrored post (Page or Note with a name) and a comment (Note).

Shapes follow what Lemmy parses (shared/docs/lemmy-receive-rules.md §3.3,
§4): `attributedTo` one URL equal to the sending actor, the full Public IRI
and the community in `to`/`cc`, `audience` the community, `mediaType`
text/html with markdown in `source`, `language` as {identifier, name}
with Lemmy's code and name (crates/apub/objects/src/utils/protocol.rs
`LanguageTag`), left out for a code not in Lemmy's list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mirror.vocab import languages
from mirror.vocab.context import ACTIVITY_CONTEXT, PUBLIC
from mirror.vocab.times import rfc3339

#: Lemmy cuts titles to 200 characters (MAX_TITLE_LENGTH).
MAX_TITLE = 200


def title(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1].rstrip() + "…"


def _build(
    *,
    object_id: str,
    kind: str,
    attributed_to: str,
    community: str | None,
    content: str,
    source: str,
    published: datetime | None,
    updated: datetime | None = None,
    language: str | None = None,  # Lemmy's code (mirror.vocab.languages)
    followers: str | None = None,
) -> dict[str, Any]:
    """Public, to the community where there is one; followers-only copies cc the followers."""
    cc = [community] if community else []
    if followers:
        cc.append(followers)
    document: dict[str, Any] = {
        "@context": ACTIVITY_CONTEXT,
        "id": object_id,
        "type": kind,
        "attributedTo": attributed_to,
        "to": [community, PUBLIC] if community else [PUBLIC],
        "cc": cc,
    }
    if community:
        document["audience"] = community
    document.update(
        {
            "content": content,
            "mediaType": "text/html",
            "source": {"content": source, "mediaType": "text/markdown"},
            "sensitive": False,
        }
    )
    if published is not None:
        document["published"] = rfc3339(published)
    if updated is not None:
        document["updated"] = rfc3339(updated)
    name = languages.name_for(language)
    if name:
        # What Lemmy sends; a name where a code belongs made PieFed answer 500
        # (it keeps the identifier in a varchar(5)).
        document["language"] = {"identifier": language, "name": name}
    return document


def build_post(*, name: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A post: ``kind`` is Page, or Note where the target takes a Note as a post."""
    document = _build(kind=kind, **fields)
    document["name"] = title(name)
    return document


def build_comment(*, in_reply_to: str | None, **fields: Any) -> dict[str, Any]:
    """A comment: a Note replying to a post or a comment (none: a standalone Note)."""
    document = _build(kind="Note", **fields)
    if in_reply_to:
        document["inReplyTo"] = in_reply_to
    return document

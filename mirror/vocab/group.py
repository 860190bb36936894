"""A hosted community as a Group, shaped as Lemmy's own.

Lemmy's fixtures (crates/apub/assets/lemmy/objects/group.json, 0.19 and
1.0) fix the shape. Lemmy's parser (crates/apub/src/protocol/objects/group.rs)
requires id, type Group, preferredUsername, inbox and publicKey, and reads
the moderators from the collection attributedTo names
(protocol/collections/group_moderators.rs: an OrderedCollection of person ids).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from mirror.vocab.context import AS, EXTENSIONS, SECURITY
from mirror.vocab.ids import Urls, check_id
from mirror.vocab.times import rfc3339

#: Lemmy's terms (its context.json), beside the ones our other actors use.
GROUP_CONTEXT: list[Any] = [
    AS,
    SECURITY,
    {
        **EXTENSIONS,
        "lemmy": "https://join-lemmy.org/ns#",
        "postingRestrictedToMods": "lemmy:postingRestrictedToMods",
        "moderators": {"@type": "@id", "@id": "lemmy:moderators"},
        "featured": {"@type": "@id", "@id": "toot:featured"},
    },
]


def archive_summary(*, label: str, original_url: str | None, operator: str) -> tuple[str, str]:
    """(HTML, markdown) saying the community is a read-only archive of the original one."""
    first = "This community is a read-only archive: fedimirror republishes archived posts of "
    where_md = f"[{label}]({original_url})" if original_url else label
    where_html = (
        f'<a href="{escape(original_url)}">{escape(label)}</a>' if original_url else escape(label)
    )
    rest = ". Replies and new posts here are not accepted; the discussion lives on, if anywhere, "
    rest += "in the original community."
    markdown = [first + where_md + rest]
    html = [escape(first) + where_html + escape(rest)]
    if operator:
        markdown.append(f"Operated by {operator}.")
        html.append(escape(f"Operated by {operator}."))
    return "".join(f"<p>{p}</p>\n" for p in html), "\n\n".join(markdown)


def build_group(
    urls: Urls,
    *,
    name: str,
    title: str,
    summary_html: str,
    summary_markdown: str,
    public_key_pem: str,
    published: datetime,
    icon_url: str = "",
) -> dict[str, Any]:
    """The Group document Lemmy, PieFed and Mbin subscribe to."""
    community = urls.community(name)
    group_id = check_id(community.id)
    document: dict[str, Any] = {
        "@context": GROUP_CONTEXT,
        "id": group_id,
        "type": "Group",
        "preferredUsername": name,
        "name": title,
        "summary": summary_html,
        "source": {"content": summary_markdown, "mediaType": "text/markdown"},
        "mediaType": "text/html",
        "sensitive": False,
        "inbox": check_id(community.inbox),
        "outbox": check_id(community.outbox),
        "followers": check_id(community.followers),
        # Lemmy reads the moderators from the collection attributedTo names.
        "attributedTo": check_id(community.moderators),
        "featured": check_id(community.featured),
        # False: PieFed drops (answering 200) posts by non-moderators into a
        # community that restricts posting, and the puppets are not moderators.
        "postingRestrictedToMods": False,
        "endpoints": {"sharedInbox": urls.shared_inbox},
        "publicKey": {
            "id": community.key_id,
            "owner": group_id,
            "publicKeyPem": public_key_pem,
        },
        "published": rfc3339(published),
    }
    if icon_url:
        document["icon"] = {"type": "Image", "url": icon_url}
    return document

"""Our actors as ActivityPub documents (Service, the bot type Lemmy and Mastodon know)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from mirror.vocab.context import ACTOR_CONTEXT
from mirror.vocab.ids import Urls, check_id
from mirror.vocab.times import rfc3339


def build_summary(*, operator: str, extra: str, source: str | None = None) -> str:
    """HTML profile text saying what this account is and who runs it."""
    paragraphs = [
        escape(
            "This is an automated mirror: it republishes archived Lemmy discussions. "
            "It is not the original author and does not read replies."
        )
    ]
    if source:
        link = original_profile(source)
        who = f'<a href="{escape(link)}">{escape(source)}</a>' if link else escape(source)
        paragraphs.append(f"Mirrored posts here were originally written by {who}.")
    if operator:
        paragraphs.append(escape(f"Operated by {operator}."))
    if extra:
        paragraphs.append(escape(extra))
    return "".join(f"<p>{p}</p>" for p in paragraphs)


def original_profile(handle: str) -> str | None:
    """The original author's profile on their Lemmy instance (`/u/NAME`), from the handle."""
    user, _, host = handle.partition("@")
    if not user or not host or "/" in host or " " in handle:
        return None
    return f"https://{host}/u/{user}"


def build_service_actor(
    urls: Urls,
    *,
    username: str,
    name: str,
    summary_html: str,
    public_key_pem: str,
    published: datetime,
    icon_url: str = "",
) -> dict[str, Any]:
    """The actor document: what Lemmy's strict parser and Mastodon both need."""
    actor = check_id(urls.actor(username))
    document: dict[str, Any] = {
        "@context": ACTOR_CONTEXT,
        "id": actor,
        "type": "Service",
        "preferredUsername": username,
        "name": name,
        "summary": summary_html,
        "url": actor,
        "inbox": check_id(urls.inbox(username)),
        "outbox": urls.outbox(username),
        "followers": urls.followers(username),
        "following": urls.following(username),
        # Lemmy rejects an `endpoints` without sharedInbox.
        "endpoints": {"sharedInbox": urls.shared_inbox},
        "publicKey": {
            "id": urls.key_id(username),
            "owner": actor,
            "publicKeyPem": public_key_pem,
        },
        "published": rfc3339(published),
        "manuallyApprovesFollowers": False,
        "discoverable": True,
    }
    if icon_url:
        document["icon"] = {"type": "Image", "url": icon_url}
    return document

"""WebFinger (RFC 7033) and host-meta documents for our actors."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from mirror.vocab.context import ACTIVITY_JSON
from mirror.vocab.ids import Urls

JRD_JSON = "application/jrd+json"


#: The property Lemmy puts on each self link, naming the actor's type
#: (crates/routes/src/webfinger.rs): how a client tells a community from a user.
TYPE_PROPERTY = "https://www.w3.org/ns/activitystreams#type"


def resource_username(resource: str, urls: Urls) -> str | None:
    """The name a WebFinger resource names: ``acct:name@host``, or a /u/ or /c/ URL of ours.

    Users and hosted communities share one namespace, so a name is enough.
    """
    resource = unquote(resource.strip())
    if resource.startswith("acct:"):
        user, _, host = resource[len("acct:") :].lstrip("@").partition("@")
        return user if host.lower() == urls.host and user else None
    return urls.username_of(resource) or urls.community_of(resource)


def build_jrd(urls: Urls, username: str, *, group: bool = False) -> dict[str, Any]:
    """The JRD of one of our actors; a hosted community's names its Group, typed as Lemmy does."""
    actor = urls.community(username).id if group else urls.actor(username)
    self_link: dict[str, Any] = {"rel": "self", "type": ACTIVITY_JSON, "href": actor}
    if group:
        self_link["properties"] = {TYPE_PROPERTY: "Group"}
    return {
        "subject": urls.acct(username),
        "aliases": [actor],
        "links": [
            self_link,
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": actor},
        ],
    }


def build_host_meta(urls: Urls) -> str:
    template = escape(f"{urls.base}/.well-known/webfinger?resource={{uri}}")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" type="application/xrd+xml" template="{template}"/>\n'
        "</XRD>\n"
    )

"""WebFinger (RFC 7033) and host-meta documents for our actors."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from mirror.vocab.context import ACTIVITY_JSON
from mirror.vocab.ids import Urls

JRD_JSON = "application/jrd+json"


def resource_username(resource: str, urls: Urls) -> str | None:
    """The username a WebFinger resource names: ``acct:name@host`` or an actor URL."""
    resource = unquote(resource.strip())
    if resource.startswith("acct:"):
        user, _, host = resource[len("acct:") :].lstrip("@").partition("@")
        return user if host.lower() == urls.host and user else None
    return urls.username_of(resource)


def build_jrd(urls: Urls, username: str) -> dict[str, Any]:
    actor = urls.actor(username)
    return {
        "subject": urls.acct(username),
        "aliases": [actor],
        "links": [
            {"rel": "self", "type": ACTIVITY_JSON, "href": actor},
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

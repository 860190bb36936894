"""NodeInfo 2.1 (https://nodeinfo.diaspora.software/schema.html)."""

from __future__ import annotations

from typing import Any

from mirror.vocab.ids import Urls

SCHEMA = "http://nodeinfo.diaspora.software/ns/schema/2.1"
CONTENT_TYPE = f'application/json; profile="{SCHEMA}#"'


def build_discovery(urls: Urls) -> dict[str, Any]:
    return {"links": [{"rel": SCHEMA, "href": urls.nodeinfo}]}


def build_nodeinfo(*, version: str, users: int, local_posts: int, node_name: str) -> dict[str, Any]:
    return {
        "version": "2.1",
        "software": {
            "name": "fedimirror",
            "version": version,
            "homepage": "https://github.com/fedimirror/fedimirror",
        },
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": False,
        "usage": {
            "users": {"total": users, "activeHalfyear": users, "activeMonth": users},
            "localPosts": local_posts,
        },
        "metadata": {"nodeName": node_name},
    }

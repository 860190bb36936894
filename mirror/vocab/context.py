"""JSON-LD contexts and the vocabulary constants every document shares."""

from __future__ import annotations

from typing import Any

AS = "https://www.w3.org/ns/activitystreams"
SECURITY = "https://w3id.org/security/v1"
#: Lemmy compares addressing strings; only this spelling works on 0.19.
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"

#: The content types our JSON is served with, and that we accept.
ACTIVITY_JSON = "application/activity+json"
LD_JSON_PROFILE = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
JSON_TYPES = ("application/activity+json", "application/ld+json", "application/json")

# Terms outside the ActivityStreams context that our documents use.
EXTENSIONS: dict[str, Any] = {
    "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
    "sensitive": "as:sensitive",
    "toot": "http://joinmastodon.org/ns#",
    "discoverable": "toot:discoverable",
}

ACTOR_CONTEXT: list[Any] = [AS, SECURITY, EXTENSIONS]
ACTIVITY_CONTEXT: list[Any] = [AS, EXTENSIONS]

"""Inbound JSON -> typed values, or Malformed with the reason.

What a peer sends is checked here against what we can store: every value
that reaches a column fits it (ids and URLs up to 2,048 characters, a type
up to 64, a username up to 255) and holds no NUL or lone surrogate, which
PostgreSQL's text and UTF-8 encoding refuse (a DataError, that is a 500, a
sender would retry forever). A document nested deeper than MAX_DEPTH is
refused before anything walks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: The widest URL column (remote_actor.url, received_activity.activity_id, ...).
MAX_URL = 2048
#: remote_actor.type and received_activity.type.
MAX_TYPE = 64
#: remote_actor.preferred_username.
MAX_USERNAME = 255
#: A PEM of an RSA-16384 key is about 2,900 characters; anything far larger is not a key.
MAX_PEM = 16384
#: Nesting of a document we accept. ActivityPub activities nest a few levels
#: (Create > Note > tag > item); 10,000 nested arrays would make json.loads
#: and everything after it recurse until RecursionError.
MAX_DEPTH = 32


class Malformed(ValueError):
    """A document we cannot use; the message says what is wrong."""


def excerpt(value: object, limit: int = 120) -> str:
    """A peer's value as it may appear in a reason: repr'd (escaped) and cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_depth(data: Any, limit: int = MAX_DEPTH) -> None:
    """Malformed when ``data`` nests deeper than ``limit`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise Malformed(f"the document nests deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def storable(value: str) -> bool:
    """True when PostgreSQL text and UTF-8 both take ``value`` (no NUL, no lone surrogate)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_url(value: object, *, limit: int = MAX_URL) -> bool:
    """An http(s) URL with a host, that fits our columns, with no space or control character.

    RFC 3986 URLs hold neither; refusing them here also keeps a newline in
    an id from reaching a log line or a column as it came.
    """
    if not isinstance(value, str) or not value or len(value) > limit:
        return False
    if not value.isprintable() or any(char.isspace() for char in value):
        return False
    if not storable(value):
        return False
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(hostname)


def _url(value: Any, what: str) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    if not is_url(value):
        raise Malformed(f"{what} {excerpt(value)} is not an http(s) URL of at most {MAX_URL}")
    return str(value)


def _type(value: Any, what: str) -> str:
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} has no type")
    if len(value) > MAX_TYPE or not value.isprintable() or not storable(value):
        raise Malformed(f"{what} type {excerpt(value)} is not a type name")
    return value


def _optional_url(data: dict[str, Any], key: str, what: str) -> str | None:
    """A URL-valued property: None when absent or not a string, Malformed when not a URL."""
    value = data.get(key)
    if not isinstance(value, str):
        return None
    if not is_url(value):
        raise Malformed(f"{what} {key} {excerpt(value)} is not an http(s) URL")
    return str(value)


@dataclass(frozen=True, slots=True)
class Inbound:
    """An activity received in an inbox."""

    id: str
    type: str
    actor: str
    object: Any
    #: The object's id, whether it was sent as a string or embedded.
    object_id: str | None
    raw: dict[str, Any]


def parse_activity(data: Any) -> Inbound:
    if not isinstance(data, dict):
        raise Malformed("the body is not a JSON object")
    check_depth(data)
    kind = _type(data.get("type"), "the activity")
    activity_id = _url(data.get("id"), "the activity id")
    actor = _url(data.get("actor"), "the activity actor")
    obj = data.get("object")
    object_id: str | None = None
    if isinstance(obj, str):
        object_id = obj
    elif isinstance(obj, dict) and isinstance(obj.get("id"), str):
        object_id = obj["id"]
    if object_id is not None and not is_url(object_id):
        # Not refused: an object we do not act on may be anything. We only
        # ever look the id up or store it when it is a URL.
        object_id = None
    return Inbound(activity_id, kind, actor, obj, object_id, data)


@dataclass(frozen=True, slots=True)
class RemoteActorDoc:
    """What we keep of a remote actor document."""

    id: str
    type: str | None
    preferred_username: str | None
    inbox: str | None
    shared_inbox: str | None
    key_id: str | None
    key_owner: str | None
    public_key_pem: str | None


def parse_actor(data: Any, fetched_from: str) -> RemoteActorDoc:
    """An actor (or a key document naming its owner) fetched from ``fetched_from``.

    The document's id must be on the host it came from: anything else could
    be a forgery served by a third party. Every value kept fits its column
    (see the module's docstring), or the document is Malformed.
    """
    if not isinstance(data, dict):
        raise Malformed("the actor document is not a JSON object")
    check_depth(data)
    actor_id = _url(data.get("id"), "the actor id")
    if urlsplit(actor_id).hostname != urlsplit(fetched_from).hostname:
        raise Malformed(f"the actor id {actor_id} is not on the host it was fetched from")
    key = data.get("publicKey")
    if isinstance(key, list):
        key = next((k for k in key if isinstance(k, dict) and k.get("publicKeyPem")), None)
    key_id = key_owner = pem = None
    if isinstance(key, dict):
        key_id = _optional_url(key, "id", "the key's")
        key_owner = _optional_url(key, "owner", "the key's")
        pem = key.get("publicKeyPem") if isinstance(key.get("publicKeyPem"), str) else None
    elif isinstance(data.get("publicKeyPem"), str):
        # A bare key document (id = key id) names its owner itself.
        key_id, pem = actor_id, data["publicKeyPem"]
        key_owner = _optional_url(data, "owner", "the key's")
    if pem is not None and (len(pem) > MAX_PEM or not pem.isascii() or "\x00" in pem):
        raise Malformed("the publicKeyPem is not a PEM document")
    endpoints = data.get("endpoints")
    shared = (
        _optional_url(endpoints, "sharedInbox", "the actor's")
        if isinstance(endpoints, dict)
        else None
    )
    kind = data.get("type")
    inbox = _optional_url(data, "inbox", "the actor's")
    username = data.get("preferredUsername")
    if isinstance(username, str) and (len(username) > MAX_USERNAME or not storable(username)):
        raise Malformed(
            f"the preferredUsername {excerpt(username)} is over {MAX_USERNAME} characters "
            "or holds a NUL"
        )
    return RemoteActorDoc(
        id=actor_id,
        type=_type(kind, "the actor") if kind is not None else None,
        preferred_username=username if isinstance(username, str) else None,
        inbox=inbox,
        shared_inbox=shared,
        key_id=key_id,
        key_owner=key_owner or (actor_id if key_id and key_id.startswith(actor_id) else None),
        public_key_pem=pem,
    )

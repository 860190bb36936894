"""Inbound JSON -> typed values, or Malformed with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class Malformed(ValueError):
    """A document we cannot use; the message says what is wrong."""


def _url(value: Any, what: str) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise Malformed(f"{what} is not an http(s) URL")
    return value


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
    kind = data.get("type")
    if isinstance(kind, list) and kind:
        kind = kind[0]
    if not isinstance(kind, str) or not kind:
        raise Malformed("the activity has no type")
    activity_id = _url(data.get("id"), "the activity id")
    actor = _url(data.get("actor"), "the activity actor")
    obj = data.get("object")
    object_id: str | None = None
    if isinstance(obj, str):
        object_id = obj
    elif isinstance(obj, dict) and isinstance(obj.get("id"), str):
        object_id = obj["id"]
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
    be a forgery served by a third party.
    """
    if not isinstance(data, dict):
        raise Malformed("the actor document is not a JSON object")
    actor_id = _url(data.get("id"), "the actor id")
    if urlsplit(actor_id).hostname != urlsplit(fetched_from).hostname:
        raise Malformed(f"the actor id {actor_id} is not on the host it was fetched from")
    key = data.get("publicKey")
    if isinstance(key, list):
        key = next((k for k in key if isinstance(k, dict) and k.get("publicKeyPem")), None)
    key_id = key_owner = pem = None
    if isinstance(key, dict):
        key_id = key.get("id") if isinstance(key.get("id"), str) else None
        owner = key.get("owner")
        key_owner = owner if isinstance(owner, str) else None
        pem = key.get("publicKeyPem") if isinstance(key.get("publicKeyPem"), str) else None
    elif isinstance(data.get("publicKeyPem"), str):
        # A bare key document (id = key id) names its owner itself.
        key_id, pem = actor_id, data["publicKeyPem"]
        owner = data.get("owner")
        key_owner = owner if isinstance(owner, str) else None
    endpoints = data.get("endpoints")
    shared = endpoints.get("sharedInbox") if isinstance(endpoints, dict) else None
    kind = data.get("type")
    inbox = data.get("inbox")
    username = data.get("preferredUsername")
    return RemoteActorDoc(
        id=actor_id,
        type=kind if isinstance(kind, str) else None,
        preferred_username=username if isinstance(username, str) else None,
        inbox=inbox if isinstance(inbox, str) else None,
        shared_inbox=shared if isinstance(shared, str) else None,
        key_id=key_id,
        key_owner=key_owner or (actor_id if key_id and key_id.startswith(actor_id) else None),
        public_key_pem=pem,
    )

"""Activities we send about our actors: Accept of a Follow, Update of a profile."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from mirror.vocab.context import ACTIVITY_CONTEXT, PUBLIC
from mirror.vocab.ids import Urls, check_id
from mirror.vocab.times import rfc3339

#: What an Accept embeds of the Follow it accepts.
FOLLOW_KEYS = ("id", "type", "actor", "object")


def actor_id(urls: Urls, username: str, *, group: bool = False) -> str:
    """Our actor's id: a hosted community's Group is at /c/NAME, the others at /u/NAME."""
    return urls.community(username).id if group else urls.actor(username)


def build_accept(
    urls: Urls,
    *,
    username: str,
    activity_id: str,
    follow: dict[str, Any],
    group: bool = False,
) -> dict[str, Any]:
    """Accept a Follow; Mastodon matches it by the embedded Follow (its id and actor).

    Only the Follow's id, type, actor and object are embedded, whatever
    else the recipe holds (recipes stored before that kept the whole Follow).
    """
    embedded = {key: follow[key] for key in FOLLOW_KEYS if key in follow}
    return {
        "@context": ACTIVITY_CONTEXT,
        "id": check_id(urls.activity(activity_id)),
        "type": "Accept",
        "actor": actor_id(urls, username, group=group),
        "to": [follow["actor"]],
        "object": embedded,
    }


def build_update_actor(
    urls: Urls,
    *,
    username: str,
    activity_id: str,
    actor: dict[str, Any],
    published: datetime | str,
) -> dict[str, Any]:
    """Announce a changed profile to followers."""
    embedded = {key: value for key, value in actor.items() if key != "@context"}
    return {
        "@context": actor.get("@context", ACTIVITY_CONTEXT),
        "id": check_id(urls.activity(activity_id)),
        "type": "Update",
        "actor": urls.actor(username),
        "to": [PUBLIC],
        "cc": [urls.followers(username)],
        "published": published if isinstance(published, str) else rfc3339(published),
        "object": embedded,
    }


def build_reject(
    urls: Urls,
    *,
    username: str,
    activity_id: str,
    follower: str,
    follow_id: str,
    group: bool = False,
) -> dict[str, Any]:
    """Reject a Follow we had accepted: how Mastodon removes a follower."""
    actor = actor_id(urls, username, group=group)
    follow: dict[str, Any] = {"type": "Follow", "actor": follower, "object": actor}
    if follow_id:
        follow["id"] = follow_id
    return {
        "@context": ACTIVITY_CONTEXT,
        "id": check_id(urls.activity(activity_id)),
        "type": "Reject",
        "actor": actor,
        "to": [follower],
        "object": follow,
    }


def _addressed(
    document: dict[str, Any], to: list[str], cc: list[str], audience: str | None
) -> None:
    document["to"] = to
    document["cc"] = cc
    if audience:
        document["audience"] = audience


def build_create(
    urls: Urls,
    *,
    username: str,
    activity_id: str,
    object: dict[str, Any],
    to: list[str],
    cc: list[str],
    audience: str | None = None,
    kind: str = "Create",
) -> dict[str, Any]:
    """Create (or Update) of one of our objects; Lemmy needs both to and cc present."""
    document: dict[str, Any] = {
        "@context": ACTIVITY_CONTEXT,
        "id": check_id(urls.activity(activity_id)),
        "type": kind,
        "actor": urls.actor(username),
    }
    _addressed(document, to, cc, audience)
    document["object"] = {key: value for key, value in object.items() if key != "@context"}
    return document


def build_delete(
    urls: Urls,
    *,
    username: str,
    activity_id: str,
    object_id: str,
    to: list[str],
    cc: list[str],
    audience: str | None = None,
) -> dict[str, Any]:
    """Delete of our own object: the id as a string, Public in ``to``, and no
    ``summary`` (Lemmy reads a summary as a moderator's removal)."""
    document: dict[str, Any] = {
        "@context": ACTIVITY_CONTEXT,
        "id": check_id(urls.activity(activity_id)),
        "type": "Delete",
        "actor": urls.actor(username),
        "object": object_id,
    }
    _addressed(document, to, cc, audience)
    return document


def build_announce(
    urls: Urls,
    *,
    username: str,
    activity_id: str,
    activity: dict[str, Any],
    activity_id_inner: str,
) -> dict[str, Any]:
    """A hosted community's Announce of one of our activities, embedded whole.

    Lemmy's shape (crates/apub/assets/lemmy/activities/community/
    announce_create_page.json): actor the Group, Public in `to`, the Group's
    followers in `cc`. The inner activity is built from its own recipe with
    its own id, so an Announce built again (a new id) embeds the same one.
    """
    inner = build(urls, activity, activity_id=activity_id_inner)
    inner.pop("@context", None)
    community = urls.community(username)
    return {
        "@context": ACTIVITY_CONTEXT,
        "id": check_id(urls.activity(activity_id)),
        "type": "Announce",
        "actor": community.id,
        "to": [PUBLIC],
        "cc": [community.followers],
        "object": inner,
    }


Builder = Callable[..., dict[str, Any]]

#: Every activity we publish is made by one of these, from a recipe
#: ({"builder": name, "args": {...}}) that is stored with it, so that a retry
#: needing a new activity id builds it again instead of patching JSON.
BUILDERS: dict[str, Builder] = {
    "create": build_create,
    "delete": build_delete,
    "accept": build_accept,
    "reject": build_reject,
    "update_actor": build_update_actor,
    "announce": build_announce,
}


def recipe(builder: str, **args: Any) -> dict[str, Any]:
    if builder not in BUILDERS:
        raise KeyError(f"unknown activity builder {builder!r}")
    return {"builder": builder, "args": args}


def build(urls: Urls, recipe: dict[str, Any], *, activity_id: str) -> dict[str, Any]:
    """The activity a recipe describes, with the given id."""
    return BUILDERS[recipe["builder"]](urls, activity_id=activity_id, **recipe["args"])

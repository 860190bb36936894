"""Lemmy's lookup for an anonymous client: `GET /api/v3/resolve_object?q=URL`.

Without a login Lemmy looks only in its own database (0.19:
crates/apub/src/api/resolve_object.rs, search_query_to_object_id_local; 1.0:
crates/api/api/src/federation/resolve_object.rs, converted to the 0.19 shape
by crates/api/routes_v3) and answers a ResolveObjectResponse
(crates/api_common/src/site.rs): `{"post": PostView}` or `{"comment":
CommentView}`, the views of crates/db_views/src/structs.rs with their empty
optional fields left out (skip_serializing_none).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mirror.sandbox.state import COMMUNITY_PUBLISHED, INSTANCE, Instance, Stored
from mirror.sandbox.views import (
    account_published,
    comment_path,
    comments_of,
    descendants,
    item_date,
    json_response,
    language,
    link,
    markdown_body,
    parse_time,
    self_vote,
)


def _lemmy_time(value: datetime) -> str:
    """chrono's RFC 3339 form (SecondsFormat::AutoSi): as many fraction digits as needed."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond % 1000:
        text += f".{value.microsecond:06d}"
    elif value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


def _lemmy_person(instance: Instance, actor: str) -> dict[str, Any]:
    document = instance.actors.get(actor) or {}
    person: dict[str, Any] = {
        "id": instance.person_id(actor),
        "name": document.get("preferredUsername") or actor.rstrip("/").rsplit("/", 1)[-1],
        "display_name": document.get("name"),
        "avatar": (document.get("icon") or {}).get("url"),
        "banned": actor in instance.banned,
        "published": _lemmy_time(account_published(instance, actor)),
        "actor_id": actor,
        "local": False,
        "deleted": False,
        "bot_account": document.get("type") == "Service",
        "instance_id": instance.instance_id(actor),
    }
    return {k: v for k, v in person.items() if v is not None}


def _lemmy_community(instance: Instance) -> dict[str, Any]:
    return {
        "id": 1,
        "name": instance.community,
        "title": instance.title,
        "description": "A fedimirror sandbox community.",
        "removed": False,
        "published": COMMUNITY_PUBLISHED,
        "deleted": False,
        "nsfw": False,
        "actor_id": instance.group_id,
        "local": True,
        "hidden": False,
        "posting_restricted_to_mods": instance.posting_restricted_to_mods,
        "instance_id": 1,
        "visibility": "Public",
    }


def _lemmy_post(instance: Instance, item: Stored) -> dict[str, Any]:
    obj = item.object
    updated = parse_time(obj["updated"]) if obj.get("updated") else None
    post: dict[str, Any] = {
        "id": item.local_id,
        "name": obj.get("name") or "",
        "url": link(obj),
        "body": markdown_body(obj),
        "creator_id": instance.person_id(str(obj.get("attributedTo"))),
        "community_id": 1,
        "removed": False,
        "locked": False,
        "published": _lemmy_time(item_date(instance, item)),
        "updated": _lemmy_time(updated) if updated else None,
        "deleted": item.deleted,
        "nsfw": bool(obj.get("sensitive")),
        "ap_id": item.id,
        "local": False,
        "language_id": instance.language_id(language(obj)),
        "featured_community": False,
        "featured_local": False,
    }
    return {k: v for k, v in post.items() if v is not None}


def _lemmy_post_view(instance: Instance, item: Stored) -> dict[str, Any]:
    comments = [c for c in comments_of(instance, item) if not c.deleted]
    newest = max((item_date(instance, c) for c in comments), default=item_date(instance, item))
    vote = self_vote(item)
    return {
        "post": _lemmy_post(instance, item),
        "creator": _lemmy_person(instance, str(item.object.get("attributedTo"))),
        "community": _lemmy_community(instance),
        "creator_banned_from_community": False,
        "banned_from_community": False,
        "creator_is_moderator": False,
        "creator_is_admin": False,
        "counts": {
            "post_id": item.local_id,
            "comments": len(comments),
            "score": vote,
            "upvotes": vote,
            "downvotes": 0,
            "published": _lemmy_time(item_date(instance, item)),
            "newest_comment_time": _lemmy_time(newest),
        },
        "subscribed": "NotSubscribed",
        "saved": False,
        "read": False,
        "hidden": False,
        "creator_blocked": False,
        # my_vote is None without a login, and left out.
        "unread_comments": len(comments),
    }


def _lemmy_comment_view(instance: Instance, item: Stored) -> dict[str, Any]:
    obj = item.object
    post = instance.objects[item.post or ""]
    updated = parse_time(obj["updated"]) if obj.get("updated") else None
    comment: dict[str, Any] = {
        "id": item.local_id,
        "creator_id": instance.person_id(str(obj.get("attributedTo"))),
        "post_id": post.local_id,
        "content": markdown_body(obj) or "",
        "removed": False,
        "published": _lemmy_time(item_date(instance, item)),
        "updated": _lemmy_time(updated) if updated else None,
        "deleted": item.deleted,
        "ap_id": item.id,
        "local": False,
        "path": ".".join(str(i) for i in [0, *comment_path(instance, item)]),
        "distinguished": bool(obj.get("distinguished")),
        "language_id": instance.language_id(language(obj)),
    }
    vote = self_vote(item)
    return {
        "comment": {k: v for k, v in comment.items() if v is not None},
        "creator": _lemmy_person(instance, str(obj.get("attributedTo"))),
        "post": _lemmy_post(instance, post),
        "community": _lemmy_community(instance),
        "counts": {
            "comment_id": item.local_id,
            "score": vote,
            "upvotes": vote,
            "downvotes": 0,
            "published": _lemmy_time(item_date(instance, item)),
            "child_count": descendants(instance, item),
        },
        "creator_banned_from_community": False,
        "banned_from_community": False,
        "creator_is_moderator": False,
        "creator_is_admin": False,
        "subscribed": "NotSubscribed",
        "saved": False,
        "creator_blocked": False,
    }


def _lemmy_community_view(instance: Instance) -> dict[str, Any]:
    items = [i for i in instance.objects.values() if not i.deleted]
    return {
        "community": _lemmy_community(instance),
        "subscribed": "NotSubscribed",
        "blocked": False,
        "counts": {
            "community_id": 1,
            "subscribers": len(instance.followers),
            "posts": sum(1 for i in items if i.kind == "post"),
            "comments": sum(1 for i in items if i.kind == "comment"),
            "published": COMMUNITY_PUBLISHED,
            "users_active_day": 0,
            "users_active_week": 0,
            "users_active_month": 0,
            "users_active_half_year": 0,
            "subscribers_local": 0,
        },
        "banned_from_community": False,
    }


def _lemmy_not_found(instance: Instance, deleted: bool) -> web.Response:
    if instance.version.startswith("0."):
        # A deleted object's error keeps diesel's NotFound inside, which makes
        # 0.19's status 404 (crates/utils/src/error.rs status_code); an object
        # it does not hold is a plain 400.
        return json_response({"error": "couldnt_find_object"}, 404 if deleted else 400)
    if deleted:
        # 1.0: PostView::read hides a deleted post from anonymous readers.
        return json_response({"error": "not_found", "cause": "Record not found"}, 404)
    # 1.0 wraps the federation library's error in ResolveObjectFailed; its
    # LemmyError serialises the cause beside the type.
    return json_response(
        {
            "error": "resolve_object_failed",
            "message": "Object was not found in local database",
            "cause": "ResolveObjectFailed",
        },
        400,
    )


async def resolve_v3(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    query = request.query.get("q")
    if query is None:
        return web.Response(status=400, text="Query deserialize error: missing field `q`")
    if not instance.lookup_enabled:
        # check_private_instance: a private instance answers nobody without a login.
        return json_response({"error": "instance_is_private"}, 400)
    if query == instance.group_id:
        return json_response({"community": _lemmy_community_view(instance)})
    item = instance.objects.get(query)
    if item is None:
        return _lemmy_not_found(instance, deleted=False)
    if item.deleted:
        # 0.19 hides every deleted object; 1.0 shows a deleted comment, and a
        # deleted post that has comments (crates/db_views/post/src/impls.rs).
        lemmy_0 = instance.version.startswith("0.")
        held = [c for c in comments_of(instance, item) if not c.deleted]
        if lemmy_0 or (item.kind == "post" and not held):
            return _lemmy_not_found(instance, deleted=True)
    if item.kind == "post":
        return json_response({"post": _lemmy_post_view(instance, item)})
    return json_response({"comment": _lemmy_comment_view(instance, item)})

"""PieFed's lookup for an anonymous client: `GET /api/alpha/resolve_object?q=URL`.

app/api/alpha/utils/misc.py get_resolve_object matches the exact ap_id (its
replies first, then its posts, then communities) and answers post_view or
reply_view variant 5 (app/api/alpha/views.py); the field sets below are those
the real server's answers have. It has no Lemmy API: anything else under
/api/v3/ is its HTML 404.
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
)


async def piefed_not_found(request: web.Request) -> web.Response:
    page = (
        '\n    <h3 class="card-title">Ooops, something is broken!</h3>\n'
        "    <p>The page your browser tried to load could not be found.</p>\n"
    )
    return web.Response(status=404, text=page, content_type="text/html")


def _piefed_time(value: datetime) -> str:
    """PieFed's form: naive UTC, isoformat with microseconds, and a Z."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _piefed_error(message: str, status: str = "Bad Request") -> web.Response:
    return json_response({"code": 400, "message": message, "status": status}, 400)


def _piefed_person(instance: Instance, actor: str) -> dict[str, Any]:
    document = instance.actors.get(actor) or {}
    name = document.get("preferredUsername") or actor.rstrip("/").rsplit("/", 1)[-1]
    return {
        "actor_id": actor,
        "banned": actor in instance.banned,
        "bot": document.get("type") == "Service",
        "deleted": False,
        "extra_fields": [],
        "id": instance.person_id(actor),
        "instance_id": instance.instance_id(actor),
        "local": False,
        "published": _piefed_time(account_published(instance, actor)),
        "title": document.get("name") or name,
        "user_name": name,
    }


def _piefed_community(instance: Instance) -> dict[str, Any]:
    published = _piefed_time(datetime.fromisoformat(COMMUNITY_PUBLISHED.replace("Z", "+00:00")))
    return {
        "actor_id": instance.group_id,
        "ai_generated": False,
        "ap_domain": instance.host,
        "banned": False,
        "deleted": False,
        "hidden": False,
        "id": 1,
        "instance_id": 1,
        "local": True,
        "name": instance.community,
        "nsfw": False,
        "published": published,
        "question_answer": False,
        "removed": False,
        "restricted_to_mods": instance.posting_restricted_to_mods,
        "title": instance.title,
        "updated": published,
    }


def _piefed_post(instance: Instance, item: Stored) -> dict[str, Any]:
    obj = item.object
    url = link(obj)
    post: dict[str, Any] = {
        "ai_generated": False,
        "ap_id": item.id,
        "community_id": 1,
        "cross_posts": [],
        "deleted": item.deleted,
        "emoji_reactions": None,
        "flair": "",
        "id": item.local_id,
        "instance_sticky": False,
        "language_id": instance.language_id(language(obj)),
        "local": False,
        "locked": False,
        "nsfw": bool(obj.get("sensitive")),
        "post_type": "Link" if url else "Discussion",
        "published": _piefed_time(item_date(instance, item)),
        "removed": False,
        "sticky": False,
        "tags": "",
        "title": obj.get("name") or "",
        "user_id": instance.person_id(str(obj.get("attributedTo"))),
    }
    body = markdown_body(obj)
    if body:
        post["body"] = body if not item.deleted else ""
    if url:
        post["url"] = url
    if item.edited_at:
        post["edited_at"] = _piefed_time(item.edited_at)
    return dict(sorted(post.items()))


def _piefed_post_view(instance: Instance, item: Stored) -> dict[str, Any]:
    comments = [c for c in comments_of(instance, item) if not c.deleted]
    newest = max((item_date(instance, c) for c in comments), default=item_date(instance, item))
    return {
        "activity_alert": False,
        "banned_from_community": False,
        "can_auth_user_moderate": False,
        "community": _piefed_community(instance),
        "counts": {
            "comments": len(comments),
            "cross_posts": 0,
            "downvotes": 0,
            "newest_comment_time": _piefed_time(newest),
            "post_id": item.local_id,
            "published": _piefed_time(item_date(instance, item)),
            "score": 1,
            "upvotes": 1,
        },
        "creator": _piefed_person(instance, str(item.object.get("attributedTo"))),
        "creator_banned_from_community": False,
        "creator_is_admin": False,
        "creator_is_moderator": False,
        "flair_list": [],
        "hidden": False,
        "my_vote": 0,
        "post": _piefed_post(instance, item),
        "read": False,
        "saved": False,
        "subscribed": "NotSubscribed",
        "unread_comments": len(comments),
    }


def _piefed_reply_view(instance: Instance, item: Stored) -> dict[str, Any]:
    obj = item.object
    post = instance.objects[item.post or ""]
    comment: dict[str, Any] = {
        "answer": False,
        "ap_id": item.id,
        "body": markdown_body(obj) or "",
        "deleted": item.deleted,
        "distinguished": bool(obj.get("distinguished")),
        "emoji_reactions": None,
        "id": item.local_id,
        "language_id": instance.language_id(language(obj)),
        "local": False,
        "locked": False,
        "path": ".".join(str(i) for i in [0, *comment_path(instance, item)]),
        "post_id": post.local_id,
        "published": _piefed_time(item_date(instance, item)),
        "removed": False,
        "user_id": instance.person_id(str(obj.get("attributedTo"))),
    }
    if item.edited_at:
        comment["edited_at"] = _piefed_time(item.edited_at)
    return {
        "activity_alert": False,
        "banned_from_community": False,
        "can_auth_user_moderate": False,
        "comment": dict(sorted(comment.items())),
        "community": _piefed_community(instance),
        "counts": {
            "child_count": descendants(instance, item),
            "comment_id": item.local_id,
            "downvotes": 0,
            "published": _piefed_time(item_date(instance, item)),
            "score": 1,
            "upvotes": 1,
        },
        "creator": _piefed_person(instance, str(obj.get("attributedTo"))),
        "creator_banned_from_community": False,
        "creator_blocked": False,
        "creator_is_admin": False,
        "creator_is_moderator": False,
        "my_vote": 0,
        "post": _piefed_post(instance, post),
        "saved": False,
        "subscribed": "NotSubscribed",
    }


def _piefed_community_view(instance: Instance) -> dict[str, Any]:
    items = [i for i in instance.objects.values() if not i.deleted]
    published = _piefed_community(instance)["published"]
    return {
        "activity_alert": False,
        "blocked": False,
        "community": _piefed_community(instance),
        "counts": {
            "active_6monthly": 0,
            "active_daily": 0,
            "active_monthly": 0,
            "active_weekly": 0,
            "id": 1,
            "post_count": sum(1 for i in items if i.kind == "post"),
            "post_reply_count": sum(1 for i in items if i.kind == "comment"),
            "published": published,
            "subscriptions_count": len(instance.followers),
            "total_subscriptions_count": len(instance.followers),
        },
        "flair_list": [],
        "subscribed": "NotSubscribed",
    }


async def resolve_alpha(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    if not instance.lookup_enabled:
        # app/api/alpha/routes.py: every route checks enable_api() first.
        return _piefed_error("alpha api is not enabled")
    query = request.query.get("q")
    if query is None:
        return _piefed_error(
            "Validation failed", "{'query': {'q': ['Missing data for required field.']}}"
        )
    # An exact ap_id: replies first, then posts, then the community (lower-cased).
    item = instance.objects.get(query)
    if item is not None:
        if item.deleted:
            return _piefed_error("No object found.")
        if item.kind == "comment":
            return json_response({"comment": _piefed_reply_view(instance, item)})
        return json_response({"post": _piefed_post_view(instance, item)})
    if query.lower() == instance.group_id.lower():
        return json_response({"community": _piefed_community_view(instance)})
    return _piefed_error("No object found.")

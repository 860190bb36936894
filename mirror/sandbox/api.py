"""The sandbox's JSON APIs: the lookup an anonymous client gets, in each profile's shape.

Lemmy (`/api/v3/resolve_object`, crates/apub/src/api/resolve_object.rs in
0.19; crates/api/api/src/federation/resolve_object.rs and the v3 conversion
in crates/api/routes_v3 in 1.0) looks only in its own database without a
login and answers a ResolveObjectResponse (crates/api_common/src/site.rs):
`{"post": PostView}` or `{"comment": CommentView}`, views as in
crates/db_views/src/structs.rs, empty optional fields left out
(skip_serializing_none). PieFed (`/api/alpha/resolve_object`,
app/api/alpha/utils/misc.py get_resolve_object) matches the exact ap_id and
answers post_view/reply_view variant 5 (app/api/alpha/views.py); the field
sets below are those its real answers have.

Also `/api/v3/federated_instances` (both servers serve it) and `/api/threads`,
the tests' own view of everything stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mirror.sandbox.state import COMMUNITY_PUBLISHED, INSTANCE, Instance, Stored


def add_routes(router: web.UrlDispatcher, api: str) -> None:
    router.add_get("/api/threads", threads_json)
    router.add_get("/api/v3/federated_instances", federated_instances)
    if api == "v3":
        router.add_get("/api/v3/resolve_object", resolve_v3)
    else:
        router.add_get("/api/alpha/resolve_object", resolve_alpha)
        # PieFed has no Lemmy API: anything else under /api/v3/ is its HTML 404.
        router.add_get("/api/v3/{tail:.*}", piefed_not_found)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


async def threads_json(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    return _json(
        {
            "threads": instance.threads(),
            "refused": instance.refused,
            "failed": instance.failed,
            "announces": instance.announces,
            "followers": sorted(instance.followers),
        }
    )


async def federated_instances(request: web.Request) -> web.Response:
    blocked = sorted(request.app[INSTANCE].blocked_domains)
    listing = {"linked": [], "allowed": [], "blocked": [{"domain": d} for d in blocked]}
    return _json({"federated_instances": listing})


async def piefed_not_found(request: web.Request) -> web.Response:
    page = (
        '\n    <h3 class="card-title">Ooops, something is broken!</h3>\n'
        "    <p>The page your browser tried to load could not be found.</p>\n"
    )
    return web.Response(status=404, text=page, content_type="text/html")


# -- shared ------------------------------------------------------------------------


def _parse(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _date(instance: Instance, item: Stored) -> datetime:
    return _parse(instance.shown_date(item)) or datetime.now(UTC)


def _markdown(obj: dict[str, Any]) -> str | None:
    """The body both servers keep: `source` when it is Markdown, else the content."""
    source = obj.get("source")
    if isinstance(source, dict) and isinstance(source.get("content"), str):
        return str(source["content"])
    content = obj.get("content")
    return content if isinstance(content, str) else None


def _link(obj: dict[str, Any]) -> str | None:
    for attachment in obj.get("attachment") or []:
        if isinstance(attachment, dict) and attachment.get("type") == "Link":
            href = attachment.get("href")
            return href if isinstance(href, str) else None
    return None


def _language(obj: dict[str, Any]) -> str | None:
    language = obj.get("language")
    identifier = language.get("identifier") if isinstance(language, dict) else None
    return identifier if isinstance(identifier, str) else None


def _path(instance: Instance, item: Stored) -> list[int]:
    """Comment ids from the top comment down to this one (both servers' `path`, after 0)."""
    ids = []
    current: Stored | None = item
    while current is not None and current.kind == "comment":
        ids.append(current.local_id)
        current = instance.objects.get(current.parent or "")
    return ids[::-1]


def _comments(instance: Instance, post: Stored) -> list[Stored]:
    return [i for i in instance.objects.values() if i.kind == "comment" and i.post == post.id]


def _descendants(instance: Instance, item: Stored) -> int:
    children = instance.children()
    count, stack = 0, [item.id]
    while stack:
        below = children.get(stack.pop(), [])
        count += len(below)
        stack.extend(c.id for c in below)
    return count


def _self_vote(item: Stored) -> int:
    # Both servers count the author's own vote on what arrives in a Create;
    # a parent Lemmy fetched has none.
    return 1 if item.announced else 0


def _account_published(instance: Instance, actor: str) -> datetime:
    published = _parse((instance.actors.get(actor) or {}).get("published"))
    return published or instance.actor_seen.get(actor) or datetime.now(UTC)


# -- Lemmy -------------------------------------------------------------------------


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
        "published": _lemmy_time(_account_published(instance, actor)),
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
    updated = _parse(obj["updated"]) if obj.get("updated") else None
    post: dict[str, Any] = {
        "id": item.local_id,
        "name": obj.get("name") or "",
        "url": _link(obj),
        "body": _markdown(obj),
        "creator_id": instance.person_id(str(obj.get("attributedTo"))),
        "community_id": 1,
        "removed": False,
        "locked": False,
        "published": _lemmy_time(_date(instance, item)),
        "updated": _lemmy_time(updated) if updated else None,
        "deleted": item.deleted,
        "nsfw": bool(obj.get("sensitive")),
        "ap_id": item.id,
        "local": False,
        "language_id": instance.language_id(_language(obj)),
        "featured_community": False,
        "featured_local": False,
    }
    return {k: v for k, v in post.items() if v is not None}


def _lemmy_post_view(instance: Instance, item: Stored) -> dict[str, Any]:
    comments = [c for c in _comments(instance, item) if not c.deleted]
    newest = max((_date(instance, c) for c in comments), default=_date(instance, item))
    vote = _self_vote(item)
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
            "published": _lemmy_time(_date(instance, item)),
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
    updated = _parse(obj["updated"]) if obj.get("updated") else None
    comment: dict[str, Any] = {
        "id": item.local_id,
        "creator_id": instance.person_id(str(obj.get("attributedTo"))),
        "post_id": post.local_id,
        "content": _markdown(obj) or "",
        "removed": False,
        "published": _lemmy_time(_date(instance, item)),
        "updated": _lemmy_time(updated) if updated else None,
        "deleted": item.deleted,
        "ap_id": item.id,
        "local": False,
        "path": ".".join(str(i) for i in [0, *_path(instance, item)]),
        "distinguished": bool(obj.get("distinguished")),
        "language_id": instance.language_id(_language(obj)),
    }
    vote = _self_vote(item)
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
            "published": _lemmy_time(_date(instance, item)),
            "child_count": _descendants(instance, item),
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
        return _json({"error": "couldnt_find_object"}, 404 if deleted else 400)
    if deleted:
        # 1.0: PostView::read hides a deleted post from anonymous readers.
        return _json({"error": "not_found", "cause": "Record not found"}, 404)
    # 1.0 wraps the federation library's error in ResolveObjectFailed; its
    # LemmyError serialises the cause beside the type.
    return _json(
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
        return _json({"error": "instance_is_private"}, 400)
    if query == instance.group_id:
        return _json({"community": _lemmy_community_view(instance)})
    item = instance.objects.get(query)
    if item is None:
        return _lemmy_not_found(instance, deleted=False)
    if item.deleted:
        # 0.19 hides every deleted object; 1.0 shows a deleted comment, and a
        # deleted post that has comments (crates/db_views/post/src/impls.rs).
        lemmy_0 = instance.version.startswith("0.")
        held = [c for c in _comments(instance, item) if not c.deleted]
        if lemmy_0 or (item.kind == "post" and not held):
            return _lemmy_not_found(instance, deleted=True)
    if item.kind == "post":
        return _json({"post": _lemmy_post_view(instance, item)})
    return _json({"comment": _lemmy_comment_view(instance, item)})


# -- PieFed ------------------------------------------------------------------------


def _piefed_time(value: datetime) -> str:
    """PieFed's form: naive UTC, isoformat with microseconds, and a Z."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _piefed_error(message: str, status: str = "Bad Request") -> web.Response:
    return _json({"code": 400, "message": message, "status": status}, 400)


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
        "published": _piefed_time(_account_published(instance, actor)),
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
    url = _link(obj)
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
        "language_id": instance.language_id(_language(obj)),
        "local": False,
        "locked": False,
        "nsfw": bool(obj.get("sensitive")),
        "post_type": "Link" if url else "Discussion",
        "published": _piefed_time(_date(instance, item)),
        "removed": False,
        "sticky": False,
        "tags": "",
        "title": obj.get("name") or "",
        "user_id": instance.person_id(str(obj.get("attributedTo"))),
    }
    body = _markdown(obj)
    if body:
        post["body"] = body if not item.deleted else ""
    if url:
        post["url"] = url
    if item.edited_at:
        post["edited_at"] = _piefed_time(item.edited_at)
    return dict(sorted(post.items()))


def _piefed_post_view(instance: Instance, item: Stored) -> dict[str, Any]:
    comments = [c for c in _comments(instance, item) if not c.deleted]
    newest = max((_date(instance, c) for c in comments), default=_date(instance, item))
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
            "published": _piefed_time(_date(instance, item)),
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
        "body": _markdown(obj) or "",
        "deleted": item.deleted,
        "distinguished": bool(obj.get("distinguished")),
        "emoji_reactions": None,
        "id": item.local_id,
        "language_id": instance.language_id(_language(obj)),
        "local": False,
        "locked": False,
        "path": ".".join(str(i) for i in [0, *_path(instance, item)]),
        "post_id": post.local_id,
        "published": _piefed_time(_date(instance, item)),
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
            "child_count": _descendants(instance, item),
            "comment_id": item.local_id,
            "downvotes": 0,
            "published": _piefed_time(_date(instance, item)),
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
            return _json({"comment": _piefed_reply_view(instance, item)})
        return _json({"post": _piefed_post_view(instance, item)})
    if query.lower() == instance.group_id.lower():
        return _json({"community": _piefed_community_view(instance)})
    return _piefed_error("No object found.")

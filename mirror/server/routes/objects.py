"""Published objects and activities, at their ids: JSON, an HTML page, or 410 when deleted."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from mirror import __version__
from mirror.db.base import table_of
from mirror.db.models import Activity, ApObject
from mirror.federation.archive import thread_comments
from mirror.server.appkeys import FEDERATION
from mirror.server.display import human_time
from mirror.server.negotiation import activity_json, wants_html
from mirror.server.routes.access import require_signed_fetch
from mirror.server.templates import render
from mirror.server.threads import Thread, load_thread
from mirror.vocab.collections import build_collection
from mirror.vocab.context import AS
from mirror.vocab.parse import storable
from mirror.vocab.times import rfc3339

routes = web.RouteTableDef()


def _could_be_ours(identifier: str) -> bool:
    """Our ids fit a 64-character column; a NUL would make PostgreSQL fail the lookup (a 500)."""
    return len(identifier) <= 64 and storable(identifier)


@routes.get("/objects/{object_id}")
async def handle_object(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    object_id = request.match_info["object_id"]
    if not _could_be_ours(object_id):
        raise web.HTTPNotFound(text="no such object")

    def load() -> Any:
        with federation.engine.connect() as conn:
            return conn.execute(
                sa.select(table_of(ApObject)).where(ApObject.id == object_id)
            ).first()

    obj = await asyncio.to_thread(load)
    if obj is None:
        raise web.HTTPNotFound(text="no such object")
    url = federation.urls.object(obj.id)
    if wants_html(request):
        return await _object_page(request, obj)
    await require_signed_fetch(request)
    if obj.deleted_at is not None:
        # Lemmy reads 410 on fetch as "deleted".
        return activity_json(
            {
                "@context": AS,
                "id": url,
                "type": "Tombstone",
                "formerType": obj.type,
                "deleted": rfc3339(obj.deleted_at),
            },
            status=410,
        )
    return activity_json(obj.json)


async def _object_page(request: web.Request, obj: Any) -> web.Response:
    federation = request.app[FEDERATION]

    def load() -> Thread | None:
        with federation.engine.connect() as conn:
            return load_thread(conn, federation.urls, obj.id)

    thread = await asyncio.to_thread(load)
    if thread is None:  # deleted from the database meanwhile
        raise web.HTTPNotFound(text="no such object")
    original = obj.json.get("url")
    return render(
        "object.html",
        status=410 if obj.deleted_at else 200,
        version=__version__,
        thread=thread,
        original=original if isinstance(original, str) else None,
        deleted_at=rfc3339(obj.deleted_at) if obj.deleted_at else None,
        deleted_when=human_time(obj.deleted_at),
    )


@routes.get("/objects/{object_id}/replies")
async def handle_replies(request: web.Request) -> web.Response:
    """A hosted post's comments, parents first, whole (PieFed reads a post's `replies`)."""
    federation = request.app[FEDERATION]
    object_id = request.match_info["object_id"]
    if not _could_be_ours(object_id):
        raise web.HTTPNotFound(text="no such post")

    def load() -> list[dict[str, Any]] | None:
        with federation.engine.connect() as conn:
            return thread_comments(conn, object_id)

    comments = await asyncio.to_thread(load)
    if comments is None:
        raise web.HTTPNotFound(text="no such post")
    await require_signed_fetch(request)
    items = [{k: v for k, v in c.items() if k != "@context"} for c in comments]
    return activity_json(
        build_collection(federation.urls.replies(object_id), total=len(items), items=items)
    )


@routes.get("/activities/{activity_id}")
async def handle_activity(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    activity_id = request.match_info["activity_id"]
    if not _could_be_ours(activity_id):
        raise web.HTTPNotFound(text="no such activity")

    def load() -> dict[str, Any] | None:
        with federation.engine.connect() as conn:
            return conn.scalar(sa.select(Activity.json).where(Activity.id == activity_id))

    document = await asyncio.to_thread(load)
    if document is None:
        raise web.HTTPNotFound(text="no such activity")
    await require_signed_fetch(request)
    return activity_json(document)

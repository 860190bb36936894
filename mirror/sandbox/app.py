"""The sandbox instance: one community, an inbox with its profile's checks, APIs and pages.

This module is the federation side (discovery, the inbox, what the community
sends); state.py holds what it stored, api.py the lookup routes, pages.py the
HTML pages.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import ssl
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from httpsig.verify import HeaderVerifier

from mirror.sandbox import api, pages, profiles, rules, subscription_routes, subscriptions
from mirror.sandbox.rules import Refused, ServerError
from mirror.sandbox.signing import signed_post_headers
from mirror.sandbox.state import CONTEXT, INSTANCE, SESSION, Instance, Stored

__all__ = ["INSTANCE", "Instance", "Stored", "make_sandbox_app"]

log = logging.getLogger(__name__)
ACTIVITY_JSON = "application/activity+json"
SIGNATURE_WINDOW = timedelta(hours=1)
#: Lemmy reads at most 256 KiB of an inbox POST.
MAX_BODY = 256 * 1024
#: Refusals both servers answer with 400 whatever their profile: PieFed too
#: returns 400 for a body it cannot parse or a signature that fails
#: (app/activitypub/routes.py shared_inbox).
ALWAYS_400 = ("incorrect_signature", "invalid_json")


def make_sandbox_app(instance: Instance) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[INSTANCE] = instance

    async def session_context(app: web.Application) -> Any:
        # Its own context: OpenSSL reads SSL_CERT_FILE when the context is made, so
        # a test's certificate authority named after aiohttp's import is trusted.
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context())
        app[SESSION] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=10)
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/.well-known/webfinger", webfinger)
    app.router.add_get("/.well-known/nodeinfo", nodeinfo_index)
    app.router.add_get("/nodeinfo/2.1", nodeinfo)
    app.router.add_get("/c/{name}", group)
    app.router.add_post("/inbox", inbox)
    app.router.add_post("/c/{name}/inbox", inbox)
    app.router.add_post("/u/{name}/inbox", inbox)
    subscription_routes.add_routes(app.router)
    pages.add_routes(app.router)
    api.add_routes(app.router, instance.profile.api)
    return app


def _json(data: Any, status: int = 200, content_type: str = ACTIVITY_JSON) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type=content_type)


async def webfinger(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    if request.query.get("resource") != f"acct:{instance.community}@{instance.host}":
        return _json({"error": "not_found"}, 404, "application/json")
    return _json(
        {
            "subject": f"acct:{instance.community}@{instance.host}",
            "links": [{"rel": "self", "type": ACTIVITY_JSON, "href": instance.group_id}],
        },
        content_type="application/jrd+json",
    )


async def nodeinfo_index(request: web.Request) -> web.Response:
    base = request.app[INSTANCE].base
    return _json(
        {
            "links": [
                {
                    "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                    "href": f"{base}/nodeinfo/2.1",
                }
            ]
        },
        content_type="application/json",
    )


async def nodeinfo(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    return _json(
        {
            "version": "2.1",
            "software": {"name": instance.software, "version": instance.version},
            "protocols": ["activitypub"],
            "openRegistrations": False,
            "usage": {"users": {"total": 0}, "localPosts": 0},
            # fedimirror's own marker: a run into a sandbox defaults to no pacing.
            "metadata": {"sandbox": True},
        },
        content_type="application/json",
    )


async def group(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    if request.match_info["name"] != instance.community:
        return _json({"error": "not_found"}, 404, "application/json")
    return _json(instance.group())


def _refuse(instance: Instance, exc: Refused) -> web.Response:
    """The refusal is recorded whatever is answered; the profile decides the status."""
    instance.refused.append({"error": exc.error, "message": exc.message})
    log.info("sandbox refused: %s: %s", exc.error, exc.message)
    status = 400 if exc.error in ALWAYS_400 else int(instance.refusal_status or 400)
    if status < 300:
        # PieFed answers a refusal with an empty 200: the reason is only in its log.
        return web.Response(status=status)
    return _json({"error": exc.error, "message": exc.message}, status, "application/json")


def _server_error(instance: Instance, object_id: str | None, message: str) -> web.Response:
    instance.failed.append({"object": object_id, "message": message})
    log.info("sandbox answered 500 for %s: %s", object_id, message)
    if instance.software == "piefed":
        # With FLASK_DEBUG=1 an exception while processing inline reaches
        # Werkzeug's debugger page, which names the exception in its title.
        title = html.escape(f"sqlalchemy.exc.DataError: {message} // Werkzeug Debugger")
        page = f"<!doctype html>\n<html lang=en>\n<head><title>{title}</title></head>\n</html>\n"
        return web.Response(status=500, text=page, content_type="text/html")
    return web.Response(status=500, text=f"Internal Server Error: {message}")


def _fails(instance: Instance, activity: dict[str, Any]) -> bool:
    object_id = rules.object_id(activity)
    if object_id is not None and object_id in instance.fail_objects:
        return True
    return instance.fail_when is not None and bool(instance.fail_when(activity))


async def inbox(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    body = await request.read()
    if request.content_type != ACTIVITY_JSON:
        return _refuse(instance, Refused("parse_error", f"Content-Type {request.content_type!r}"))
    try:
        try:
            activity = json.loads(body)
        except ValueError as exc:
            raise Refused("invalid_json", f"the body is not JSON: {exc}") from None
        activity_id, kind, actor = rules.check_envelope(activity, instance.host.lower())
        actor_doc = await _verify(request, body, actor)
        if _fails(instance, activity):
            raise ServerError("the sandbox was told to fail for this object (fail_objects)")
        if rules.domain(actor) in instance.blocked_domains:
            raise Refused("domain_blocked", f"{rules.domain(actor)} is blocked")
        if actor in instance.banned:
            raise Refused("site_ban", f"{actor} is banned")
        # Both servers record the id before processing, so a retry after a
        # failure is a duplicate while it is remembered.
        if instance.seen(activity_id):
            raise Refused("duplicate", f"duplicate key value: received_activity {activity_id}")
        await _apply(request, instance, activity, kind, actor, actor_doc)
    except Refused as exc:
        return _refuse(instance, exc)
    except ServerError as exc:
        return _server_error(instance, rules.object_id(activity), str(exc))
    return web.Response(status=200)


async def _fetch(request: web.Request, url: str) -> dict[str, Any]:
    try:
        async with request.app[SESSION].get(url, headers={"Accept": ACTIVITY_JSON}) as response:
            if response.status != 200:
                raise Refused("couldnt_fetch", f"GET {url}: HTTP {response.status}")
            if response.content_type != ACTIVITY_JSON:
                raise Refused("couldnt_fetch", f"GET {url}: Content-Type {response.content_type}")
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise Refused("couldnt_fetch", f"GET {url}: {exc}") from None
    if not isinstance(data, dict) or data.get("id") != url:
        raise Refused("couldnt_fetch", f"GET {url}: the document's id is not its URL")
    return data


async def _verify(request: web.Request, body: bytes, actor: str) -> dict[str, Any]:
    """Digest, Date and the draft-cavage signature, checked with httpsig."""
    instance = request.app[INSTANCE]
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    if request.headers.get("Digest") != digest:
        raise Refused("incorrect_signature", "the Digest does not match the body")
    try:
        date = parsedate_to_datetime(request.headers.get("Date", ""))
    except (TypeError, ValueError):
        raise Refused("incorrect_signature", "no valid Date header") from None
    if instance.check_date and abs(instance.clock.now() - date) > SIGNATURE_WINDOW:
        raise Refused("incorrect_signature", "the Date is more than an hour off")
    signature = request.headers.get("Signature", "")
    key_id = signature.split('keyId="', 1)[-1].split('"', 1)[0]
    # Like Lemmy: actors are cached, and fetched again once when a check fails.
    for fresh in (False, True):
        document = instance.actors.get(actor) if not fresh else None
        if document is None:
            document = await _fetch(request, key_id.split("#")[0])
            instance.actors[actor] = document
            instance.actor_seen.setdefault(actor, instance.clock.now())
        key = document.get("publicKey") or {}
        if key.get("id") != key_id or key.get("owner") != actor or document.get("id") != actor:
            if fresh:
                raise Refused("incorrect_signature", f"the key {key_id} does not belong to {actor}")
            continue
        verifier = HeaderVerifier(
            headers=dict(request.headers),
            secret=key["publicKeyPem"].encode(),
            required_headers=["(request-target)", "host", "date", "digest"],
            method="POST",
            path=request.path_qs,
            host=request.host,
            sign_header="Signature",
        )
        if verifier.verify():
            return document
    raise Refused("incorrect_signature", "the signature does not verify")


def _without_language(activity: dict[str, Any]) -> dict[str, Any]:
    """The activity as Lemmy's checks should see it where PieFed's language rule applies instead."""
    embedded = activity.get("object")
    if not isinstance(embedded, dict) or "language" not in embedded:
        return activity
    return {**activity, "object": {k: v for k, v in embedded.items() if k != "language"}}


async def _apply(
    request: web.Request,
    instance: Instance,
    activity: dict[str, Any],
    kind: str,
    actor: str,
    actor_doc: dict[str, Any],
) -> None:
    if kind in ("Create", "Update"):
        # PieFed does not check languages as Lemmy does: it stores any
        # identifier (and fails on a long one, in _store).
        checked = _without_language(activity) if instance.long_language_fails else activity
        rules.check_object(checked, actor, instance.group_id)
        await _store(request, instance, activity["object"], announce=True)
        await _announce(request, instance, activity, actor)
    elif kind == "Delete":
        _delete(instance, activity, actor)
        await _announce(request, instance, activity, actor)
    elif kind == "Announce":
        await announced(request, instance, activity, actor)
    elif kind == "Follow":
        if activity.get("object") != instance.group_id:
            raise Refused("invalid_community", "a Follow of something else")
        inbox_url = (actor_doc.get("endpoints") or {}).get("sharedInbox") or actor_doc["inbox"]
        instance.followers[actor] = inbox_url
        accept = {
            "@context": CONTEXT,
            "id": f"{instance.group_id}/activities/accept/{next(instance._numbers)}",
            "type": "Accept",
            "actor": instance.group_id,
            "to": [actor],
            "object": activity,
        }
        instance.spawn(_send(request.app, instance, inbox_url, accept))
    elif kind == "Accept":
        subscriptions.accepted(instance, activity, actor)
        instance.spawn(read_outbox(request, instance, actor))
    elif kind == "Undo":
        inner = activity.get("object")
        if isinstance(inner, dict) and inner.get("type") == "Follow":
            instance.followers.pop(actor, None)
    # Anything else is accepted and ignored, as Lemmy does.


def _delete(instance: Instance, activity: dict[str, Any], actor: str) -> None:
    object_id = rules.check_delete(activity, actor)
    item = instance.objects.get(object_id)
    if item is not None and not item.deleted:
        item.deleted = True
        if item.kind == "post":
            author = str(item.object.get("attributedTo"))
            instance.post_counts[author] = instance.post_counts.get(author, 1) - 1


async def announced(
    request: web.Request,
    instance: Instance,
    activity: dict[str, Any],
    group: str,
    *,
    posts_only: bool = False,
) -> None:
    """What an Announce from a followed Group brings: Create, Update or Delete of its posts.

    The Announce's signature was checked as its actor's; Lemmy takes one only
    from a community it follows (activities/community/announce.rs), and the
    inner activity, embedded or fetched by id, passes the rules a direct one does.
    """
    subscription = instance.subscriptions.get(group)
    if subscription is None or not subscription.accepted:
        raise Refused("not_subscribed", f"an Announce from {group}, which is not followed here")
    inner = activity.get("object")
    if isinstance(inner, str):
        inner = await _fetch(request, inner)
    _, kind, actor = rules.check_envelope(inner, instance.host.lower(), needs_context=False)
    if kind in ("Create", "Update"):
        if isinstance(inner.get("object"), str):
            inner = {**inner, "object": await _fetch(request, inner["object"])}
        if posts_only and (inner["object"] or {}).get("inReplyTo") is not None:
            return
        rules.check_object(inner, actor, group)
        await _store(request, instance, inner["object"], announce=False, community=group)
    elif kind == "Delete" and not posts_only:
        _delete(instance, inner, actor)
    # Likes, Undos and the rest are accepted and ignored here.


#: Lemmy and PieFed read at most this many items of a community's outbox.
OUTBOX_ITEMS = 50


async def read_outbox(request: web.Request, instance: Instance, group: str) -> None:
    """After the Accept, what the outbox holds: an unpaged collection with its items
    inline, or a paged one through `first`, up to 50 items.

    Lemmy (crates/apub/src/collections/community_outbox.rs) takes only the
    Create/Update of posts among them, each checked as if received, and skips
    what fails; the sandbox records those refusals, for the tests to see.
    """
    subscription = instance.subscriptions[group]
    try:
        outbox = await _fetch(request, str(subscription.group.get("outbox")))
        items = outbox.get("orderedItems")
        if items is None and outbox.get("first") is not None:
            first = outbox["first"]
            page = first if isinstance(first, dict) else await _fetch(request, str(first))
            items = page.get("orderedItems")
        if not isinstance(items, list):
            raise Refused("parse_error", f"{outbox['id']}: no orderedItems in the outbox")
    except Refused as exc:
        _refuse(instance, exc)
        return
    subscription.outbox_read = True
    for item in reversed(items[:OUTBOX_ITEMS]):
        try:
            if not isinstance(item, dict) or item.get("type") != "Announce":
                raise Refused("parse_error", "an outbox item that is not an Announce")
            if item.get("actor") != group:
                raise Refused("invalid_community", f"an outbox Announce by {item.get('actor')}")
            await announced(request, instance, item, group, posts_only=True)
        except Refused as exc:
            _refuse(instance, exc)
    subscription.outbox_items = len(items[:OUTBOX_ITEMS])


#: Lemmy fetches at most this many objects for one activity (rules §5.2).
FETCH_BUDGET = 100


async def _store(
    request: web.Request,
    instance: Instance,
    obj: dict[str, Any],
    *,
    announce: bool,
    budget: int = FETCH_BUDGET,
    community: str = "",
) -> Stored:
    object_id = obj["id"]
    author = str(obj.get("attributedTo"))
    existing = instance.objects.get(object_id)
    if obj.get("inReplyTo") is None:
        rules.check_post(obj, takes_note_posts=instance.takes_note_posts)
        if existing is None and instance.new_account_limit:
            rules.check_new_account(
                created=_account_created(instance, author),
                posts=instance.post_counts.get(author, 0),
                now=instance.clock.now(),
                max_posts=instance.new_account_posts,
                age=instance.new_account_age,
            )
        stored = Stored(object_id, "post", obj, post=object_id)
    else:
        parent_id = rules.check_comment(obj)
        parent = instance.objects.get(parent_id)
        if parent is None:
            if not instance.fetch_unknown_parents:
                rules.refuse_unknown_parent(parent_id)
            # An unknown parent is fetched from its server (and stored, not
            # announced), its own parents too, within Lemmy's fetch budget.
            if budget <= 0:
                raise Refused("fetch_limit", f"more than {FETCH_BUDGET} fetches for one activity")
            fetched = await _fetch(request, parent_id)
            rules.check_object(
                {"to": fetched.get("to"), "cc": fetched.get("cc", []), "object": fetched},
                str(fetched.get("attributedTo")),
                community or instance.group_id,
            )
            parent = await _store(
                request, instance, fetched, announce=False, budget=budget - 1, community=community
            )
        if parent.deleted:
            raise Refused("deleted", "the parent was deleted")
        depth = parent.depth + 1 if parent.kind == "comment" else 1
        if depth > rules.MAX_DEPTH:
            raise Refused("max_comment_depth_reached", f"depth {depth}")
        stored = Stored(object_id, "comment", obj, parent=parent_id, post=parent.post, depth=depth)
    if instance.long_language_fails:
        # Where PieFed stores the language: after its permission and parent checks.
        rules.check_language_column(obj, profiles.LANGUAGE_COLUMN)
    if existing is not None:
        # Lemmy upserts on the object id, whatever the order (rules §6.2).
        existing.object = obj
        existing.announced = existing.announced or announce
        existing.edited_at = instance.clock.now()
        return existing
    stored.announced = announce
    stored.community = community
    stored.number = next(instance._numbers)
    stored.local_id = instance.next_id(stored.kind)
    stored.received_at = instance.clock.now()
    stored.bot = (instance.actors.get(author) or {}).get("type") == "Service"
    if stored.kind == "post":
        instance.post_counts[author] = instance.post_counts.get(author, 0) + 1
    instance.objects[object_id] = stored
    return stored


def _account_created(instance: Instance, actor: str) -> datetime | None:
    first_seen = instance.actor_seen.setdefault(actor, instance.clock.now())
    return rules.account_created(instance.actors.get(actor) or {}, first_seen)


async def _announce(
    request: web.Request, instance: Instance, activity: dict[str, Any], actor: str
) -> None:
    inboxes = set(instance.followers.values())
    if not instance.announces_to_author_instance:
        inboxes = {i for i in inboxes if urlsplit(i).netloc != urlsplit(actor).netloc}
    if not inboxes:
        return
    announce = {
        "@context": CONTEXT,
        "id": f"{instance.group_id}/activities/announce/{next(instance._numbers)}",
        "type": "Announce",
        "actor": instance.group_id,
        "to": [rules.PUBLIC],
        "cc": [f"{instance.group_id}/followers"],
        "object": activity,
    }
    for inbox_url in sorted(inboxes):
        instance.spawn(_send(request.app, instance, inbox_url, announce))


async def _send(
    app: web.Application, instance: Instance, url: str, activity: dict[str, Any]
) -> None:
    """POST signed by the group's key, with httpsig (not fedimirror's signer)."""
    body = json.dumps(activity).encode()
    signed = signed_post_headers(
        url,
        body,
        key=instance.key,
        key_id=f"{instance.group_id}#main-key",
        now=instance.clock.now(),
        host_without_port=bool(instance.signs_host_without_port),
    )
    try:
        async with app[SESSION].post(url, data=body, headers=signed) as response:
            await response.read()
            if activity["type"] == "Announce":
                instance.announces += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("sandbox: sending to %s failed: %s", url, exc)

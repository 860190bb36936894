"""The sandbox instance: one community, an inbox with Lemmy's checks, and pages to look at."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import itertools
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import nh3
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpsig import HeaderSigner
from httpsig.verify import HeaderVerifier

from mirror.sandbox import rules
from mirror.sandbox.rules import Refused

log = logging.getLogger(__name__)
ACTIVITY_JSON = "application/activity+json"
CONTEXT = ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"]
SIGNATURE_WINDOW = timedelta(hours=1)
#: Lemmy reads at most 256 KiB of an inbox POST.
MAX_BODY = 256 * 1024


@dataclass
class Stored:
    """A post or comment as the sandbox keeps it."""

    id: str
    kind: str  # post or comment
    object: dict[str, Any]
    parent: str | None = None
    post: str | None = None
    depth: int = 0
    deleted: bool = False
    announced: bool = False
    number: int = 0


@dataclass
class Instance:
    """The sandbox's state: kept in memory, gone when it stops."""

    base: str
    community: str = "sandbox"
    title: str = "Sandbox community"
    software: str = "lemmy"
    version: str = "0.19.9"
    posting_restricted_to_mods: bool = False
    objects: dict[str, Stored] = field(default_factory=dict)
    seen_activities: set[str] = field(default_factory=set)
    refused: list[dict[str, Any]] = field(default_factory=list)
    followers: dict[str, str] = field(default_factory=dict)
    banned: set[str] = field(default_factory=set)
    #: Instances (domains) this one defederated from, as Lemmy's admin blocklist.
    blocked_domains: set[str] = field(default_factory=set)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    announces: int = 0
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    _numbers: Any = field(default_factory=lambda: itertools.count(1))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coroutine: Any) -> None:
        """Send in the background, as Lemmy's queue does; the inbox answers at once."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def host(self) -> str:
        return urlsplit(self.base).netloc

    @property
    def group_id(self) -> str:
        return f"{self.base}/c/{self.community}"

    @property
    def takes_note_posts(self) -> bool:
        # Lemmy 0.19 parses a top-level Note as a post; 1.0 refuses it (rules §3.4).
        return self.software != "lemmy" or self.version.startswith("0.")

    def group(self) -> dict[str, Any]:
        pem = (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        inbox = f"{self.group_id}/inbox" if self.version.startswith("0.") else f"{self.base}/inbox"
        return {
            "@context": [
                *CONTEXT,
                {
                    "lemmy": "https://join-lemmy.org/ns#",
                    "postingRestrictedToMods": "lemmy:postingRestrictedToMods",
                },
            ],
            "id": self.group_id,
            "type": "Group",
            "preferredUsername": self.community,
            "name": self.title,
            "summary": "<p>A fedimirror sandbox community.</p>",
            "inbox": inbox,
            "outbox": f"{self.group_id}/outbox",
            "followers": f"{self.group_id}/followers",
            "endpoints": {"sharedInbox": f"{self.base}/inbox"},
            "publicKey": {
                "id": f"{self.group_id}#main-key",
                "owner": self.group_id,
                "publicKeyPem": pem,
            },
            "postingRestrictedToMods": self.posting_restricted_to_mods,
            "published": "2026-01-01T00:00:00Z",
        }

    def threads(self) -> list[dict[str, Any]]:
        """Every stored post with its comments (pre-order), for tests and the pages."""
        children: dict[str, list[Stored]] = {}
        for item in self.objects.values():
            if item.kind == "comment" and item.parent:
                children.setdefault(item.parent, []).append(item)

        def walk(parent: str) -> list[dict[str, Any]]:
            out = []
            for child in sorted(children.get(parent, []), key=lambda s: s.number):
                out.append(_public(child))
                out.extend(walk(child.id))
            return out

        return [
            {**_public(post), "comments": walk(post.id)}
            for post in sorted(self.objects.values(), key=lambda s: s.number)
            if post.kind == "post"
        ]


def _public(item: Stored) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "type": item.object.get("type"),
        "name": item.object.get("name"),
        "attributedTo": item.object.get("attributedTo"),
        "inReplyTo": item.parent if item.kind == "comment" else None,
        "post": item.post,
        "depth": item.depth,
        "content": item.object.get("content"),
        "source": (item.object.get("source") or {}).get("content"),
        "published": item.object.get("published"),
        "updated": item.object.get("updated"),
        "deleted": item.deleted,
        "announced": item.announced,
        "number": item.number,
    }


INSTANCE: web.AppKey[Instance] = web.AppKey("instance", Instance)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


def make_sandbox_app(instance: Instance) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[INSTANCE] = instance

    async def session_context(app: web.Application) -> Any:
        app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/.well-known/webfinger", webfinger)
    app.router.add_get("/.well-known/nodeinfo", nodeinfo_index)
    app.router.add_get("/nodeinfo/2.1", nodeinfo)
    app.router.add_get("/c/{name}", group)
    app.router.add_post("/inbox", inbox)
    app.router.add_post("/c/{name}/inbox", inbox)
    app.router.add_get("/", index_page)
    app.router.add_get("/post/{number}", post_page)
    app.router.add_get("/api/threads", threads_json)
    app.router.add_get("/api/v3/federated_instances", federated_instances)
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
        },
        content_type="application/json",
    )


async def federated_instances(request: web.Request) -> web.Response:
    blocked = sorted(request.app[INSTANCE].blocked_domains)
    listing = {"linked": [], "allowed": [], "blocked": [{"domain": d} for d in blocked]}
    return _json({"federated_instances": listing}, content_type="application/json")


async def group(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    if request.match_info["name"] != instance.community:
        return _json({"error": "not_found"}, 404, "application/json")
    return _json(instance.group())


def _refuse(instance: Instance, error: str, message: str, status: int = 400) -> web.Response:
    instance.refused.append({"error": error, "message": message})
    log.info("sandbox refused: %s: %s", error, message)
    return _json({"error": error, "message": message}, status, "application/json")


async def inbox(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    body = await request.read()
    if request.content_type != ACTIVITY_JSON:
        return _refuse(instance, "parse_error", f"Content-Type {request.content_type!r}")
    try:
        activity = json.loads(body)
        activity_id, kind, actor = rules.check_envelope(activity, instance.host.lower())
        actor_doc = await _verify(request, body, actor)
        if rules.domain(actor) in instance.blocked_domains:
            raise Refused("domain_blocked", f"{rules.domain(actor)} is blocked")
        if actor in instance.banned:
            raise Refused("site_ban", f"{actor} is banned")
        if activity_id in instance.seen_activities:
            raise Refused("duplicate", f"duplicate key value: received_activity {activity_id}")
        instance.seen_activities.add(activity_id)
        await _apply(request, instance, activity, kind, actor, actor_doc)
    except Refused as exc:
        return _refuse(instance, exc.error, exc.message)
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
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    if request.headers.get("Digest") != digest:
        raise Refused("incorrect_signature", "the Digest does not match the body")
    try:
        date = parsedate_to_datetime(request.headers.get("Date", ""))
    except (TypeError, ValueError):
        raise Refused("incorrect_signature", "no valid Date header") from None
    if abs(datetime.now(UTC) - date) > SIGNATURE_WINDOW:
        raise Refused("incorrect_signature", "the Date is more than an hour off")
    signature = request.headers.get("Signature", "")
    key_id = signature.split('keyId="', 1)[-1].split('"', 1)[0]
    instance = request.app[INSTANCE]
    # Like Lemmy: actors are cached, and fetched again once when a check fails.
    for fresh in (False, True):
        document = instance.actors.get(actor) if not fresh else None
        if document is None:
            document = await _fetch(request, key_id.split("#")[0])
            instance.actors[actor] = document
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


async def _apply(
    request: web.Request,
    instance: Instance,
    activity: dict[str, Any],
    kind: str,
    actor: str,
    actor_doc: dict[str, Any],
) -> None:
    if kind in ("Create", "Update"):
        obj = rules.check_object(activity, actor, instance.group_id)
        await _store(request, instance, obj, announce=True)
        await _announce(request, instance, activity)
    elif kind == "Delete":
        object_id = rules.check_delete(activity, actor)
        if object_id in instance.objects:
            instance.objects[object_id].deleted = True
        await _announce(request, instance, activity)
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
    elif kind == "Undo":
        inner = activity.get("object")
        if isinstance(inner, dict) and inner.get("type") == "Follow":
            instance.followers.pop(actor, None)
    # Anything else is accepted and ignored, as Lemmy does.


#: Lemmy fetches at most this many objects for one activity (rules §5.2).
FETCH_BUDGET = 100


async def _store(
    request: web.Request,
    instance: Instance,
    obj: dict[str, Any],
    *,
    announce: bool,
    budget: int = FETCH_BUDGET,
) -> Stored:
    object_id = obj["id"]
    existing = instance.objects.get(object_id)
    if obj.get("inReplyTo") is None:
        rules.check_post(obj, takes_note_posts=instance.takes_note_posts)
        stored = Stored(object_id, "post", obj, post=object_id)
    else:
        parent_id = rules.check_comment(obj)
        parent = instance.objects.get(parent_id)
        if parent is None:
            # An unknown parent is fetched from its server (and stored, not
            # announced), its own parents too, within Lemmy's fetch budget.
            if budget <= 0:
                raise Refused("fetch_limit", f"more than {FETCH_BUDGET} fetches for one activity")
            fetched = await _fetch(request, parent_id)
            rules.check_object(
                {"to": fetched.get("to"), "cc": fetched.get("cc", []), "object": fetched},
                str(fetched.get("attributedTo")),
                instance.group_id,
            )
            parent = await _store(request, instance, fetched, announce=False, budget=budget - 1)
        if parent.deleted:
            raise Refused("deleted", "the parent was deleted")
        depth = parent.depth + 1 if parent.kind == "comment" else 1
        if depth > rules.MAX_DEPTH:
            raise Refused("max_comment_depth_reached", f"depth {depth}")
        stored = Stored(object_id, "comment", obj, parent=parent_id, post=parent.post, depth=depth)
    if existing is not None:
        # Lemmy upserts on the object id, whatever the order (rules §6.2).
        existing.object = obj
        existing.announced = existing.announced or announce
        return existing
    stored.announced = announce
    stored.number = next(instance._numbers)
    instance.objects[object_id] = stored
    return stored


async def _announce(request: web.Request, instance: Instance, activity: dict[str, Any]) -> None:
    if not instance.followers:
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
    for inbox_url in sorted(set(instance.followers.values())):
        instance.spawn(_send(request.app, instance, inbox_url, announce))


async def _send(
    app: web.Application, instance: Instance, url: str, activity: dict[str, Any]
) -> None:
    """POST signed by the group's key, with httpsig (not fedimirror's signer)."""
    body = json.dumps(activity).encode()
    parts = urlsplit(url)
    headers = {
        "Host": parts.netloc,
        "Date": format_datetime(datetime.now(UTC), usegmt=True),
        "Digest": "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode(),
        "Content-Type": ACTIVITY_JSON,
    }
    pem = instance.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = HeaderSigner(
        key_id=f"{instance.group_id}#main-key",
        secret=pem,
        algorithm="rsa-sha256",
        headers=["(request-target)", "host", "date", "digest", "content-type"],
        sign_header="Signature",
    )
    signed = signer.sign(headers, method="POST", path=parts.path or "/")
    try:
        async with app[SESSION].post(url, data=body, headers=signed) as response:
            await response.read()
            if activity["type"] == "Announce":
                instance.announces += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("sandbox: sending to %s failed: %s", url, exc)


# -- pages -------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:auto;padding:1em}}
.c{{border-left:2px solid #ccc;padding-left:.8em;margin:.6em 0}}small{{color:#666}}</style>
</head><body>{body}</body></html>"""


def _page(title: str, body: str) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body), content_type="text/html"
    )


async def index_page(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    rows = []
    for post in instance.threads():
        rows.append(
            f'<li><a href="/post/{post["number"]}">{html.escape(post["name"] or "(untitled)")}</a>'
            f" <small>{len(post['comments'])} comments · {html.escape(post['attributedTo'] or '')}"
            f"{' · deleted' if post['deleted'] else ''}</small></li>"
        )
    body = (
        f"<h1>!{html.escape(instance.community)}@{html.escape(instance.host)}</h1>"
        f"<p>{html.escape(instance.software)} {html.escape(instance.version)} sandbox · "
        f"{len(instance.refused)} refused activities</p><ul>{''.join(rows)}</ul>"
    )
    return _page(instance.title, body)


async def post_page(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    number = int(request.match_info["number"]) if request.match_info["number"].isdigit() else -1
    post = next((p for p in instance.threads() if p["number"] == number), None)
    if post is None:
        raise web.HTTPNotFound()
    parts = [
        f"<h1>{html.escape(post['name'] or '(untitled)')}</h1>",
        f"<small>{html.escape(post['attributedTo'] or '')}</small>",
        nh3.clean(post["content"] or ""),
    ]
    for comment in post["comments"]:
        indent = min(comment["depth"], 12) * 1.2
        parts.append(
            f'<div class="c" style="margin-left:{indent}em"><small>'
            f"{html.escape(comment['attributedTo'] or '')}</small>"
            f"{nh3.clean(comment['content'] or '')}</div>"
        )
    return _page(post["name"] or "post", "".join(parts) + '<p><a href="/">back</a></p>')


async def threads_json(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    return _json(
        {
            "threads": instance.threads(),
            "refused": instance.refused,
            "announces": instance.announces,
            "followers": sorted(instance.followers),
        },
        content_type="application/json",
    )

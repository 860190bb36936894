"""Inbox: verify what arrives, record it once, act on the few activities we handle.

The order of checks puts the cheap ones first and the one that costs us a
fetch last, so that junk is refused before we make any request for it:

1. the body: JSON (nested at most MAX_DEPTH), an activity whose id, type and
   actor fit our columns (400);
2. the signature, without a key (mirror.signatures.check_request): its
   size and form, the signed headers present, the signed Host ours, the Date
   or ``(created)`` within the window, the Digest the body's (401);
3. the keyId: an http(s) URL, not ours (401);
4. the key, from our cache or fetched (bounded per host, mirror.federation.remote;
   503 with Retry-After when that host stalls or fails for now, 401 when it
   has no such key), then the signature with it; with a cached key that
   fails, the key is fetched again once per actor per interval, in case it
   was rotated (401);
5. the signer must be the activity's actor (401).

A self-Delete whose keyId answers 404/410 (the account is gone, and its key
with it) is believed only when it verifies with the key we cached for that
actor, or when the actor's own id answers 404/410 on a fresh fetch of ours;
steps 1-3 apply to it as to anything else.

Then a post or comment written into one of our hosted communities (a
Create or Update addressed to its Group) is refused with 403: they are
read-only archives. Only then is the activity id recorded (duplicates are
acknowledged and ignored) and handled. Anything we do not handle is accepted and logged:
answering 5xx would make Lemmy retry it forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import LocalActor, ReceivedActivity
from mirror.db.session import write_transaction
from mirror.federation import follows
from mirror.federation.actors import GROUP
from mirror.federation.remote import RETRY_AFTER_S, ActorUnavailable, KeyFetchBusy
from mirror.federation.service import Federation
from mirror.signatures import (
    InvalidKey,
    ParsedSignature,
    SignatureError,
    check_request,
    load_public_key,
    our_hosts,
    parse_signature,
    verify_signature,
)
from mirror.vocab.parse import (
    Inbound,
    Malformed,
    RemoteActorDoc,
    excerpt,
    is_url,
    parse_activity,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The inbox's answer: an HTTP status and, for refusals, the reason (logged)."""

    status: int
    reason: str
    #: For a refused signature, the short reason code (a metrics label).
    code: str = ""
    #: For a 503: the seconds the sender should wait before it retries.
    retry_after_s: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202


def refuse(status: int, reason: str, code: str = "") -> Verdict:
    return Verdict(status, reason, code)


async def receive(
    federation: Federation,
    *,
    username: str | None,
    method: str,
    target: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Verdict:
    """Handle one POST to an inbox (``username`` None for the shared inbox)."""
    try:
        data = json.loads(body)
    except RecursionError:
        return refuse(400, "malformed activity: the body nests too deeply")
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        return refuse(400, "not JSON")
    try:
        activity = parse_activity(data)
    except Malformed as exc:
        return refuse(400, f"malformed activity: {exc}")
    try:
        signer = await verify_sender(
            federation, activity, method=method, target=target, url=url, headers=headers, body=body
        )
    except SignatureError as exc:
        return refuse(401, f"signature: {exc.reason}: {exc}", exc.reason)
    except ActorUnavailable as exc:
        if exc.transient:
            # Lemmy drops what a 4xx refused; a 503 is retried, and by then
            # the key is in our cache or the host answers again.
            retry = exc.retry_after_s if isinstance(exc, KeyFetchBusy) else RETRY_AFTER_S
            return Verdict(503, f"cannot fetch the signer's key now: {exc}", "", retry)
        return refuse(401, f"cannot fetch the signer's key: {exc}", "key_unavailable")

    refusal = await _refusal(federation, activity)
    if refusal is not None:
        return refusal
    if not await asyncio.to_thread(_record, federation, activity):
        return Verdict(202, f"duplicate {activity.type} {activity.id}")
    await dispatch(federation, activity, signer, username)
    return Verdict(202, f"{activity.type} {activity.id} from {activity.actor}")


async def verify_sender(
    federation: Federation,
    activity: Inbound | None,
    *,
    method: str,
    target: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
) -> RemoteActorDoc:
    """The verified signer of a request, which must be the activity's actor.

    Raises SignatureError (refused), or ActorUnavailable (no key: refused,
    or ``transient`` when the sender should try again).
    """
    parsed = parse_signature(headers)
    hosts = our_hosts(federation.urls.base)
    # Everything that needs no key, before any fetch.
    check_request(
        method,
        target,
        headers,
        body,
        now=federation.clock.now(),
        window_s=federation.settings.federation.signature_window_s,
        parsed=parsed,
        url=url,
        hosts=hosts,
    )
    if not is_url(parsed.key_id):
        raise SignatureError(
            "malformed_signature", f"the keyId {excerpt(parsed.key_id)} is not an http(s) URL"
        )
    # Our own keys are not fetched over the network (nor our own 404s taken
    # for someone's deletion), as Mastodon refuses a local keyId
    # (app/controllers/concerns/signature_verification.rb, local_uri?).
    if _ours(parsed.key_id, hosts):
        raise SignatureError("local_key", f"the keyId {parsed.key_id} is on our own host")
    if activity is not None and _ours(activity.actor, hosts):
        raise SignatureError("wrong_owner", f"the actor {activity.actor} is one of ours")
    try:
        lookup = await federation.remote.lookup_key(parsed.key_id)
    except ActorUnavailable as exc:
        if exc.gone and activity is not None and _deletes_itself(activity):
            return await _verify_gone_actor(
                federation, activity, parsed, method, target, url, headers
            )
        raise
    signer = lookup.doc
    try:
        _check(signer, parsed, method, target, url, headers)
    except SignatureError as exc:
        # The key may have been rotated since we cached it: refetch, but once
        # per actor per interval (200 bad signatures are not 200 fetches).
        if (
            exc.reason != "bad_signature"
            or not lookup.cached
            or not federation.remote.may_refetch(signer.id)
        ):
            raise
        try:
            signer = await federation.remote.by_key_id(parsed.key_id, refresh=True)
        except ActorUnavailable as gone:
            if gone.gone and activity is not None and _deletes_itself(activity):
                return await _verify_gone_actor(
                    federation, activity, parsed, method, target, url, headers
                )
            raise
        _check(signer, parsed, method, target, url, headers)
    if activity is not None and signer.id != activity.actor:
        raise SignatureError(
            "wrong_owner", f"signed by {signer.id}, but the activity's actor is {activity.actor}"
        )
    return signer


def _ours(url: str, hosts: frozenset[str]) -> bool:
    return urlsplit(url).netloc.lower() in hosts


def _check(
    signer: RemoteActorDoc,
    parsed: ParsedSignature,
    method: str,
    target: str,
    url: str,
    headers: Mapping[str, str],
) -> None:
    if not signer.public_key_pem:
        raise SignatureError("bad_signature", f"{signer.id} publishes no key")
    try:
        key = load_public_key(signer.public_key_pem)
    except InvalidKey as exc:
        raise SignatureError("bad_signature", f"{signer.id}: {exc}") from None
    verify_signature(method, target, headers, parsed, key, url=url)


def _deletes_itself(activity: Inbound | None) -> bool:
    return (
        activity is not None and activity.type == "Delete" and activity.object_id == activity.actor
    )


async def _verify_gone_actor(
    federation: Federation,
    activity: Inbound,
    parsed: ParsedSignature,
    method: str,
    target: str,
    url: str,
    headers: Mapping[str, str],
) -> RemoteActorDoc:
    """A self-Delete whose keyId answers 404/410: the account, and its key, may be gone.

    Believed when it verifies with the key we cached for *that actor* (not
    for the keyId, which anyone can point at any 404), or when the actor's
    own id answers 404/410 on a fresh fetch of ours, on the actor's own host
    (no redirect followed): then it is gone whoever says so. The request's
    Date, Digest and Host were checked before this (check_request).
    """
    cached = await federation.remote.cached_actor(activity.actor)
    failure: SignatureError | None = None
    if cached is not None and cached.public_key_pem:
        try:
            _check(cached, parsed, method, target, url, headers)
            return cached
        except SignatureError as exc:
            failure = exc
    if await federation.remote.answers_gone(activity.actor):
        log.info("Delete of %s believed: the actor's id answers 404/410", activity.actor)
        return RemoteActorDoc(activity.actor, None, None, None, None, None, activity.actor, None)
    if failure is not None:
        raise SignatureError(
            failure.reason, f"{failure} (the key cached for {activity.actor}), and it is not gone"
        )
    raise SignatureError(
        "unverified_delete",
        f"the keyId {parsed.key_id} is gone, no key of {activity.actor} is cached, "
        "and the actor's id does not answer 404/410",
    )


def _record(federation: Federation, activity: Inbound) -> bool:
    """Record the activity id; False when it was received before."""
    table = table_of(ReceivedActivity)
    with write_transaction(federation.engine) as conn:
        before = conn.execute(table.select().where(table.c.activity_id == activity.id)).first()
        if before is not None:
            return False
        bulk_insert(
            conn,
            table,
            [
                {
                    "activity_id": activity.id,
                    "actor": activity.actor,
                    "type": activity.type[:64],
                    "received_at": federation.clock.now(),
                }
            ],
            ignore_conflicts=True,
        )
    return True


async def dispatch(
    federation: Federation, activity: Inbound, signer: RemoteActorDoc, username: str | None
) -> None:
    """Act on the activities we handle; log and ignore the rest."""
    kind = activity.type
    if kind == "Follow":
        local = await local_target(federation, activity.object_id or "")
        if local is None:
            log.info(
                "Follow %s of %s: not one of our actors; ignored", activity.id, activity.object_id
            )
            return
        await follows.handle_follow(federation, local, activity, signer)
        return
    if (
        kind == "Undo"
        and isinstance(activity.object, dict)
        and activity.object.get("type") == "Follow"
    ):
        inner = activity.object
        if inner.get("actor") not in (None, activity.actor):
            log.info("Undo %s: the Follow belongs to someone else; ignored", activity.id)
            return
        local = await local_target(federation, _object_id(inner.get("object")))
        if local is not None:
            await follows.handle_undo_follow(federation, local, activity)
        return
    if _deletes_itself(activity):
        await follows.handle_actor_deleted(federation, activity.actor)
        return
    log.info("%s %s from %s accepted and ignored", kind, activity.id, activity.actor)


async def local_target(federation: Federation, url: str) -> LocalActor | None:
    """The actor of ours an id names: /u/NAME the bot or a puppet, /c/NAME a hosted Group.

    One namespace, two paths (as on Lemmy): a Group is not followed at /u/,
    nor a user at /c/, and an unhosted Group (410) is followed by no one.
    """
    urls = federation.urls
    name = urls.username_of(url)
    if name is not None:
        local = await federation.local_actor(name)
        return local if local is not None and local.kind != GROUP else None
    name = urls.community_of(url)
    if name is None:
        return None
    local = await federation.local_actor(name)
    if local is None or local.kind != GROUP:
        return None
    hosted = await federation.hosted_community(name)
    return local if hosted is not None and hosted.active else None


#: What writes a post or comment (a reply to one is a Create too).
_WRITES = frozenset({"Create", "Update"})
_ADDRESS_KEYS = ("to", "cc", "audience", "target")


async def _refusal(federation: Federation, activity: Inbound) -> Verdict | None:
    """403 for a post or comment into one of our Groups: hosted communities are read-only.

    Refused (4xx, never 5xx: Lemmy would retry that) before it is recorded,
    so that the same activity sent again is refused again, not acknowledged.
    """
    if activity.type not in _WRITES:
        return None
    obj = activity.object if isinstance(activity.object, dict) else {}
    if obj.get("type") in ("Group", "Person", "Service", "Application"):
        return None  # an actor's profile update, not a post
    addressed = set()
    for document in (activity.raw, obj):
        for key in _ADDRESS_KEYS:
            value = document.get(key)
            values = value if isinstance(value, list) else [value]
            addressed.update(v for v in values if isinstance(v, str))
            addressed.update(
                v["id"] for v in values if isinstance(v, dict) and isinstance(v.get("id"), str)
            )
    urls = federation.urls
    for url in sorted(addressed):
        name = urls.community_of(url.removesuffix("/followers"))
        if name is None:
            continue
        local = await federation.local_actor(name)
        if local is not None and local.kind == GROUP:
            return refuse(
                403,
                f"{activity.type} {activity.id} from {activity.actor} into the hosted community "
                f"{name}: it is a read-only archive",
            )
    return None


def _object_id(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return ""

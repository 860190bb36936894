"""Inbox: verify what arrives, record it once, act on the few activities we handle.

The order of checks follows what a forger cannot pass: the body must be an
activity, its HTTP signature must verify with the key of the activity's own
actor (fetched with a signed GET, refetched once if the check fails, in case
the key was rotated), and the Date and Digest must be fresh and match.
Only then is the activity id recorded (duplicates are acknowledged and
ignored) and handled. Anything we do not handle is accepted and logged:
answering 5xx would make Lemmy retry it forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import ReceivedActivity
from mirror.db.session import write_transaction
from mirror.federation import follows
from mirror.federation.remote import ActorUnavailable
from mirror.federation.service import Federation
from mirror.signatures import (
    InvalidKey,
    ParsedSignature,
    SignatureError,
    load_public_key,
    parse_signature,
    verify_request,
)
from mirror.vocab.parse import Inbound, Malformed, RemoteActorDoc, parse_activity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The inbox's answer: an HTTP status and, for refusals, the reason (logged)."""

    status: int
    reason: str
    #: For a refused signature, the short reason code (a metrics label).
    code: str = ""

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
        activity = parse_activity(json.loads(body))
    except ValueError as exc:  # JSONDecodeError and Malformed are ValueErrors
        return refuse(
            400, f"malformed activity: {exc}" if isinstance(exc, Malformed) else "not JSON"
        )
    try:
        signer = await verify_sender(
            federation, activity, method=method, target=target, url=url, headers=headers, body=body
        )
    except SignatureError as exc:
        return refuse(401, f"signature: {exc.reason}: {exc}", exc.reason)
    except ActorUnavailable as exc:
        return refuse(401, f"cannot fetch the signer's key: {exc}", "key_unavailable")

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
    """The verified signer of a request, which must be the activity's actor."""
    parsed = parse_signature(headers)
    try:
        signer = await federation.remote.by_key_id(parsed.key_id)
    except ActorUnavailable as exc:
        if exc.gone and activity is not None and _deletes_itself(activity):
            return await _verify_gone_actor(
                federation, activity, parsed, method, target, url, headers, body
            )
        raise
    try:
        _check(federation, signer, parsed, method, target, url, headers, body)
    except SignatureError as exc:
        if exc.reason != "bad_signature":
            raise
        # The key may have been rotated since we cached it: refetch once.
        signer = await federation.remote.by_key_id(parsed.key_id, refresh=True)
        _check(federation, signer, parsed, method, target, url, headers, body)
    if activity is not None and signer.id != activity.actor:
        raise SignatureError(
            "wrong_owner", f"signed by {signer.id}, but the activity's actor is {activity.actor}"
        )
    return signer


def _check(
    federation: Federation,
    signer: RemoteActorDoc,
    parsed: ParsedSignature,
    method: str,
    target: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
) -> None:
    if not signer.public_key_pem:
        raise SignatureError("bad_signature", f"{signer.id} publishes no key")
    try:
        key = load_public_key(signer.public_key_pem)
    except InvalidKey as exc:
        raise SignatureError("bad_signature", f"{signer.id}: {exc}") from None
    verify_request(
        method,
        target,
        headers,
        body,
        key,
        now=federation.clock.now(),
        window_s=federation.settings.federation.signature_window_s,
        parsed=parsed,
        url=url,
    )


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
    body: bytes | None,
) -> RemoteActorDoc:
    """A deleted actor's key cannot be fetched any more (its URL answers 410).

    Accept its self-Delete when it verifies with the key we cached earlier,
    or, with no cached key, because its URL really answers 404/410.
    """
    cached = await federation.remote.cached_key(parsed.key_id)
    if cached is not None and cached.public_key_pem:
        _check(federation, cached, parsed, method, target, url, headers, body)
        return cached
    log.info("Delete of %s accepted: its URL answers 404/410 and no key was cached", activity.actor)
    return RemoteActorDoc(activity.actor, None, None, None, None, None, activity.actor, None)


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
        target = federation.urls.username_of(activity.object_id or "")
        local = await federation.local_actor(target) if target else None
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
        target = federation.urls.username_of(_object_id(inner.get("object")))
        local = await federation.local_actor(target) if target else None
        if local is not None:
            await follows.handle_undo_follow(federation, local, activity)
        return
    if _deletes_itself(activity):
        await follows.handle_actor_deleted(federation, activity.actor)
        return
    log.info("%s %s from %s accepted and ignored", kind, activity.id, activity.actor)


def _object_id(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return ""

"""The sandbox subscribing to a remote community as Lemmy does: WebFinger
`acct:NAME@host`, fetch the Group, a Follow signed by one of its users, and
the Group's Accept, verified as every inbox POST is (httpsig).

Lemmy: crates/apub/src/activities/following/follow.rs (the Follow from the
person to the community) and accept.rs (the Accept must come from the
followed community and name that Follow).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mirror.sandbox.rules import Refused
from mirror.sandbox.signing import signed_post_headers
from mirror.sandbox.state import CONTEXT, Instance

ACTIVITY_JSON = "application/activity+json"
#: The sandbox's user that follows remote communities.
SUBSCRIBER = "subscriber"

_numbers = itertools.count(1)


@dataclass
class Subscription:
    handle: str
    group: dict[str, Any]
    follow: dict[str, Any]
    accepted: bool = False
    #: The outbox was read after the Accept, and how many of its items were taken.
    outbox_read: bool = False
    outbox_items: int = 0


def subscriber_id(instance: Instance) -> str:
    return f"{instance.base}/u/{SUBSCRIBER}"


def subscriber_key(instance: Instance) -> rsa.RSAPrivateKey:
    """The user's own key, made on first use (an instance that never subscribes pays nothing)."""
    if instance.subscriber_key is None:
        instance.subscriber_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return instance.subscriber_key


def person(instance: Instance) -> dict[str, Any]:
    actor = subscriber_id(instance)
    pem = (
        subscriber_key(instance)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return {
        "@context": CONTEXT,
        "id": actor,
        "type": "Person",
        "preferredUsername": SUBSCRIBER,
        "inbox": f"{actor}/inbox",
        "outbox": f"{actor}/outbox",
        "endpoints": {"sharedInbox": f"{instance.base}/inbox"},
        "publicKey": {"id": f"{actor}#main-key", "owner": actor, "publicKeyPem": pem},
    }


async def _get_json(session: aiohttp.ClientSession, url: str, accept: str) -> dict[str, Any]:
    try:
        async with session.get(url, headers={"Accept": accept}) as response:
            if response.status != 200:
                raise Refused("couldnt_fetch", f"GET {url}: HTTP {response.status}")
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise Refused("couldnt_fetch", f"GET {url}: {exc}") from None
    if not isinstance(data, dict):
        raise Refused("couldnt_fetch", f"GET {url}: not a JSON object")
    return data


async def discover(session: aiohttp.ClientSession, handle: str, scheme: str) -> dict[str, Any]:
    """The Group that `name@host` names, through WebFinger as Lemmy looks it up."""
    name, _, host = handle.removeprefix("!").partition("@")
    if not name or not host:
        raise Refused("invalid_handle", f"{handle!r}: a community is name@host")
    finger = await _get_json(
        session,
        f"{scheme}://{host}/.well-known/webfinger?resource=acct:{name}@{host}",
        "application/jrd+json",
    )
    hrefs = [
        link.get("href")
        for link in finger.get("links") or []
        if isinstance(link, dict)
        and link.get("rel") == "self"
        and link.get("type")
        in (ACTIVITY_JSON, 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"')
    ]
    if not hrefs or not isinstance(hrefs[0], str):
        raise Refused("couldnt_fetch", f"WebFinger for {handle} names no ActivityPub actor")
    group = await _get_json(session, hrefs[0], ACTIVITY_JSON)
    if group.get("type") != "Group" or group.get("id") != hrefs[0]:
        raise Refused("couldnt_fetch", f"{hrefs[0]} is not a Group (type {group.get('type')!r})")
    return group


async def send_as_subscriber(
    session: aiohttp.ClientSession, instance: Instance, url: str, activity: dict[str, Any]
) -> int:
    """POST signed by the subscriber's key with httpsig (not fedimirror's signer); the status."""
    body = json.dumps(activity).encode()
    signed = signed_post_headers(
        url,
        body,
        key=subscriber_key(instance),
        key_id=f"{subscriber_id(instance)}#main-key",
        now=instance.clock.now(),
        host_without_port=bool(instance.signs_host_without_port),
    )
    try:
        async with session.post(url, data=body, headers=signed) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Refused("couldnt_send", f"POST {url}: {exc}") from None


def _inbox_of(group: dict[str, Any]) -> str:
    shared = (group.get("endpoints") or {}).get("sharedInbox")
    inbox = shared or group.get("inbox")
    if not isinstance(inbox, str):
        raise Refused("couldnt_fetch", f"{group.get('id')}: the Group has no inbox")
    return inbox


async def subscribe(
    session: aiohttp.ClientSession, instance: Instance, handle: str, scheme: str
) -> Subscription:
    """Follow the community; its Accept arrives later at the inbox (`accepted`)."""
    group = await discover(session, handle, scheme)
    follow = {
        "@context": CONTEXT,
        "id": f"{instance.base}/activities/follow/{next(_numbers)}",
        "type": "Follow",
        "actor": subscriber_id(instance),
        "object": group["id"],
        "to": [group["id"]],
    }
    subscription = Subscription(handle, group, follow)
    instance.subscriptions[group["id"]] = subscription
    status = await send_as_subscriber(session, instance, group["inbox"], follow)
    if status >= 300:
        del instance.subscriptions[group["id"]]
        raise Refused("follow_refused", f"{group['inbox']} answered the Follow with {status}")
    return subscription


async def unsubscribe(
    session: aiohttp.ClientSession, instance: Instance, handle: str
) -> Subscription:
    found = [s for s in instance.subscriptions.values() if s.handle == handle]
    if not found:
        raise Refused("not_subscribed", f"not subscribed to {handle}")
    subscription = found[0]
    undo = {
        "@context": CONTEXT,
        "id": f"{instance.base}/activities/undo/{next(_numbers)}",
        "type": "Undo",
        "actor": subscriber_id(instance),
        "object": subscription.follow,
        "to": [subscription.group["id"]],
    }
    status = await send_as_subscriber(session, instance, subscription.group["inbox"], undo)
    if status >= 300:
        raise Refused("undo_refused", f"the Undo was answered with {status}")
    del instance.subscriptions[subscription.group["id"]]
    return subscription


def accepted(instance: Instance, activity: dict[str, Any], actor: str) -> None:
    """An Accept{Follow}: from the followed Group, naming our Follow (accept.rs)."""
    inner = activity.get("object")
    follow_id = inner.get("id") if isinstance(inner, dict) else inner
    subscription = instance.subscriptions.get(actor)
    if subscription is None:
        raise Refused("not_subscribed", f"an Accept from {actor}, which was not followed")
    if follow_id != subscription.follow["id"]:
        raise Refused("invalid_accept", f"the Accept names {follow_id!r}, not our Follow")
    subscription.accepted = True


def listing(instance: Instance) -> list[dict[str, Any]]:
    return [
        {
            "community": s.handle,
            "group": group_id,
            "accepted": s.accepted,
            "outbox_read": s.outbox_read,
            "threads": instance.threads(group_id),
        }
        for group_id, s in sorted(instance.subscriptions.items())
    ]

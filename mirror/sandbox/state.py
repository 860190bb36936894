"""The sandbox's state: one community, what it stored and refused, and the profile it follows."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mirror.clock import Clock, SystemClock
from mirror.sandbox import profiles
from mirror.sandbox.profiles import Profile

CONTEXT = ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"]
#: The community's creation time, as its Group document and the APIs say.
COMMUNITY_PUBLISHED = "2026-01-01T00:00:00Z"

#: The Instance fields a profile fills in when they are left at None.
BEHAVIOURS = (
    "refusal_status",
    "fetch_unknown_parents",
    "new_account_limit",
    "long_language_fails",
    "check_date",
    "keeps_published",
    "duplicate_window",
    "announces_to_author_instance",
    "signs_host_without_port",
)


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
    #: Its id in the post or comment table, as the APIs show it (each kind counts from 1).
    local_id: int = 0
    #: When the sandbox stored it (its clock): PieFed's posted_at.
    received_at: datetime | None = None
    #: When an Update last changed it.
    edited_at: datetime | None = None
    #: Its author is a Service actor (Lemmy's bot_account, PieFed's from_bot).
    bot: bool = False
    #: The remote Group it came through (an Announce); "" for the sandbox's own community.
    community: str = ""


@dataclass
class Instance:
    """The sandbox's state: kept in memory, gone when it stops.

    `software` picks the profile (profiles.py); every behaviour field left at
    None takes that profile's value when the instance is made, and each can be
    set to switch one behaviour on any profile.
    """

    base: str
    community: str = "sandbox"
    title: str = "Sandbox community"
    software: str = "lemmy"
    #: What NodeInfo says; "" is the profile's (lemmy 0.19.9, piefed 1.6.18).
    version: str = ""
    #: Time for the Date check, the new-account age, received times and what it signs.
    clock: Clock = field(default_factory=SystemClock)
    posting_restricted_to_mods: bool = False
    # -- behaviours (None: the profile's; see profiles.Profile for each) --
    refusal_status: int | None = None
    fetch_unknown_parents: bool | None = None
    new_account_limit: bool | None = None
    new_account_posts: int = profiles.NEW_ACCOUNT_POSTS
    new_account_age: timedelta = profiles.NEW_ACCOUNT_AGE
    #: PieFed's language handling instead of Lemmy's check: an identifier longer
    #: than its varchar(5) fails with 500 where PieFed stores the object.
    long_language_fails: bool | None = None
    check_date: bool | None = None
    keeps_published: bool | None = None
    duplicate_window: timedelta | None = None
    announces_to_author_instance: bool | None = None
    signs_host_without_port: bool | None = None
    #: Test hooks: the inbox answers 500 for an activity about one of these
    #: object ids, or one the predicate holds for (a server error for that
    #: object only), before recording its id, so every attempt fails alike.
    fail_objects: set[str] = field(default_factory=set)
    fail_when: Callable[[dict[str, Any]], bool] | None = None
    #: The lookup (resolve_object) answers; off, it answers as a private Lemmy
    #: or a PieFed whose alpha API is disabled do.
    lookup_enabled: bool = True
    objects: dict[str, Stored] = field(default_factory=dict)
    seen_activities: set[str] = field(default_factory=set)
    refused: list[dict[str, Any]] = field(default_factory=list)
    #: What it answered 500 for: {"object", "message"}.
    failed: list[dict[str, Any]] = field(default_factory=list)
    followers: dict[str, str] = field(default_factory=dict)
    banned: set[str] = field(default_factory=set)
    #: Instances (domains) this one defederated from, as Lemmy's admin blocklist.
    blocked_domains: set[str] = field(default_factory=set)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: When each actor was first fetched (PieFed's `created` without `published`).
    actor_seen: dict[str, datetime] = field(default_factory=dict)
    #: Posts held per author, not deleted ones (PieFed's user.post_count).
    post_counts: dict[str, int] = field(default_factory=dict)
    announces: int = 0
    #: Remote communities its user follows, by Group id (subscriptions.py).
    subscriptions: dict[str, Any] = field(default_factory=dict)
    subscriber_key: rsa.RSAPrivateKey | None = None
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    _numbers: Any = field(default_factory=lambda: itertools.count(1))
    _ids: dict[str, Any] = field(default_factory=dict)
    _seen_at: dict[str, datetime] = field(default_factory=dict)
    _people: dict[str, int] = field(default_factory=dict)
    _domains: dict[str, int] = field(default_factory=dict)
    #: PieFed's language rows; "und" is there from its setup.
    _languages: dict[str, int] = field(default_factory=lambda: {"und": 1})
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        chosen = profiles.profile(self.software)
        self.version = self.version or chosen.version
        for name in BEHAVIOURS:
            if getattr(self, name) is None:
                setattr(self, name, getattr(chosen, name))

    @property
    def profile(self) -> Profile:
        return profiles.profile(self.software)

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

    def next_id(self, kind: str) -> int:
        """The next id in the post or comment table."""
        return int(next(self._ids.setdefault(kind, itertools.count(1))))

    def person_id(self, actor: str) -> int:
        return self._people.setdefault(actor, len(self._people) + 2)  # 1: the local admin

    def instance_id(self, url: str) -> int:
        """1 is this instance; others are numbered as they are met, as both servers do."""
        host = urlsplit(url).netloc.lower()
        if host == self.host.lower():
            return 1
        return self._domains.setdefault(host, len(self._domains) + 2)

    def language_id(self, identifier: str | None) -> int:
        """Lemmy's id from its fixed list; PieFed numbers languages as it creates them."""
        if self.software == "lemmy" or not identifier:
            return profiles.lemmy_language_id(identifier)
        return self._languages.setdefault(identifier, len(self._languages) + 1)

    def seen(self, activity_id: str) -> bool:
        """Whether the id was seen within the duplicate window; if not, it is recorded now."""
        now = self.clock.now()
        first = self._seen_at.get(activity_id)
        window = timedelta.max if self.duplicate_window is None else self.duplicate_window
        if first is not None and now - first < window:
            return True
        self._seen_at[activity_id] = now
        self.seen_activities.add(activity_id)
        return False

    def shown_date(self, item: Stored) -> str | None:
        """The date the server gives the item: `published` on Lemmy, the receipt on PieFed."""
        if self.keeps_published and item.object.get("published"):
            return str(item.object["published"])
        return item.received_at.isoformat() if item.received_at else None

    def public_key_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def group(self) -> dict[str, Any]:
        # Lemmy 1.0 names its shared inbox; Lemmy 0.19 and PieFed the community's own.
        shared = self.software == "lemmy" and not self.version.startswith("0.")
        inbox = f"{self.base}/inbox" if shared else f"{self.group_id}/inbox"
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
                "publicKeyPem": self.public_key_pem(),
            },
            "postingRestrictedToMods": self.posting_restricted_to_mods,
            "published": COMMUNITY_PUBLISHED,
        }

    def children(self) -> dict[str, list[Stored]]:
        """Comments by parent id, in the order they were stored."""
        out: dict[str, list[Stored]] = {}
        for item in sorted(self.objects.values(), key=lambda s: s.number):
            if item.kind == "comment" and item.parent:
                out.setdefault(item.parent, []).append(item)
        return out

    def threads(self, community: str = "") -> list[dict[str, Any]]:
        """Every stored post of a community (its own by default) with its comments (pre-order)."""
        children = self.children()

        def walk(parent: str) -> list[dict[str, Any]]:
            out = []
            for child in children.get(parent, []):
                out.append(self.public(child))
                out.extend(walk(child.id))
            return out

        return [
            {**self.public(post), "comments": walk(post.id)}
            for post in sorted(self.objects.values(), key=lambda s: s.number)
            if post.kind == "post" and post.community == community
        ]

    def public(self, item: Stored) -> dict[str, Any]:
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
            "received_at": item.received_at.isoformat() if item.received_at else None,
            "date": self.shown_date(item),
            "bot": item.bot,
            "deleted": item.deleted,
            "announced": item.announced,
            "number": item.number,
            "local_id": item.local_id,
        }


INSTANCE: web.AppKey[Instance] = web.AppKey("instance", Instance)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)

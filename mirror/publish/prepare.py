"""What a planned item becomes for one target: its object, actor and recipients.

Builds without writing, but for the puppet actors it needs (``create_actors``):
a dry run builds the same objects as a real run. mirror.publish.backfill
stores and queues them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.config import Settings
from mirror.delivery import enqueue
from mirror.federation.actors import PUPPET, create_actor, get_actor, puppet_username
from mirror.federation.follows import list_followers
from mirror.publish import render
from mirror.publish.attribution import attribution, derived_title, parse_time
from mirror.publish.plan import Item
from mirror.publish.target import Target
from mirror.signatures import MasterKey
from mirror.vocab.activities import recipe
from mirror.vocab.ids import Urls
from mirror.vocab.objects import build_comment, build_post

#: The target of comments whose post is unknown: the followers, no community.
FOLLOWERS_ONLY = "followers"
#: Lemmy 0.19 fetches at most 200 KB of an object (rules §5.2).
MAX_OBJECT_BYTES = 200_000


def object_id_for(item_id: str, target: str) -> str:
    """A post lives in one community: its object id is made from the item and the target."""
    return "o" + hashlib.sha256(f"{item_id}\n{target}".encode()).hexdigest()[:24]


@dataclass(slots=True)
class Prepared:
    """An item, built: what to store and queue for it."""

    item: Item
    object_id: str
    actor: str
    document: dict[str, Any]
    content_hash: str
    depends_on: str | None
    due_at: datetime
    inboxes: list[str]
    #: The parent's publication (a comment's post or parent comment).
    parent_id: str | None = None


class Builder:
    """Builds one backfill's objects, over the caller's connection."""

    def __init__(
        self,
        conn: sa.Connection,
        *,
        settings: Settings,
        urls: Urls,
        master_key: MasterKey,
        target: Target,
        now: datetime,
        attribution: str | None = None,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.urls = urls
        self.master_key = master_key
        self.target = target
        self.now = now
        self.bot = settings.instance.username
        self.attribution = attribution or settings.backfill.attribution
        self.post_type = target.post_type(settings.backfill.post_type)
        #: Our own Group, when the target is a community hosted here: it holds
        #: what it announces (stored by definition), and announces each
        #: activity to its followers' shared inboxes.
        self.group = target.hosted
        self._followers: dict[str, list[str]] = {}
        #: author handle -> puppet username, once known to exist.
        self._puppets: dict[str, str] = {}
        #: Object ids of items already published under another id (see Backfill._match).
        self._objects: dict[str, str] = {}

    def actor_for(self, item: Item, *, create: bool) -> str:
        handle = item.data.get("author")
        if self.attribution != "puppets" or not handle:
            return self.bot
        username = self._puppets.get(handle)
        if username is not None:
            return username
        username = puppet_username(handle)
        existing = get_actor(self.conn, username)
        if existing is not None and existing.kind != PUPPET:
            # A hosted community (or the bot) has the name: one namespace.
            username = puppet_username(handle, taken=True)
            existing = get_actor(self.conn, username)
        if existing is None:
            if not create:
                return username
            create_actor(
                self.conn,
                username=username,
                kind=PUPPET,
                master_key=self.master_key,
                now=self.now,
                source_handle=handle,
            )
        self._puppets[handle] = username
        return username

    def follower_inboxes(self, username: str) -> list[str]:
        if username not in self._followers:
            self._followers[username] = sorted(
                {f.shared_inbox or f.inbox for f in list_followers(self.conn, username)}
            )
        return self._followers[username]

    def target_key(self, item: Item) -> str:
        return FOLLOWERS_ONLY if item.kind == "orphan" else self.target.id

    def prepare(
        self, item: Item, due_at: datetime, *, create_actors: bool, actor: str | None = None
    ) -> Prepared:
        """Build the item's object; ``actor`` keeps the author it was first published with.

        (PieFed silently denies an Update from another actor than the Create's.)
        """
        data = item.data
        actor = actor or self.actor_for(item, create=create_actors)
        object_id = self._objects.get(item.id) or object_id_for(item.id, self.target_key(item))
        url = self.urls.object(object_id)
        community = None if item.kind == "orphan" else self.target.id
        body = data.get("body") or ""
        note_md, note_html = attribution(item, actor_is_bot=actor == self.bot)
        source = "\n\n".join(x for x in (render.to_markdown(body), note_md) if x)
        content = render.to_html(body) + note_html
        published = (
            parse_time(data.get("published"))
            if self.settings.backfill.published == "original"
            else self.now
        )
        updated = parse_time(data.get("edited_at"))
        followers = self.urls.followers(actor)
        common = {
            "object_id": url,
            "attributed_to": self.urls.actor(actor),
            "community": community,
            "content": content,
            "source": source,
            "published": published,
            "updated": updated,
            "language": data.get("language"),
            "followers": followers if item.kind == "orphan" else None,
        }
        depends_on = parent_id = None
        if item.kind == "post":
            title = data.get("title") or derived_title(body) or "(untitled)"
            document = build_post(kind=self.post_type, name=title, **common)
            if self.group:
                # PieFed follows a post's `replies` to fetch its comments.
                document["replies"] = self.urls.replies(object_id)
        else:
            in_reply_to = None
            if item.reply_to is not None:
                parent = self._objects.get(item.reply_to) or object_id_for(
                    item.reply_to, self.target.id
                )
                in_reply_to = self.urls.object(parent)
                depends_on = in_reply_to
                parent_id = parent
            document = build_comment(in_reply_to=in_reply_to, **common)
        size = len(json.dumps(document).encode())
        if size > MAX_OBJECT_BYTES:
            raise enqueue.TooLarge(
                f"{item.kind} {item.id} makes a {size}-byte object; Lemmy fetches at most "
                f"{MAX_OBJECT_BYTES} bytes"
            )
        inboxes = self.follower_inboxes(actor) if create_actors else []
        if community and not self.group:
            inboxes = [self.target.inbox, *inboxes]
        return Prepared(
            item=item,
            object_id=object_id,
            actor=actor,
            document=document,
            content_hash=content_hash(
                document, ignore_published=self.settings.backfill.published == "now"
            ),
            depends_on=depends_on,
            due_at=due_at,
            inboxes=sorted(set(inboxes), key=lambda i: (i != self.target.inbox, i)),
            parent_id=parent_id,
        )

    def activity_recipe(self, prepared: Prepared, kind: str = "Create") -> dict[str, Any]:
        document = prepared.document
        return recipe(
            "create",
            username=prepared.actor,
            object=document,
            to=document["to"],
            cc=document["cc"],
            audience=document.get("audience"),
            kind=kind,
        )


def content_hash(document: dict[str, Any], *, ignore_published: bool) -> str:
    # `updated` is set by an Update itself, `published` is the run's time when
    # the config says "now", and the type is fixed at the first Create (a new
    # post_type setting does not retype old objects): leaving them out keeps
    # a re-run idempotent.
    ignored = {"updated", "type", *(("published",) if ignore_published else ())}
    stable = {k: v for k, v in document.items() if k not in ignored}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()

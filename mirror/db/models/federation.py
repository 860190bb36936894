"""Tables for the ActivityPub side: our actors, followers, remote actors, activities, objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mirror.db.base import Base
from mirror.db.types import UTCDateTime

URL = sa.String(2048)
TZ = UTCDateTime()


class LocalActor(Base):
    """An actor we serve: the bot, or a puppet standing for one original author."""

    __tablename__ = "local_actor"

    username: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # "bot" or "puppet"
    #: For a puppet: the handle of the author it mirrors.
    source_handle: Mapped[str | None] = mapped_column(sa.String(255))
    public_key_pem: Mapped[str] = mapped_column(sa.Text)
    #: The PKCS#8 private key, encrypted with the master key (never logged or served).
    private_key: Mapped[str] = mapped_column(sa.Text)
    #: Hash of the profile last announced, to send an Update when it changes.
    profile_hash: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Follower(Base):
    """A remote actor following one of ours."""

    __tablename__ = "follower"
    __table_args__ = (sa.UniqueConstraint("local_username", "actor_url"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    local_username: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("local_actor.username")
    )
    actor_url: Mapped[str] = mapped_column(URL)
    inbox: Mapped[str] = mapped_column(sa.Text)
    shared_inbox: Mapped[str | None] = mapped_column(sa.Text)
    #: The id of the Follow activity, for a later Undo.
    follow_id: Mapped[str | None] = mapped_column(sa.Text)
    #: "active", "removed" (unfollowed or removed by the operator) or "blocked".
    state: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class RemoteActor(Base):
    """A fetched remote actor: its key and inboxes, cached."""

    __tablename__ = "remote_actor"

    url: Mapped[str] = mapped_column(URL, primary_key=True)
    type: Mapped[str | None] = mapped_column(sa.String(64))
    preferred_username: Mapped[str | None] = mapped_column(sa.String(255))
    key_id: Mapped[str | None] = mapped_column(URL, index=True)
    public_key_pem: Mapped[str | None] = mapped_column(sa.Text)
    inbox: Mapped[str | None] = mapped_column(sa.Text)
    shared_inbox: Mapped[str | None] = mapped_column(sa.Text)
    fetched_at: Mapped[datetime] = mapped_column(TZ)
    #: When the actor's URL answered 404 or 410.
    gone_at: Mapped[datetime | None] = mapped_column(TZ)


class ReceivedActivity(Base):
    """Activity ids received in our inboxes: a repeated delivery is not processed twice."""

    __tablename__ = "received_activity"

    activity_id: Mapped[str] = mapped_column(URL, primary_key=True)
    actor: Mapped[str] = mapped_column(URL)
    type: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime] = mapped_column(TZ, index=True)


class Activity(Base):
    """An activity we publish: its JSON is built once, then served and delivered unchanged."""

    __tablename__ = "activity"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("local_actor.username"))
    type: Mapped[str] = mapped_column(sa.String(32))
    object_id: Mapped[str | None] = mapped_column(URL)
    #: The object that must reach a server before this one (a reply's parent).
    depends_on: Mapped[str | None] = mapped_column(URL)
    #: How to build the activity again with a new id: {"builder": name, "args": {...}}.
    recipe: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    #: Listed in the actor's outbox (public activities only).
    public: Mapped[bool] = mapped_column(sa.Boolean)
    json: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(TZ, index=True)
    #: The backfill run that queued it, if any (its progress counts these deliveries).
    run_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)


class ApObject(Base):
    """An object we publish (a mirrored post or comment), served at its id."""

    __tablename__ = "ap_object"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("local_actor.username"))
    type: Mapped[str] = mapped_column(sa.String(32))
    json: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    #: Set when the object was deleted: it then answers 410 with a Tombstone.
    deleted_at: Mapped[datetime | None] = mapped_column(TZ)


class HostedCommunity(Base):
    """A community we host as a read-only Group: its actor is the local_actor of its name.

    The Group shares the local_actor table (and so one namespace) with the
    bot and the puppets, as Lemmy's users and communities share WebFinger.
    """

    __tablename__ = "hosted_community"

    name: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("local_actor.username"), primary_key=True
    )
    #: The reconstructed community it shows: name@instance, its title (when the
    #: pages named it only by title), or "unknown" (posts of no known community).
    source: Mapped[str] = mapped_column(sa.String(255), unique=True)
    #: The original community (https://instance/c/name), when the source names one.
    source_url: Mapped[str | None] = mapped_column(URL)
    #: The Group's display name.
    title: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    #: Set by a forced unhost of a followed community: it answers 410, and its
    #: name (known to its followers' servers) stays reserved for this source.
    retired_at: Mapped[datetime | None] = mapped_column(TZ)


class HostedBacklog(Base):
    """The archive queued for one server when its first follower of a Group was accepted.

    Lemmy reads only the first page of a community's outbox when it
    subscribes; the rest of the archive goes to the server's shared inbox
    through the queue, once per server (mirror.federation.backlog).
    """

    __tablename__ = "hosted_backlog"
    __table_args__ = (sa.UniqueConstraint("community", "host"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    community: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("hosted_community.name"))
    host: Mapped[str] = mapped_column(sa.String(255))
    #: The server's shared inbox (or the first follower's inbox) it goes to.
    inbox: Mapped[str] = mapped_column(sa.Text)
    #: Announces queued for it (each object's Create and its Updates).
    items: Mapped[int] = mapped_column(sa.Integer)
    #: The server's software from its NodeInfo (None: unknown), which decides
    #: the known limits its backlog honours (mirror.publish.servers).
    software: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(TZ)
    #: Set when the server's last follower left: what was not sent is cancelled,
    #: and a new follower from there queues it again.
    stopped_at: Mapped[datetime | None] = mapped_column(TZ)
    #: Why the server cannot be asked what it holds after all (its lookup answered
    #: so, e.g. PieFed with its alpha API off): its copies are unverifiable.
    unverifiable: Mapped[str | None] = mapped_column(sa.Text)


#: Follower copies the publication job may still move.
OPEN_COPIES = "state IN ('waiting', 'queued', 'held', 'sent', 'missing')"


class FollowerCopy(Base):
    """One post or comment a hosted Group announced to one follower's server, and whether
    that server holds it.

    A 2xx is not proof (PieFed answers 200 to what it refuses, e.g. a young
    author's fifth post): where the server's software has a lookup, the
    publication job asks it, as it asks a remote community about a
    publication, and announces again what is missing (mirror.publish.
    follower_copies, follower_checks). States are mirror.publish.states'.
    """

    __tablename__ = "follower_copy"
    __table_args__ = (
        sa.UniqueConstraint("community", "host", "object_id"),
        # The job looks only at rows it may have to move.
        sa.Index(
            "ix_follower_copy_open",
            "state",
            "due_at",
            sqlite_where=sa.text(OPEN_COPIES),
            postgresql_where=sa.text(OPEN_COPIES),
        ),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    community: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("hosted_community.name"))
    host: Mapped[str] = mapped_column(sa.String(255))
    #: The server's shared inbox, where it is announced again.
    inbox: Mapped[str] = mapped_column(sa.Text)
    #: The publication (the object's id; its URL is Urls.object(id)), its kind and author.
    object_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(8))
    actor: Mapped[str] = mapped_column(sa.String(64))
    #: The parent's publication (a comment's post or parent comment).
    parent_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: The Announce whose delivery to `inbox` decides the state (the last one sent).
    activity_id: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    #: When the job looks at it next: a lookup, a release, an announce again.
    due_at: Mapped[datetime | None] = mapped_column(TZ)
    #: Times it was announced to the server; lookups since the last time.
    sends: Mapped[int] = mapped_column(sa.Integer)
    checks: Mapped[int] = mapped_column(sa.Integer)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    confirmed_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)

"""Backfill runs, and publications: one reconstructed item in one target community."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mirror.db.base import Base
from mirror.db.types import UTCDateTime

URL = sa.String(2048)
TZ = UTCDateTime()
#: Publications the job may still move (the others wait for an operator or are done).
OPEN_ROWS = "state IN ('waiting', 'queued', 'sent', 'missing')"
#: Everything but the bulk: counts read these and subtract from the total.
UNCONFIRMED_ROWS = "state != 'confirmed'"


class BackfillRun(Base):
    """One `mirror backfill`: what was asked, and where to."""

    __tablename__ = "backfill_run"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    #: The target community's actor id, and the inbox deliveries go to.
    target: Mapped[str] = mapped_column(URL)
    inbox: Mapped[str] = mapped_column(URL)
    #: The options it was started with (--from, --since, --limit, --rate...).
    options: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    #: planning (its plan is still being written, chunk by chunk), active, paused
    #: or cancelled (done is derived from its deliveries).
    state: Mapped[str] = mapped_column(sa.String(16))
    items: Mapped[int] = mapped_column(sa.Integer)
    #: The target's software and version from its NodeInfo (None: unknown),
    #: which decides how publications are confirmed (mirror.publish.servers).
    software: Mapped[str | None] = mapped_column(sa.String(64))
    version: Mapped[str | None] = mapped_column(sa.String(64))
    #: Why the target cannot be asked after all (its lookup answered so), if it cannot.
    unverifiable: Mapped[str | None] = mapped_column(sa.Text)
    #: Where its plan stands while it is planning (mirror.publish.stream.Progress):
    #: planning it again continues from there.
    progress: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Publication(Base):
    """A reconstructed post or comment published as an object for one target.

    A post lives in one community, so the object id is made from the item
    and the target; the object JSON is built once and served unchanged.
    Each row is a small state machine (mirror.publish.states) that the
    publication job advances: from its delivery, and from asking the target
    whether it stored the object.
    """

    __tablename__ = "publication"
    __table_args__ = (
        sa.UniqueConstraint("item_id", "target"),
        # The job looks only at rows it may have to move.
        sa.Index(
            "ix_publication_open",
            "state",
            "due_at",
            sqlite_where=sa.text(OPEN_ROWS),
            postgresql_where=sa.text(OPEN_ROWS),
        ),
        sa.Index("ix_publication_parent", "parent_id"),
        # Counts by state and the reasons operators read (mirror.publish.publications):
        # confirmed = total - the rest, so no confirmed row is read.
        sa.Index(
            "ix_publication_unconfirmed",
            "state",
            "run_id",
            "kind",
            "reason",
            "due_at",
            "item_id",
            sqlite_where=sa.text(UNCONFIRMED_ROWS),
            postgresql_where=sa.text(UNCONFIRMED_ROWS),
        ),
    )

    #: The object's id (its URL is Urls.object(id)).
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    item_id: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(8))  # post or comment
    #: The community actor id, or "followers" for a comment of an unknown post.
    target: Mapped[str] = mapped_column(URL)
    actor: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("local_actor.username"))
    run_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("backfill_run.id"), index=True)
    #: The activity whose delivery to the target decides the state: the
    #: Create, a later Update, or the Create of a re-publication.
    activity_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("activity.id"))
    #: What the object was built from, to notice a changed item later.
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    #: The publication of the parent (a comment's post or parent comment).
    parent_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: mirror.publish.states.State; `reason` says why it is not confirmed.
    state: Mapped[str] = mapped_column(sa.String(16), server_default="queued")
    reason: Mapped[str | None] = mapped_column(sa.Text)
    #: When the job looks at it next: a lookup, a release, a re-publication.
    due_at: Mapped[datetime | None] = mapped_column(TZ)
    #: Times its activities were queued (0: held before the first).
    sends: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    #: Lookups since it was last sent.
    checks: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    confirmed_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)

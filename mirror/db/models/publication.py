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


class BackfillRun(Base):
    """One `mirror backfill`: what was asked, and where to."""

    __tablename__ = "backfill_run"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    #: The target community's actor id, and the inbox deliveries go to.
    target: Mapped[str] = mapped_column(URL)
    inbox: Mapped[str] = mapped_column(URL)
    #: The options it was started with (--from, --since, --limit, --rate...).
    options: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    #: active, paused or cancelled (done is derived from its deliveries).
    state: Mapped[str] = mapped_column(sa.String(16))
    items: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Publication(Base):
    """A reconstructed post or comment published as an object for one target.

    A post lives in one community, so the object id is made from the item
    and the target; the object JSON is built once and served unchanged.
    """

    __tablename__ = "publication"
    __table_args__ = (sa.UniqueConstraint("item_id", "target"),)

    #: The object's id (its URL is Urls.object(id)).
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    item_id: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(8))  # post or comment
    #: The community actor id, or "followers" for a comment of an unknown post.
    target: Mapped[str] = mapped_column(URL)
    actor: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("local_actor.username"))
    run_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("backfill_run.id"), index=True)
    #: The activity that created it.
    activity_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("activity.id"))
    #: What the object was built from, to notice a changed item later.
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)

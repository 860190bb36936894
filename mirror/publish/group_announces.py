"""A hosted Group announcing its authors' activities to its followers' shared inboxes.

A backfill into one of our own communities publishes each Create, Update
or Delete by its author, and the Group announces it, as Lemmy's communities
do. Each Announce is about the object (the queue keeps an object's
Announces in order, Create before Update before Delete), after its parent,
at the run's pace; a post a follower's server would drop for its author's
age goes to that server when the author is old enough (follower_limits),
and each copy a follower's server can be asked about is tracked
(follower_copies).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.delivery import enqueue
from mirror.publish import follower_copies
from mirror.publish.follower_limits import FollowerLimits
from mirror.publish.prepare import Prepared
from mirror.vocab.activities import recipe
from mirror.vocab.ids import Urls


class GroupAnnounces:
    """One run's Announces by one Group, written with the run's Outbox."""

    def __init__(
        self,
        conn: sa.Connection,
        *,
        group: str,
        urls: Urls,
        outbox: enqueue.Outbox,
        inboxes: list[str],
    ) -> None:
        self.group = group
        self.urls = urls
        self.outbox = outbox
        self.inboxes = inboxes
        self.limits = FollowerLimits(conn, group=group, own_host=urls.host)
        self.copies = follower_copies.Tracker(conn, group)

    def announce(
        self,
        prepared: Prepared,
        inner: dict[str, Any],
        inner_id: str,
        *,
        run_id: int,
        pace: enqueue.Pace | None,
        now: datetime,
    ) -> str:
        """Queue the Announce of ``inner`` (the author's activity, as a recipe); its id."""
        creates = inner["args"]["kind"] == "Create"
        later = {}
        if creates and prepared.item.kind == "post":
            later = self.limits.dues(prepared.actor, self.inboxes, now)
        announce_id = self.outbox.publish(
            username=self.group,
            recipe=recipe(
                "announce", username=self.group, activity=inner, activity_id_inner=inner_id
            ),
            inboxes=self.inboxes,
            due_by_host=later,
            now=now,
            public=True,
            depends_on=prepared.depends_on,
            due_at=prepared.due_at,
            run_id=run_id,
            pace=pace,
            about=self.urls.object(prepared.object_id),
        )
        if creates:
            # Each server that can be asked is asked whether it kept it (PieFed
            # answers 200 to what it drops); an Update changes nothing there.
            self.copies.announced(
                inboxes=self.inboxes,
                object_id=prepared.object_id,
                kind=prepared.item.kind,
                actor=prepared.actor,
                parent_id=prepared.parent_id,
                activity_id=announce_id,
                now=now,
            )
        return announce_id

    def flush(self) -> None:
        self.copies.flush()

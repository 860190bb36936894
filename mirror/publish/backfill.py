"""A backfill: the plan's items become objects (mirror.publish.prepare builds
them), and Creates in the delivery queue.

Everything is written in the caller's transaction, so a backfill is queued
whole or not at all. Each (item, target) pair is a publication with its own
object id; its JSON is built when first queued and then served unchanged
until an Update. Running the same backfill again queues only what is new,
re-queues what failed, sends an Update for an item whose reconstruction
changed, and a Delete for a mirrored item that is now excluded; a run is
recorded only when there is any of that to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mirror.config import Settings
from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import Activity, ApObject, BackfillRun, Publication
from mirror.delivery import enqueue
from mirror.inspection import load_bodies
from mirror.publish import follower_copies, matching, release
from mirror.publish.group_announces import GroupAnnounces
from mirror.publish.plan import Item, Plan
from mirror.publish.prepare import Builder, Prepared
from mirror.publish.report import Report, planned_counts
from mirror.publish.retract import delete_publications
from mirror.publish.servers import server_for
from mirror.publish.states import HOLDS_REPLIES
from mirror.publish.states import State as Published
from mirror.publish.target import Target
from mirror.signatures import MasterKey
from mirror.vocab.activities import build
from mirror.vocab.ids import Urls
from mirror.vocab.times import rfc3339

PUBLICATIONS = table_of(Publication)
OBJECTS = table_of(ApObject)
RUNS = table_of(BackfillRun)
ACTIVITIES = table_of(Activity)
#: Activities a backfill builds before writing them (bounds its memory).
FLUSH_EVERY = 500
_OBJECT_UPDATE = ("actor", "type", "json", "created_at", "updated_at", "deleted_at")
#: A publication sent again as an Update: queued, about the new activity.
_PUBLICATION_UPDATED = (
    sa.update(PUBLICATIONS)
    .where(PUBLICATIONS.c.id == sa.bindparam("b_id"))
    .values(
        content_hash=sa.bindparam("content_hash"),
        run_id=sa.bindparam("run_id"),
        activity_id=sa.bindparam("activity_id"),
        state=sa.bindparam("state"),
        reason=None,
        due_at=None,
        checks=0,
        sends=PUBLICATIONS.c.sends + 1,
    )
)


class Backfill(Builder):
    """One backfill into one target, over one connection (the caller's transaction)."""

    def __init__(
        self,
        conn: sa.Connection,
        *,
        settings: Settings,
        urls: Urls,
        master_key: MasterKey,
        target: Target,
        now: datetime,
        rate_per_minute: float,
        attribution: str | None = None,
    ) -> None:
        super().__init__(
            conn,
            settings=settings,
            urls=urls,
            master_key=master_key,
            target=target,
            now=now,
            attribution=attribution,
        )
        self.rate = rate_per_minute
        self.server = server_for(target.software)
        #: Replies wait for their parent's confirmation where the target can be asked.
        self.confirms = self.server.lookup_path is not None
        #: States of publications stored before this run (see _match).
        self._states: dict[str, str] = {}
        #: Posts each actor has on the target's server, counting this run's.
        self._posts: dict[str, int] = {}
        #: A hosted Group's Announces (made on its first).
        self._announces: GroupAnnounces | None = None
        # Written in bulk every FLUSH_EVERY activities (see enqueue.Outbox).
        self._outbox = enqueue.Outbox(conn, urls=urls)
        self._new_objects: list[dict[str, Any]] = []
        self._new_publications: list[dict[str, Any]] = []
        self._updated: list[dict[str, Any]] = []

    @classmethod
    def of(
        cls,
        conn: sa.Connection,
        federation: Any,
        target: Target,
        rate: float,
        attribution: str | None = None,
    ) -> Backfill:
        """A backfill by this service (its settings, ids, keys and clock)."""
        return cls(
            conn,
            settings=federation.settings,
            urls=federation.urls,
            master_key=federation.master_key,
            target=target,
            now=federation.clock.now(),
            rate_per_minute=rate,
            attribution=attribution,
        )

    def _match(self, items: Sequence[Item]) -> dict[str, tuple[Any, list[Any]]]:
        """Each planned item's publications for this target (mirror.publish.matching)."""
        found = matching.match(self.conn, self.target.id, self.target_key, items)
        self._states, self._objects = found.states, found.objects
        return found.matched

    def dry_run(self, plan: Plan | Iterable[Sequence[Item]], show: int = 3) -> Report:
        """The report a run would make, and its first activities; writes nothing.

        Takes a whole plan, or a stream's chunks (then the report's counts are
        the caller's: see mirror.publish.planning).
        """
        chunks: Iterable[Sequence[Item]]
        if isinstance(plan, Plan):
            report = Report(None, self.target.id, planned_counts(plan), left_out=plan.left_out)
            chunks = [plan.items]
        else:
            report = Report(None, self.target.id, {})
            chunks = plan
        for items in chunks:
            if len(report.first) >= show:
                continue  # the rest is only counted
            first = list(items[: show - len(report.first)])
            self._match(first)  # for the object ids a real run would keep (self._objects)
            for item in _with_bodies(self.conn, first):
                prepared = self.prepare(item, self.now, create_actors=False)
                report.first.append(
                    build(self.urls, self.activity_recipe(prepared), activity_id="dry-run")
                )
        return report

    # -- writing ------------------------------------------------------------------

    def _new_run(self, options: dict[str, Any], items: int, state: str = "active") -> int:
        return int(
            self.conn.execute(
                sa.insert(RUNS)
                .values(
                    target=self.target.id,
                    inbox=self.target.inbox,
                    options=options,
                    state=state,
                    items=items,
                    software=self.target.software,
                    version=self.target.version,
                    created_at=self.now,
                    updated_at=self.now,
                )
                .returning(RUNS.c.id)
            ).scalar_one()
        )

    def run(
        self,
        plan: Plan,
        options: dict[str, Any],
        deletions: list[str],
        *,
        updates_only: bool = False,
    ) -> Report:
        """Queue the plan; ``updates_only`` sends just the Updates of changed items
        (after an ingest). The run is made once there is something to queue: a
        re-run with nothing new makes none (its report's ``run_id`` is None)."""
        self.begin(
            Report(None, self.target.id, planned_counts(plan), left_out=plan.left_out),
            options,
            items=len(plan.items),
        )
        self.queue(plan.items, updates_only=updates_only)
        return self.finish(deletions)

    def begin(
        self, report: Report, options: dict[str, Any], *, items: int, run_id: int | None = None
    ) -> Report:
        """Start queueing into ``report``: into the run ``run_id`` (one being planned),
        else into one made when there is first something to queue."""
        self._report = report
        self._run_options = options
        self._run_items = items
        self._run_id = run_id
        # Each post sent now (a Create, an Update, one queued again) takes the
        # next slot of the run's pace and its comments follow it; the
        # already mirrored and the held take none. These due times are
        # floors for the queue (and what `mirror status` shows); the pace
        # itself is kept by the claim (mirror.delivery.claim), which also
        # spaces what goes late, after an outage or a crash.
        self._slot = 0
        self._post_due = self.now
        return report

    def _this_run(self) -> int:
        """The run, made now if it is not yet: it names what is queued."""
        if self._run_id is None:
            self._run_id = self._new_run(self._run_options, self._run_items)
        self._report.run_id = self._run_id
        return self._run_id

    def queue(self, items: Sequence[Item], *, updates_only: bool = False) -> None:
        """Queue these items (whole threads: a plan, or one chunk of a stream)."""
        report = self._report
        this_run = self._this_run
        interval = timedelta(seconds=60 / self.rate) if self.rate > 0 else timedelta(0)
        matched = self._match(items)
        for item in _with_bodies(self.conn, items):
            previous, duplicates = matched.get(item.id, (None, []))
            if updates_only and previous is None:
                continue
            if previous is not None and previous.item_id != item.id:
                self._adopt(previous.id, item.id)
            for duplicate in duplicates:
                report.deleted += self._delete(PUBLICATIONS.c.id == duplicate.id, this_run)
            if item.kind == "post":
                self._post_due = self.now + interval * self._slot
            due = self._post_due if item.kind != "orphan" else self.now
            prepared = self.prepare(
                item,
                due,
                create_actors=True,
                actor=previous.actor if previous is not None else None,
            )
            if updates_only and previous.content_hash == prepared.content_hash:
                report.unchanged += 1
                continue
            sent = True
            if previous is None:
                if self._create(prepared, this_run()):
                    report.waiting += 1
                    sent = False  # a held post takes no slot until it is released
                else:
                    report.deliveries += len(prepared.inboxes)
                report.queued += 1
            elif previous.content_hash != prepared.content_hash:
                self._update(prepared, previous, this_run())
                report.updated += 1
                report.deliveries += len(prepared.inboxes)
            elif self._requeue(previous.activity_id, this_run, prepared):
                report.requeued += 1
            else:
                report.unchanged += 1
                sent = False
            if sent and item.kind == "post":
                self._slot += 1
        self._flush()

    def finish(self, deletions: Iterable[str], *, items: int | None = None) -> Report:
        """The Deletes of what is now excluded, the last writes; ``items`` the run's total
        once known (a streamed plan knows it at the end)."""
        for item_id in deletions:
            self._report.deleted += self._delete(PUBLICATIONS.c.item_id == item_id, self._this_run)
        self._flush()
        if items is not None and self._report.run_id is not None:
            self.conn.execute(
                sa.update(RUNS).where(RUNS.c.id == self._report.run_id).values(items=items)
            )
        enqueue.refresh_statistics(self.conn)
        return self._report

    def _hold(self, prepared: Prepared) -> tuple[str, datetime | None] | None:
        """Why a new publication must wait before it is sent (reason, until), if it must.

        Only where the target can be asked: a reply waits for its parent's
        confirmation (PieFed refuses a reply to a post it does not hold, for
        good), and a post waits for a known new-account limit to pass.
        """
        if not self.confirms or prepared.item.kind == "orphan":
            return None
        if prepared.parent_id is not None:
            if self._states.get(prepared.parent_id) in HOLDS_REPLIES:
                return None
            return "waits for its parent to be confirmed", None
        if prepared.item.kind != "post":
            return None
        count = self._posts.get(prepared.actor)
        if count is None:
            count = release.posts_sent(self.conn, prepared.actor, self.target.host)
        hold = release.young_account_due(
            self.conn, self.server, prepared.actor, count=count, now=self.now
        )
        if hold is None:
            self._posts[prepared.actor] = count + 1
            return None
        self._posts[prepared.actor] = count
        due, reason = hold
        return reason, due

    def _publish(
        self, prepared: Prepared, run_id: int, kind: str = "Create", *, held: bool = False
    ) -> str:
        document = prepared.document
        self._new_objects.append(
            {
                "id": prepared.object_id,
                "actor": prepared.actor,
                "type": document["type"],
                "json": document,
                "created_at": self.now,
                "updated_at": self.now,
                "deleted_at": None,
            }
        )
        if len(self._outbox) >= FLUSH_EVERY:
            self._flush()
        inner = self.activity_recipe(prepared, kind)
        activity_id = self._outbox.publish(
            username=prepared.actor,
            recipe=inner,
            # A held publication's activity is stored and queued when released.
            inboxes=[] if held else prepared.inboxes,
            now=self.now,
            public=True,
            depends_on=prepared.depends_on,
            due_at=prepared.due_at,
            run_id=run_id,
            pace=self._pace(prepared, run_id),
        )
        if self.group:
            if self._announces is None:
                self._announces = GroupAnnounces(
                    self.conn,
                    group=self.group,
                    urls=self.urls,
                    outbox=self._outbox,
                    inboxes=self.follower_inboxes(self.group),
                )
            self._announces.announce(
                prepared,
                inner,
                activity_id,
                run_id=run_id,
                pace=self._pace(prepared, run_id),
                now=self.now,
            )
        return activity_id

    def _pace(self, prepared: Prepared, run_id: int) -> enqueue.Pace | None:
        """A post keeps the run's pace; its comments follow it (they wait for it)."""
        if prepared.item.kind != "post":
            return None
        return enqueue.Pace.per_minute(run_id, self.rate)

    def _create(self, prepared: Prepared, run_id: int) -> bool:
        """Publish a new item; returns whether it is held back (waiting)."""
        hold = self._hold(prepared)
        activity_id = self._publish(prepared, run_id, held=hold is not None)
        reason, due = hold if hold is not None else (None, None)
        state = Published.WAITING if hold else Published.QUEUED
        if self.group:
            state = Published.CONFIRMED  # the Group holds it: it is ours
        self._new_publications.append(
            {
                "id": prepared.object_id,
                "item_id": prepared.item.id,
                "kind": prepared.item.kind,
                "target": self.target_key(prepared.item),
                "actor": prepared.actor,
                "run_id": run_id,
                "activity_id": activity_id,
                "content_hash": prepared.content_hash,
                "parent_id": prepared.parent_id,
                "state": state.value,
                "confirmed_at": self.now if self.group else None,
                "reason": reason,
                "due_at": due,
                "sends": 0 if hold else 1,
                "checks": 0,
                "created_at": self.now,
                "updated_at": self.now,
            }
        )
        return hold is not None

    def _flush(self) -> None:
        """Write what the run built so far: objects, activities and deliveries, publications."""
        objects, self._new_objects = self._new_objects, []
        # One statement whether an object is new or re-published.
        bulk_insert(self.conn, OBJECTS, objects, update_on="id", update=_OBJECT_UPDATE)
        self._outbox.flush()
        publications, self._new_publications = self._new_publications, []
        bulk_insert(self.conn, PUBLICATIONS, publications)
        if self._announces is not None:
            self._announces.flush()
        updated, self._updated = self._updated, []
        if updated:
            self.conn.execute(_PUBLICATION_UPDATED.values(updated_at=self.now), updated)

    def _update(self, prepared: Prepared, previous: Any, run_id: int) -> None:
        """The reconstruction changed: an Update with a newer `updated`, same object id.

        The type never changes (an object keeps one type for its life).
        """
        document = {**prepared.document, "updated": rfc3339(self.now)}
        document["type"] = (
            self.conn.scalar(sa.select(OBJECTS.c.type).where(OBJECTS.c.id == previous.id))
            or document["type"]
        )
        prepared.document = document
        activity_id = self._publish(prepared, run_id, "Update")
        # Its confirmation is about the Update now (a target that never
        # stored the Create takes an Update of it as a new object). Written
        # at the flush, after the activity it names.
        self._updated.append(
            {
                "b_id": previous.id,
                "content_hash": prepared.content_hash,
                "run_id": run_id,
                "activity_id": activity_id,
                "state": (Published.CONFIRMED if self.group else Published.QUEUED).value,
            }
        )

    def _requeue(self, activity_id: str, run: Callable[[], int], prepared: Prepared) -> bool:
        """A failed or cancelled earlier delivery of the same Create goes back in the
        queue, at this run's pace."""
        if not enqueue.requeueable(self.conn, activity_id):
            return False
        run_id = run()
        requeued = enqueue.requeue(
            self.conn,
            activity_id,
            now=self.now,
            due_at=prepared.due_at,
            pace=self._pace(prepared, run_id),
        )
        if self.group:
            # Its Announces to the Group's followers, failed or cancelled, too.
            announces = self.conn.scalars(
                sa.select(ACTIVITIES.c.id).where(
                    ACTIVITIES.c.actor == self.group,
                    ACTIVITIES.c.object_id == self.urls.object(prepared.object_id),
                )
            ).all()
            for announce in announces:
                requeued += enqueue.requeue(self.conn, announce, now=self.now)
            follower_copies.requeued(self.conn, list(announces), now=self.now)
        if requeued and self.group:
            return True  # stored here by definition: the publication stays confirmed
        if requeued:
            # It now counts in this run's progress.
            self.conn.execute(
                sa.update(ACTIVITIES).where(ACTIVITIES.c.id == activity_id).values(run_id=run_id)
            )
            self.conn.execute(
                sa.update(PUBLICATIONS)
                .where(PUBLICATIONS.c.activity_id == activity_id)
                .values(
                    state=Published.QUEUED.value, reason=None, run_id=run_id, updated_at=self.now
                )
            )
        return bool(requeued)

    def _adopt(self, object_id: str, item_id: str) -> None:
        """The object now stands for the item under its new id."""
        self.conn.execute(
            sa.update(PUBLICATIONS)
            .where(PUBLICATIONS.c.id == object_id)
            .values(item_id=item_id, updated_at=self.now)
        )

    def _delete(self, where: sa.ColumnElement[bool], run: Callable[[], int]) -> int:
        live = (
            sa.select(PUBLICATIONS.c.id)
            .join(OBJECTS, OBJECTS.c.id == PUBLICATIONS.c.id)
            .where(where, OBJECTS.c.deleted_at.is_(None))
            .limit(1)
        )
        if self.conn.scalar(live) is None:
            return 0  # deleted already: a re-run needs no run for them
        self._flush()  # the Deletes queue after everything published before them
        return delete_publications(
            self.conn,
            urls=self.urls,
            now=self.now,
            where=where,
            inbox_for={self.target.id: self.target.inbox},
            run_id=run(),
        )


def _with_bodies(
    conn: sa.Connection, items: Sequence[Item], size: int = FLUSH_EVERY
) -> Iterator[Item]:
    """The items, each holding its body while it is built into an object.

    A plan comes without bodies (see mirror.inspection.build_outline): read
    here ``size`` at a time, and let go once their objects are built.
    """
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        missing = [item for item in chunk if "body" not in item.data]
        bodies = load_bodies(conn, [item.id for item in missing]) if missing else {}
        for item in missing:
            item.data["body"] = bodies.get(item.id)
        yield from chunk
        for item in missing:
            del item.data["body"]

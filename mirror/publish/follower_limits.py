"""When a hosted Group's Announce of a post may reach each of its followers' servers.

A server with a known new-account limit applies it to announced posts too
(PieFed's shared inbox runs `can_create_post` on the Create an Announce
brings: app/activitypub/routes.py, then app/utils.py), and drops what it
refuses while answering 200. So a young author's post past the limit is
queued for that server for when the author is old enough, as the backlog
does (mirror.federation.backlog); other servers get it at once. A server's
software is the one its NodeInfo named when its first follower came.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import HostedBacklog
from mirror.delivery.enqueue import host_of
from mirror.publish.release import posts_sent, young_account_due
from mirror.publish.servers import server_for

BACKLOGS = table_of(HostedBacklog)


class FollowerLimits:
    """The new-account holds of one Group's followers' servers, for one publishing run."""

    def __init__(self, conn: sa.Connection, *, group: str, own_host: str) -> None:
        self.conn = conn
        self.own_host = own_host
        self.software = {
            row.host: row.software
            for row in conn.execute(
                sa.select(BACKLOGS.c.host, BACKLOGS.c.software).where(BACKLOGS.c.community == group)
            )
        }
        #: Posts each actor has in our hosted communities, counting this run's.
        self._posts: dict[str, int] = {}

    def dues(self, actor: str, inboxes: list[str], now: datetime) -> dict[str, datetime]:
        """The servers (by host) that must get ``actor``'s next post later, and when.

        Every post the actor has in any of our Groups counts, whether a
        server got it or not: a server counts an account's posts, and a
        count too high only waits longer, never loses a post.
        """
        count = self._posts.get(actor)
        if count is None:
            count = posts_sent(self.conn, actor, self.own_host)
        self._posts[actor] = count + 1
        out = {}
        for host in sorted({host_of(inbox) for inbox in inboxes}):
            hold = young_account_due(
                self.conn, server_for(self.software.get(host)), actor, count=count, now=now
            )
            if hold is not None:
                out[host] = hold[0]
        return out

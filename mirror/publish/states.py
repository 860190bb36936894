"""Publication states: what the target holds of an item, as far as we know.

A 2xx from an inbox is not proof: PieFed answers 200 to what it refuses.
So a publication is sent when its delivery got a 2xx, and confirmed only
when the target, asked, shows the object. The job (mirror.publish.job)
moves rows along this graph; operators move the final ones back with
`mirror retry --unconfirmed`.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    #: Not sent yet: its parent is not confirmed, or a known limit holds it until `due_at`.
    WAITING = "waiting"
    #: Its activity is in the delivery queue.
    QUEUED = "queued"
    #: The target answered 2xx; lookups until it shows the object or the window ends.
    SENT = "sent"
    CONFIRMED = "confirmed"
    #: Sent, but not found within the window; published again at `due_at`
    #: (or once its parent is confirmed); no `due_at`: given up.
    MISSING = "missing"
    #: The delivery queue holds its activity (a dead host, a paused run, a ban,
    #: a failed earlier delivery); it goes on when the queue lets it.
    HELD = "held"
    #: The target said no (a 4xx with its reason).
    REFUSED = "refused"
    #: Its delivery failed for good (5xx after retries, the network past the horizon).
    FAILED = "failed"
    #: Its parent failed, was refused or given up: it waits for an operator.
    PARKED = "parked"
    #: Delivered where nothing can be asked (followers, unknown software, no API).
    UNVERIFIABLE = "unverifiable"
    CANCELLED = "cancelled"


#: The edges the job and the operator commands take.
ALLOWED: dict[State, frozenset[State]] = {
    State.WAITING: frozenset({State.QUEUED, State.PARKED, State.CANCELLED}),
    State.QUEUED: frozenset(
        {State.SENT, State.UNVERIFIABLE, State.REFUSED, State.FAILED, State.CANCELLED, State.HELD}
    ),
    State.HELD: frozenset(
        {State.QUEUED, State.SENT, State.UNVERIFIABLE, State.REFUSED, State.FAILED, State.CANCELLED}
    ),
    State.SENT: frozenset({State.CONFIRMED, State.MISSING, State.UNVERIFIABLE, State.QUEUED}),
    State.MISSING: frozenset({State.QUEUED, State.WAITING, State.PARKED, State.CONFIRMED}),
    # An Update (changed content) sends a confirmed object again.
    State.CONFIRMED: frozenset({State.QUEUED}),
    State.REFUSED: frozenset({State.QUEUED, State.WAITING}),
    State.FAILED: frozenset({State.QUEUED, State.WAITING}),
    # Its parent is no longer blocked: back to waiting for it.
    State.PARKED: frozenset({State.WAITING, State.QUEUED, State.CANCELLED}),
    State.UNVERIFIABLE: frozenset({State.QUEUED}),
    State.CANCELLED: frozenset({State.QUEUED}),
}

#: What operators see, in this order.
ORDER = tuple(State)
#: Work the job will still do by itself: a run with none of these is done.
#: (MISSING counts while it has a `due_at` or waits for a parent.)
OPEN = (State.WAITING, State.QUEUED, State.SENT, State.MISSING)
#: Final until an operator acts, or for good.
SETTLED = tuple(s for s in State if s not in OPEN)
#: What `mirror retry --unconfirmed` sends again.
UNCONFIRMED = (State.MISSING, State.REFUSED, State.WAITING, State.FAILED, State.PARKED)
#: Whose replies may go: the target holds it, or nothing can tell.
HOLDS_REPLIES = (State.CONFIRMED, State.UNVERIFIABLE)
#: Whose replies can never be stored until an operator acts.
BLOCKS_REPLIES = (State.REFUSED, State.FAILED, State.PARKED, State.CANCELLED, State.HELD)

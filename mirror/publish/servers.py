"""What the servers we publish into are known to do, as data (one entry per software).

A target's software comes from its NodeInfo. What each entry says was read
in that server's own source; the file is cited beside each field, so a
reader can check it again when the server changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class NewAccountLimit:
    """A server refuses posts from a young remote account past a number of posts."""

    #: Posts we send while the account is young (the server may take a few more).
    posts: int
    #: How old the account must be (from its actor's `published`) before the rest.
    age: timedelta
    #: Where the limit lives, for the reason an operator reads.
    source: str


@dataclass(frozen=True, slots=True)
class Server:
    """One software's behaviour as a target."""

    name: str
    #: The path an anonymous client asks whether the server holds an object
    #: (``?q=OBJECT_URL``); None where no such lookup is known.
    lookup_path: str | None
    #: The error an answer of the lookup carries when the object is not there.
    not_found: tuple[str, ...]
    #: Errors its lookup answers when we ask too fast.
    too_fast: tuple[str, ...] = ()
    new_account_limit: NewAccountLimit | None = None
    #: It answers 200 to activities it refuses: only a lookup tells.
    refuses_with_200: bool = False
    #: It fetches an unknown parent itself; where it does not, a reply sent
    #: before its parent was stored is refused for good.
    fetches_parents: bool = True


LEMMY = Server(
    name="lemmy",
    # crates/apub/src/api/resolve_object.rs: without a login it looks only in
    # its own database and answers 400 couldnt_find_object (also for a deleted
    # object). Lemmy 1.0 keeps this v3 route.
    lookup_path="/api/v3/resolve_object",
    # 0.19 answers 400 couldnt_find_object (404 for a deleted one); 1.0
    # answers 400 resolve_object_failed (crates/api/api/src/federation/
    # resolve_object.rs), and 404 not_found for a deleted post without comments.
    not_found=("couldnt_find_object", "resolve_object_failed", "not_found"),
    too_fast=("rate_limit_error",),
    # Rate: 0.19 counts the route in its "message" bucket, 180 a minute per IP
    # (src/api_routes_http.rs); 1.0's v3 shim probably takes that bucket twice
    # per call (crates/api/routes_v3/src/lib.rs): 90 a minute. A 429 (or 0.19's
    # 400 rate_limit_error) pauses the job's lookups to that server.
)

PIEFED = Server(
    name="piefed",
    # app/api/alpha/utils/misc.py get_resolve_object: an exact ap_id match in
    # its own tables; anything else is 400 "No object found." for anonymous
    # clients. The alpha API must be enabled (ENABLE_ALPHA_API or debug).
    lookup_path="/api/alpha/resolve_object",
    not_found=("No object found.",),
    # app/utils.py can_create_post: `user.created_very_recently() and
    # user.post_count > 3` ("new users can only do 3 posts in their first
    # 24h"), before any moderator exemption; `created` is the actor's
    # `published`. We send three, not four: post_count may count posts we
    # cannot see (sent earlier from another mirror run, or deleted).
    new_account_limit=NewAccountLimit(
        posts=3, age=timedelta(hours=24), source="PieFed app/utils.py can_create_post"
    ),
    # app/activitypub/routes.py: the shared inbox answers 200 and logs a
    # refusal in activity_pub_log.
    refuses_with_200=True,
    # (Its alpha API sets no rate limit on this route.)
    # app/activitypub/util.py: a reply whose parent it does not hold is
    # refused ("Unable to find parent post/comment"), not fetched.
    fetches_parents=False,
)

UNKNOWN = Server(name="unknown", lookup_path=None, not_found=())

KNOWN = {server.name: server for server in (LEMMY, PIEFED)}
#: Waited past a new-account limit, for clocks that differ by a few minutes.
MARGIN = timedelta(minutes=15)


def server_for(software: str | None) -> Server:
    """The entry for a NodeInfo software name; UNKNOWN for anything else."""
    return KNOWN.get((software or "").lower(), UNKNOWN)

"""What each server software the sandbox can pretend to be does differently, as data.

A profile fills the Instance's behaviour fields that a caller left at None;
each value is what the real server does, with the source it was read from.
Lemmy: the LemmyNet/lemmy repository (0.19.9 and 1.0.0-beta.1). PieFed: the
theatl-social/pyfedi copy that runs on this machine (NodeInfo 1.6.18), with
FLASK_DEBUG=1 as `shared/peers/piefed/piefed.sh` starts it (activities are
processed inline, so a failure while storing answers 500).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

SOFTWARE = ("lemmy", "piefed")


@dataclass(frozen=True)
class Profile:
    software: str
    version: str
    #: Status of a refused activity. Lemmy answers 400 with {"error", "message"};
    #: PieFed logs the refusal (activity_pub_log) and answers 200 with an empty
    #: body (app/activitypub/routes.py shared_inbox, process_new_content).
    refusal_status: int
    #: Lemmy fetches an unknown parent from its server (crates/apub, within its
    #: fetch budget); PieFed looks only in its tables and refuses the comment with
    #: "Unable to find parent post/comment" (app/activitypub/util.py
    #: create_post_reply, find_reply_parent).
    fetch_unknown_parents: bool
    #: PieFed refuses a remote account's post while the account is younger than
    #: a day and already has more than 3 posts (app/utils.py can_create_post,
    #: User.created_very_recently in app/models.py); replies are not limited
    #: (can_create_post_reply). Lemmy has no such limit.
    new_account_limit: bool
    #: PieFed keeps a language identifier in Language.code, a varchar(5)
    #: (app/models.py), created on first sight (find_language_or_create): a longer
    #: identifier fails the INSERT, and inline processing answers 500.
    long_language_fails: bool
    #: Lemmy checks the Date header (its signature verification refuses a date
    #: off by more than an hour, as the sandbox always did); PieFed verifies the
    #: signature with skip_date=True (routes.py shared_inbox).
    check_date: bool
    #: Lemmy keeps the object's `published` as the post's date; PieFed sets
    #: posted_at to the time it received it (app/models.py Post.new, PostReply.new).
    keeps_published: bool
    #: How long an activity id is remembered as seen. Lemmy records it for good
    #: (received_activity); PieFed keeps it in Redis for 90 s and answers 200
    #: "Already aware of this activity" within that time (routes.py shared_inbox).
    duplicate_window: timedelta
    #: Lemmy Announces an accepted activity to every follower's inbox; PieFed
    #: skips the instance that hosts the author, "as presumably they already have
    #: the content" (routes.py announce_activity_to_followers).
    announces_to_author_instance: bool
    #: PieFed signs, and sends, the Host header as the bare host name, without a
    #: port (app/activitypub/signature.py signed_request: `uri_parts.hostname`);
    #: Lemmy signs host:port when there is one.
    signs_host_without_port: bool
    #: Where an anonymous client asks whether an object is held: "v3" (Lemmy's
    #: /api/v3/resolve_object) or "alpha" (PieFed's /api/alpha/resolve_object).
    api: str


#: PieFed's numbers (app/utils.py can_create_post, app/models.py created_very_recently).
NEW_ACCOUNT_POSTS = 3
NEW_ACCOUNT_AGE = timedelta(days=1)
#: Language.code's length in PieFed (app/models.py).
LANGUAGE_COLUMN = 5

PROFILES = {
    "lemmy": Profile(
        software="lemmy",
        version="0.19.9",
        refusal_status=400,
        fetch_unknown_parents=True,
        new_account_limit=False,
        long_language_fails=False,
        check_date=True,
        keeps_published=True,
        duplicate_window=timedelta.max,
        announces_to_author_instance=True,
        signs_host_without_port=False,
        api="v3",
    ),
    "piefed": Profile(
        software="piefed",
        version="1.6.18",
        refusal_status=200,
        fetch_unknown_parents=False,
        new_account_limit=True,
        long_language_fails=True,
        check_date=False,
        keeps_published=False,
        duplicate_window=timedelta(seconds=90),
        announces_to_author_instance=False,
        signs_host_without_port=True,
        api="alpha",
    ),
}


def profile(software: str) -> Profile:
    try:
        return PROFILES[software]
    except KeyError:
        raise ValueError(f"the sandbox knows {' and '.join(SOFTWARE)}, not {software!r}") from None


def _lemmy_codes() -> list[str]:
    """Lemmy's language codes in the order of its migration 2022-06-21-123144_language-tags.

    Read as data from the list vendored beside mirror.vocab: the sandbox
    shares no code with the sender.
    """
    table = Path(__file__).resolve().parents[1] / "vocab" / "languages.tsv"
    return [
        line.split("\t", 1)[0]
        for line in table.read_text("utf-8").splitlines()
        if line and not line.startswith("#")
    ]


#: Lemmy's language ids: the migration's order gives them 1, 2, ... (0 is "und").
LEMMY_LANGUAGES = {
    code: number for number, code in enumerate((c for c in _lemmy_codes() if c != "und"), 1)
}


def lemmy_language_id(identifier: str | None) -> int:
    """Lemmy's language_id for an identifier; 0 (undetermined) for none or an unknown one."""
    return LEMMY_LANGUAGES.get(identifier or "", 0)

"""Lemmy's checks on what it receives, as plain functions (shared/docs/lemmy-receive-rules.md).

Each failure raises Refused with the error code Lemmy would answer in its
400 JSON (`{"error": code, "message": ...}`). The checks only one profile
makes (PieFed's, see profiles.py) are plain functions here too, at the end;
ServerError stands for what makes a server answer 500.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from mirror.sandbox.profiles import LEMMY_LANGUAGES

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
POST_TYPES = ("Page", "Article", "Note", "Video", "Event")
MAX_TITLE = 200
MAX_ID = 255
MAX_DEPTH = 50


class Refused(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class ServerError(Exception):
    """The server fails while handling the activity: it answers 500."""


def domain(url: str) -> str:
    """Lemmy compares `Url::domain()`: the host without the port."""
    return (urlsplit(url).hostname or "").lower()


def _urls(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise Refused("invalid_addressing", f"to/cc must be URLs, got {value!r}")


def _url(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise Refused("parse_error", f"{what} must be a URL, got {value!r}")
    if len(value) > MAX_ID:
        raise Refused("parse_error", f"{what} is longer than {MAX_ID} characters")
    return value


def check_envelope(
    activity: Any, own_server: str, *, needs_context: bool = True
) -> tuple[str, str, str]:
    """(id, type, actor) of an activity that passes the common checks.

    An activity an Announce carries needs no `@context` (``needs_context=False``):
    Lemmy parses it as part of the Announce, and sends it without one itself
    (assets/lemmy/activities/community/announce_create_page.json).
    """
    if not isinstance(activity, dict):
        raise Refused("parse_error", "the body is not a JSON object")
    if needs_context and "@context" not in activity:
        raise Refused("parse_error", "no @context")
    activity_id = _url(activity.get("id"), "id")
    actor = _url(activity.get("actor"), "actor")
    kind = activity.get("type")
    if not isinstance(kind, str):
        raise Refused("parse_error", "no type")
    if domain(activity_id) != domain(actor):
        raise Refused("invalid_domain", "the activity id and the actor are on different hosts")
    # Lemmy compares domains without the port; on loopback every server is
    # 127.0.0.1, so the sandbox tells itself apart by host and port.
    if urlsplit(activity_id).netloc.lower() == own_server:
        raise Refused("invalid_domain", "the activity id is on this instance")
    return activity_id, kind, actor


def check_public(document: dict[str, Any], what: str) -> None:
    addressed = _urls(document.get("to")) + _urls(document.get("cc"))
    if PUBLIC not in addressed:
        raise Refused(
            "not_public", f"{what} is not addressed to {PUBLIC} (Lemmy compares the full IRI)"
        )


def check_object(activity: dict[str, Any], actor: str, community: str) -> dict[str, Any]:
    """The embedded object of a Create or Update, checked; returns it."""
    for key in ("to", "cc"):
        if key not in activity:
            raise Refused("parse_error", f"the activity has no `{key}` (Lemmy requires both)")
    check_public(activity, "the activity")
    obj = activity.get("object")
    if not isinstance(obj, dict):
        raise Refused("parse_error", "the object must be embedded")
    object_id = _url(obj.get("id"), "object id")
    if domain(object_id) != domain(actor):
        raise Refused("invalid_domain", "the object id is not on the actor's host")
    attributed = obj.get("attributedTo")
    if not isinstance(attributed, str):
        raise Refused("parse_error", "attributedTo must be a single URL")
    if attributed != actor:
        raise Refused("invalid_domain", "attributedTo is not the activity's actor")
    audience = obj.get("audience", activity.get("audience"))
    if audience is not None and audience != community:
        raise Refused("invalid_community", f"audience {audience!r} is not this community")
    addressed = _urls(obj.get("to")) + _urls(obj.get("cc")) + _urls(activity.get("to"))
    if audience is None and community not in addressed:
        raise Refused("invalid_community", "the object is not addressed to this community")
    check_public(obj, "the object")
    media_type = obj.get("mediaType")
    if media_type not in (None, "text/html", "text/markdown"):
        raise Refused("parse_error", f"mediaType {media_type!r} is not text/html or text/markdown")
    language = obj.get("language")
    if language is not None:
        if not (
            isinstance(language, dict)
            and isinstance(language.get("identifier"), str)
            and isinstance(language.get("name"), str)
        ):
            raise Refused("parse_error", "language must be {identifier, name}")
        identifier = language["identifier"]
        if len(identifier) > 5:
            # PieFed keeps the identifier in a varchar(5) and answers 500 past it.
            raise Refused(
                "parse_error",
                f"language identifier {identifier!r} is longer than 5 characters",
            )
        if identifier != "und" and identifier not in LEMMY_LANGUAGES:
            raise Refused(
                "parse_error",
                f"language identifier {identifier!r} is not a code of Lemmy's language list",
            )
    for key in ("published", "updated"):
        if key in obj:
            try:
                value = datetime.fromisoformat(str(obj[key]).replace("Z", "+00:00"))
            except ValueError:
                raise Refused("parse_error", f"{key} is not an RFC 3339 time") from None
            if value.tzinfo is None:
                raise Refused("parse_error", f"{key} has no offset")
    return obj


def check_post(obj: dict[str, Any], *, takes_note_posts: bool) -> None:
    kind = obj.get("type")
    if kind not in POST_TYPES:
        raise Refused("parse_error", f"{kind!r} is not a post type")
    if kind == "Note" and not takes_note_posts:
        raise Refused("parse_error", "a Note without inReplyTo is not a post here (Lemmy 1.0)")
    if obj.get("inReplyTo") is not None:
        raise Refused("parse_error", "a post must not have inReplyTo")
    name = obj.get("name")
    if name is None and not obj.get("content"):
        raise Refused("parse_error", "a post needs a name or content")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_TITLE):
        raise Refused("parse_error", f"the title is longer than {MAX_TITLE} characters")


def check_comment(obj: dict[str, Any]) -> str:
    """The parent URL of a comment that passes."""
    if obj.get("type") != "Note":
        raise Refused("parse_error", "a comment is a Note")
    if not isinstance(obj.get("content"), str):
        raise Refused("parse_error", "a comment needs content")
    if "to" not in obj:
        raise Refused("parse_error", "a comment needs `to`")
    return _url(obj.get("inReplyTo"), "inReplyTo")


def check_delete(activity: dict[str, Any], actor: str) -> str:
    if "summary" in activity:
        raise Refused("parse_error", "a Delete with a summary is a moderator's removal")
    check_public(activity, "the Delete")
    target = activity.get("object")
    object_id = target.get("id") if isinstance(target, dict) else target
    object_id = _url(object_id, "the deleted object")
    if domain(object_id) != domain(actor):
        raise Refused("no_id_match", "only the author's instance may delete an object")
    return object_id


def object_id(activity: dict[str, Any]) -> str | None:
    """The id of the object an activity is about (embedded or referenced), if it has one."""
    target = activity.get("object")
    if isinstance(target, dict):
        target = target.get("id")
    return target if isinstance(target, str) else None


# -- checks of one profile (profiles.py says whose) --------------------------------


def refuse_unknown_parent(parent_id: str) -> None:
    """PieFed looks for a reply's parent in its own tables only, and logs this when it fails."""
    raise Refused("unknown_parent", f"Unable to find parent post/comment: {parent_id}")


def check_language_column(obj: dict[str, Any], length: int) -> None:
    """PieFed stores `language.identifier` in a varchar(length): a longer one fails the INSERT."""
    language = obj.get("language")
    identifier = language.get("identifier") if isinstance(language, dict) else None
    if isinstance(identifier, str) and len(identifier) > length:
        raise ServerError(
            "(psycopg2.errors.StringDataRightTruncation) value too long for type "
            f"character varying({length}): language.identifier {identifier!r}"
        )


def account_created(document: dict[str, Any], first_seen: datetime) -> datetime | None:
    """When PieFed says a remote account was created: its `published`, else when it first saw it.

    PieFed passes the string to a `timestamp without time zone` column
    (app/activitypub/util.py actor_json_to_model), and PostgreSQL ignores an
    offset in such a literal: the wall-clock time is taken as UTC. A `published`
    of null leaves `created` empty, and then the limit never applies
    (User.created_very_recently tests `self.created and ...`).
    """
    if "published" not in document:
        return first_seen
    published = document["published"]
    if published is None:
        return None
    try:
        value = datetime.fromisoformat(str(published).replace("Z", "+00:00"))
    except ValueError:
        return first_seen
    return value.replace(tzinfo=UTC)


def check_new_account(
    *,
    created: datetime | None,
    posts: int,
    now: datetime,
    max_posts: int,
    age: timedelta,
) -> None:
    """PieFed's limit: an account younger than `age` may not post once it holds more than max_posts.

    app/utils.py can_create_post checks `user.created_very_recently() and
    user.post_count > 3` before the moderator exemption; post_count counts the
    account's posts on the instance (not deleted ones: a Delete decrements it).
    """
    if created is not None and created > now - age and posts > max_posts:
        raise Refused(
            "new_account_limit",
            "User cannot create post in Community: the account was created "
            f"{created.isoformat()} (less than {age} before {now.isoformat()}) "
            f"and has {posts} posts here (more than {max_posts})",
        )

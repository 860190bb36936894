"""What a response means for a delivery: delivered, retry later, or failed for good.

Lemmy answers 400 for nearly every failure, transient ones included, and
says which in its JSON ``error`` field, so 400s are classified by that field
(the rules: shared/docs/lemmy-receive-rules.md §2 and §6.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from mirror.delivery.backoff import parse_retry_after

#: Kept of a refusal's body for the operator.
REASON_BYTES = 500
#: Lemmy errors that pass: retry like a 5xx.
LEMMY_TRANSIENT = frozenset(
    {"inbox_timeout", "rate_limit_error", "federation_disabled_by_strict_allow_list"}
)
#: Lemmy refusing the sending actor itself (a site or community ban).
LEMMY_BANNED = frozenset(
    {
        "site_ban",
        "person_is_banned_from_site",
        "person_is_banned_from_community",
        "banned_from_community",
        "instance_is_blocked",
        "domain_blocked",
    }
)
#: Lemmy's catch-all (fetch failures, library errors): worth a few retries only.
LEMMY_GENERIC = frozenset({"unknown"})
#: A repeated activity id: Lemmy 0.19 (unique violation) and 1.0 (couldnt_create).
DUPLICATE_MARKERS = ("duplicate key", "received_activity", "couldnt_create")
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 406, 409, 410, 411, 413, 414, 415, 422})


#: Why a request was never sent (Attempt.unsent).
REFUSED = "refused"
UNSIGNED = "unsigned"


@dataclass(frozen=True, slots=True)
class Delivered:
    note: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str
    retry_after: datetime | None = None
    #: Network errors and 5xx count against the host's circuit breaker.
    host_failure: bool = False
    #: Lemmy's generic error: counted, and retried only a few times.
    generic: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str
    #: The receiver refuses our actor itself (a ban): its other deliveries there would fail too.
    actor_refused: bool = False


Outcome = Delivered | Retry | Failed


def classify(
    status: int | None,
    headers: Mapping[str, str],
    body: str,
    *,
    now: datetime,
    repeat: bool,
    generic_errors: int,
    max_generic_errors: int,
    network_error: str | None = None,
    unsent: str | None = None,
) -> Outcome:
    """Classify one attempt; ``repeat`` means it re-sent the id of an earlier attempt
    that may have arrived (cut short by a crash, timed out, or answered with a
    transient error).

    ``unsent`` says why a request was never sent: REFUSED (a malformed inbox
    URL, an address the guard refuses: no retry would change that) or
    UNSIGNED (signing failed here: retried, but not the host's failure).
    """
    if status is None:
        if unsent == REFUSED:
            return Failed(f"not sent: {network_error}")
        return Retry(network_error or "no response", host_failure=unsent is None)
    excerpt = body[:REASON_BYTES]
    if 200 <= status < 300:
        return Delivered()
    if status in (429, 503):
        return Retry(
            f"HTTP {status}",
            retry_after=parse_retry_after(headers.get("Retry-After"), now),
            host_failure=status == 503,
        )
    if status == 408:
        return Retry("HTTP 408 request timeout")
    if status >= 500:
        return Retry(f"HTTP {status}: {excerpt}", host_failure=True)
    error, message = _lemmy_error(body)
    if status == 400 and error is not None:
        text = f"{error} {message}".lower()
        if any(marker in text for marker in DUPLICATE_MARKERS):
            # Only a repeat of an earlier attempt can have reached the server
            # before: then the duplicate proves one arrived. Whether it was
            # stored is what confirmation asks (mirror.publish.confirm).
            if repeat:
                return Delivered("the server already had this activity")
            return Failed(f"HTTP 400 duplicate activity: {excerpt}")
        if error in LEMMY_TRANSIENT:
            return Retry(f"HTTP 400 {error}")
        if error in LEMMY_BANNED:
            return Failed(f"HTTP 400 {error}: {excerpt}", actor_refused=True)
        if error in LEMMY_GENERIC:
            if generic_errors + 1 < max_generic_errors:
                return Retry(f"HTTP 400 {error}: {message}"[:REASON_BYTES], generic=True)
            return Failed(f"HTTP 400 {error} ({generic_errors + 1} times): {excerpt}")
        return Failed(f"HTTP 400 {error}: {excerpt}")
    if status in PERMANENT_STATUSES or 400 <= status < 500:
        return Failed(f"HTTP {status}: {excerpt}")
    return Failed(f"HTTP {status} (redirects are not followed): {excerpt}")


def _lemmy_error(body: str) -> tuple[str | None, str]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return None, ""
    message = data.get("message")
    return data["error"], message if isinstance(message, str) else ""

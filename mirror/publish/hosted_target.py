"""A backfill into one of our own hosted communities: the target is our Group.

No network: the Group is ours. Its publications are stored by definition
(the Group holds what it announces); what its followers' servers receive
goes through the queue as `Announce`s (mirror.publish.backfill).
"""

from __future__ import annotations

import sqlalchemy as sa

from mirror.federation.communities import get_hosted
from mirror.publish.target import HANDLE, Target, TargetError
from mirror.vocab.ids import Urls


def hosted_name(urls: Urls, spec: str) -> str | None:
    """The community name when ``spec`` names a Group on our own host, else None."""
    text = spec.strip()
    if text.startswith(("http://", "https://")):
        return urls.community_of(text.rstrip("/"))
    match = HANDLE.match(text)
    if match and match.group(2).lower() == urls.host.lower():
        return match.group(1)
    return None


def hosted_target(conn: sa.Connection, urls: Urls, spec: str) -> tuple[Target, str] | None:
    """(the Target, its source) when ``spec`` names one of our hosted communities.

    None when it names another server; TargetError when it names our host
    but no community hosted here.
    """
    name = hosted_name(urls, spec)
    if name is None:
        return None
    hosted = get_hosted(conn, name)
    if hosted is None:
        raise TargetError(
            f"{spec}: no community called {name!r} is hosted here (`mirror communities list`)"
        )
    if not hosted.active:
        raise TargetError(f"{spec}: {name} was unhosted; `mirror communities host` brings it back")
    community = urls.community(name)
    target = Target(
        id=community.id,
        name=name,
        inbox=community.inbox,
        followers=community.followers,
        posting_restricted_to_mods=False,
        software=None,
        version=None,
        hosted=name,
    )
    return target, hosted.source

"""Hosted communities: declared, listed and unhosted; each one's Group document.

A hosted community is a Group actor (a local_actor of kind "group", with
its own key) plus its hosted_community row. Users and Groups share one
namespace, as on Lemmy: a name is refused when the bot, a puppet, another
Group or a puppet still to be made (an author of the reconstruction) has it.
A name is permanent once followed: the followers' servers keep it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.config import HostedEntry, Settings
from mirror.db.base import table_of
from mirror.db.models import Activity, Author, Follower, HostedCommunity, LocalActor
from mirror.delivery.enqueue import host_of
from mirror.errors import MirrorError
from mirror.federation.actors import GROUP, create_actor, get_actor, puppet_username
from mirror.federation.community_names import MAX_LENGTH, candidates, check_name
from mirror.federation.community_sources import UNKNOWN, Source, resolve
from mirror.signatures import MasterKey
from mirror.vocab.group import archive_summary, build_group
from mirror.vocab.ids import Urls

TABLE = table_of(HostedCommunity)
#: A title is a display name, not a description: a longer one is cut.
MAX_TITLE = 100


class HostingError(MirrorError):
    """A host or unhost that cannot be done as asked."""


@dataclass(frozen=True, slots=True)
class Hosted:
    name: str
    source: str
    source_url: str | None
    title: str
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None

    @property
    def active(self) -> bool:
        return self.retired_at is None

    @property
    def source_label(self) -> str:
        """How pages and the summary name the source: !name@instance, a title, or unknown."""
        if self.source == UNKNOWN:
            return "posts of no known community"
        return f"!{self.source}" if self.source_url and "/c/" in self.source_url else self.source


def _row(found: Any) -> Hosted:
    return Hosted(**{k: found[k] for k in Hosted.__slots__})


def get_hosted(conn: sa.Connection, name: str) -> Hosted | None:
    found = conn.execute(sa.select(TABLE).where(TABLE.c.name == name)).mappings().first()
    return _row(found) if found else None


def list_hosted(conn: sa.Connection) -> list[Hosted]:
    return [_row(r) for r in conn.execute(sa.select(TABLE).order_by(TABLE.c.name)).mappings()]


def follower_counts(conn: sa.Connection, name: str) -> tuple[int, int, int]:
    """(active followers, their servers, follows ever received) of a Group."""
    rows = conn.execute(
        sa.select(Follower.state, Follower.shared_inbox, Follower.inbox).where(
            Follower.local_username == name
        )
    ).all()
    active = [r for r in rows if r.state == "active"]
    servers = {host_of(r.shared_inbox or r.inbox) for r in active if r.shared_inbox or r.inbox}
    return len(active), len(servers), len(rows)


@dataclass(slots=True)
class Outcome:
    hosted: Hosted
    #: created, updated, revived or unchanged.
    action: str
    notes: list[str] = field(default_factory=list)


def host(
    conn: sa.Connection,
    *,
    source: str,
    name: str | None = None,
    title: str | None = None,
    master_key: MasterKey,
    now: datetime,
    bot_username: str,
) -> Outcome:
    """Host ``source`` as a Group (or update the one that hosts it); says what it did."""
    src = resolve(conn, source)
    same_source = conn.execute(sa.select(TABLE.c.name).where(TABLE.c.source == src.spec)).scalar()
    notes: list[str] = []
    if name is not None:
        check_name(name)
        if same_source is not None and same_source != name:
            raise HostingError(
                f"{src.label} is already hosted as {same_source}; a source is hosted once"
            )
        existing = get_hosted(conn, name)
        if existing is not None and existing.source != src.spec:
            raise HostingError(
                f"community name {name!r} already hosts {existing.source_label}"
                + ("" if existing.active else " (unhosted, but its name stays reserved for it)")
            )
        if existing is None:
            _check_free(conn, name, bot_username)
    elif same_source is not None:
        name = same_source
    else:
        name = _default_name(conn, src, bot_username)
        notes.append(
            f"name {name}: made from {src.label}"
            + (" (its title)" if not src.name else "")
            + "; pass --name to choose another (it is permanent once followed)"
        )
    chosen_title = _title(title, src)
    current = get_hosted(conn, name)
    if current is None:
        create_actor(conn, username=name, kind=GROUP, master_key=master_key, now=now)
        conn.execute(
            sa.insert(TABLE),
            [
                {
                    "name": name,
                    "source": src.spec,
                    "source_url": src.original_url,
                    "title": chosen_title,
                    "created_at": now,
                    "updated_at": now,
                    "retired_at": None,
                }
            ],
        )
        hosted = get_hosted(conn, name)
        assert hosted is not None
        return Outcome(hosted, "created", notes)
    changes: dict[str, Any] = {}
    if title is not None and chosen_title != current.title:
        changes["title"] = chosen_title
    if current.source_url != src.original_url:
        changes["source_url"] = src.original_url
    if not current.active:
        changes["retired_at"] = None
    if not changes:
        return Outcome(current, "unchanged", notes)
    conn.execute(sa.update(TABLE).where(TABLE.c.name == name).values(updated_at=now, **changes))
    hosted = get_hosted(conn, name)
    assert hosted is not None
    return Outcome(hosted, "revived" if not current.active else "updated", notes)


def _title(title: str | None, src: Source) -> str:
    text = " ".join((title or "").split())
    if not text:
        if src.spec == UNKNOWN:
            text = "Archive: posts of no known community"
        else:
            text = f"Archive of {src.title or src.name or src.spec}"
    return text[:MAX_TITLE]


def _taken(conn: sa.Connection, bot_username: str) -> tuple[set[str], set[str]]:
    """(names of actors that exist, names puppets of the reconstruction's authors would get)."""
    actors = set(conn.scalars(sa.select(LocalActor.username)))
    actors.add(bot_username)
    puppets = {puppet_username(h) for h in conn.scalars(sa.select(Author.handle))}
    return actors, puppets


def _check_free(conn: sa.Connection, name: str, bot_username: str) -> None:
    actors, puppets = _taken(conn, bot_username)
    if name in actors:
        actor = get_actor(conn, name)
        what = "the bot" if name == bot_username else f"a {actor.kind if actor else 'local'} actor"
        raise HostingError(
            f"community name {name!r} is taken by {what}: users and communities share one namespace"
        )
    if name in puppets:
        raise HostingError(
            f"community name {name!r} is the puppet name of an author in the reconstruction: "
            "users and communities share one namespace; choose another --name"
        )


def _default_name(conn: sa.Connection, src: Source, bot_username: str) -> str:
    if src.spec == UNKNOWN:
        options = ["unknown_community"]
    else:
        options = candidates(name=src.name, instance=src.instance, title=src.title)
    actors, puppets = _taken(conn, bot_username)
    for option in options:
        if option not in actors and option not in puppets:
            return option
    first = options[0]
    for number in range(2, 100):
        suffix = f"_{number}"
        option = first[: MAX_LENGTH - len(suffix)] + suffix
        if option not in actors and option not in puppets:
            return option
    raise HostingError(f"no free default name for {src.label}; pass --name")


def unhost(conn: sa.Connection, name: str, *, force: bool, now: datetime) -> str:
    """Stop hosting a community; returns what was done (a sentence).

    Never followed: the Group and its key are deleted and the name is free
    again. Followed: refused without ``force``; with it the Group answers
    410 Gone, and its key, followers and name are kept (hosting the same
    source again under that name brings it back).
    """
    hosted = get_hosted(conn, name)
    if hosted is None:
        raise HostingError(f"no hosted community is called {name!r} (`mirror communities list`)")
    active, servers, ever = follower_counts(conn, name)
    published = conn.scalar(
        sa.select(sa.func.count()).select_from(Activity).where(Activity.actor == name)
    )
    if not ever and not published:
        conn.execute(sa.delete(TABLE).where(TABLE.c.name == name))
        conn.execute(sa.delete(table_of(LocalActor)).where(LocalActor.username == name))
        return f"{name}: unhosted; no one had followed it, so its name is free again"
    if not hosted.active:
        return f"{name}: already unhosted (its name stays reserved for {hosted.source_label})"
    if not force:
        raise HostingError(
            f"{name} has been followed ({active} followers now, on {servers} servers): its name "
            "is permanent. `unhost --force` stops serving it (410 Gone) and keeps its key, "
            "followers and name for the same source"
        )
    conn.execute(
        sa.update(TABLE).where(TABLE.c.name == name).values(retired_at=now, updated_at=now)
    )
    return (
        f"{name}: unhosted; it answers 410 Gone now. Its name stays reserved for "
        f"{hosted.source_label}: `mirror communities host {hosted.source} --name {name}` "
        "brings it back to its followers"
    )


def apply_config(
    conn: sa.Connection,
    entries: Iterable[HostedEntry],
    *,
    master_key: MasterKey,
    now: datetime,
    bot_username: str,
) -> list[str]:
    """Host what the config's [[hosted]] tables name (added or updated, never removed)."""
    lines = []
    named = set()
    for number, entry in enumerate(entries, start=1):
        try:
            outcome = host(
                conn,
                source=entry.source,
                name=entry.name or None,
                title=entry.title or None,
                master_key=master_key,
                now=now,
                bot_username=bot_username,
            )
        except MirrorError as exc:
            raise HostingError(f"[[hosted]] #{number} ({entry.source!r}): {exc}") from None
        named.add(outcome.hosted.name)
        if outcome.action != "unchanged":
            lines.append(f"[[hosted]] {outcome.hosted.name}: {outcome.action}")
        lines.extend(f"[[hosted]] {note}" for note in outcome.notes)
    for hosted in list_hosted(conn):
        if hosted.active and hosted.name not in named:
            lines.append(
                f"{hosted.name} is hosted but not in [[hosted]]: it stays hosted "
                "(`mirror communities unhost` removes it)"
            )
    return lines


def group_document(
    settings: Settings, urls: Urls, actor: LocalActor, hosted: Hosted
) -> dict[str, Any]:
    """The Group as served."""
    summary_html, summary_markdown = archive_summary(
        label=hosted.source_label,
        original_url=hosted.source_url,
        operator=settings.instance.operator,
    )
    return build_group(
        urls,
        name=hosted.name,
        title=hosted.title,
        summary_html=summary_html,
        summary_markdown=summary_markdown,
        public_key_pem=actor.public_key_pem,
        published=actor.created_at,
        icon_url=settings.instance.icon_url,
    )

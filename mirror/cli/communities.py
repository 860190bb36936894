"""`mirror communities host|list|unhost`: the communities hosted as read-only Groups."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from mirror.cli.wiring import EXIT_OK, federation_for
from mirror.config import Settings
from mirror.db.session import write_transaction


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The `communities` command and its actions (called by parser.py)."""
    communities = commands.add_parser(
        "communities",
        parents=[common],
        help="host reconstructed communities as read-only Lemmy-compatible communities",
    )
    actions = communities.add_subparsers(
        dest="communities_command", required=True, metavar="ACTION"
    )
    host = actions.add_parser(
        "host", help="host a reconstructed community (or update the one hosting it)"
    )
    host.add_argument(
        "source",
        metavar="SOURCE",
        help="a reconstructed community: name@instance, its title, "
        "or unknown (posts of no known community)",
    )
    host.add_argument(
        "--name",
        help="its name here, 3-20 characters of a-z, 0-9, _ (default: made from SOURCE, "
        "e.g. socialism_lemmy_ml); permanent once followed",
    )
    host.add_argument("--title", help="its display name (default: Archive of TITLE)")
    host.set_defaults(handler=cmd_communities_host)
    listing = actions.add_parser("list", help="hosted communities and their followers")
    listing.set_defaults(handler=cmd_communities_list)
    status = actions.add_parser(
        "status", help="each community's followers per server, and each server's backlog"
    )
    status.add_argument("name", metavar="NAME", nargs="?", help="one community (default: all)")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(handler=cmd_communities_status)
    unhost = actions.add_parser(
        "unhost", help="stop hosting one (refused once followed, unless --force)"
    )
    unhost.add_argument("name", metavar="NAME", help="its name here, as `communities list` shows")
    unhost.add_argument(
        "--force",
        action="store_true",
        help="unhost a followed community: it answers 410 Gone; its name stays reserved",
    )
    unhost.set_defaults(handler=cmd_communities_unhost)


def cmd_communities_host(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.federation.communities import host

    federation = federation_for(settings)
    with write_transaction(federation.engine) as conn:
        outcome = host(
            conn,
            source=args.source,
            name=args.name,
            title=args.title,
            master_key=federation.master_key,
            now=federation.clock.now(),
            bot_username=settings.instance.username,
        )
    hosted = outcome.hosted
    for note in outcome.notes:
        print(note)
    group = federation.urls.community(hosted.name).id
    print(f"{hosted.name}: {outcome.action}, {hosted.title!r}, showing {hosted.source_label}")
    print(f"  follow it as !{hosted.name}@{federation.urls.host}  ({group})")
    return EXIT_OK


def cmd_communities_list(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.federation.communities import follower_counts, list_hosted

    federation = federation_for(settings)
    with federation.engine.connect() as conn:
        rows = [(h, follower_counts(conn, h.name)) for h in list_hosted(conn)]
    if not rows:
        print("no hosted communities (`mirror communities host SOURCE` adds one)")
        return EXIT_OK
    table = Table(title=f"communities hosted on {federation.urls.host}")
    for column in ("name", "title", "source", "followers", "servers", "state"):
        table.add_column(column)
    for hosted, (active, servers, _) in rows:
        table.add_row(
            hosted.name,
            hosted.title,
            hosted.source_label,
            str(active),
            str(servers),
            "hosted" if hosted.active else "unhosted (410, name reserved)",
        )
    Console(highlight=False, width=200).print(table)
    return EXIT_OK


def cmd_communities_unhost(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.federation.communities import unhost

    federation = federation_for(settings)
    with write_transaction(federation.engine) as conn:
        said = unhost(conn, args.name, force=args.force, now=federation.clock.now())
    print(said)
    return EXIT_OK


def cmd_communities_status(args: argparse.Namespace, settings: Settings) -> int:
    import json
    import sys

    from mirror.federation import backlog
    from mirror.federation.communities import HostingError, get_hosted, list_hosted

    federation = federation_for(settings)
    with federation.engine.connect() as conn:
        if args.name:
            one = get_hosted(conn, args.name)
            if one is None:
                raise HostingError(
                    f"no hosted community is called {args.name!r} (`mirror communities list`)"
                )
            hosted = [one]
        else:
            hosted = list_hosted(conn)
        report = [{"name": h.name, "servers": backlog.status(conn, h.name)} for h in hosted]
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not report:
        print("no hosted communities (`mirror communities host SOURCE` adds one)")
        return EXIT_OK
    console = Console(highlight=False, width=200)
    for community in report:
        table = Table(title=f"!{community['name']}@{federation.urls.host}")
        columns = ("server", "followers", "backlog", "delivered", "to send", "failed", "state")
        for column in (*columns, "stored there"):
            table.add_column(column)
        for server in community["servers"]:
            b = server["backlog"]
            if b is None:
                table.add_row(server["host"], str(server["followers"]), "-", "", "", "", "", "")
                continue
            state = (
                "stopped (no follower left)"
                if b["stopped_at"]
                else ("sending" if b["pending"] else "done")
            )
            table.add_row(
                server["host"],
                str(server["followers"]),
                f"{b['items']} since {b['started_at'][:16]}",
                str(b["delivered"]),
                str(b["pending"]),
                str(b["failed"]),
                state,
                _stored(server["copies"]),
            )
        if not community["servers"]:
            console.print(f"!{community['name']}@{federation.urls.host}: no followers yet")
            continue
        console.print(table)
    return EXIT_OK


def _stored(copies: dict[str, Any]) -> str:
    """What the server's lookups say it holds: confirmed / missing / awaiting lookup."""
    if copies["unverifiable"] and not copies["states"]:
        return f"unverifiable: {copies['unverifiable']}"
    said = [
        f"{copies['confirmed']} confirmed",
        f"{copies['missing']} missing",
        f"{copies['awaiting_lookup']} awaiting lookup",
    ]
    others = {
        state: n
        for state, n in copies["states"].items()
        if state not in ("confirmed", "missing", "sent")
    }
    said += [f"{n} {state}" for state, n in others.items()]
    if copies["unverifiable"]:
        said.append(f"now unverifiable: {copies['unverifiable']}")
    return ", ".join(said)

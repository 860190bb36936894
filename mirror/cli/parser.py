"""The ``mirror`` command's arguments: every command, its options and help, its handler."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from mirror import __version__
from mirror.cli import communities as communities_cli
from mirror.cli.backfill import cmd_backfill, cmd_demo, cmd_retract, cmd_runs, cmd_sandbox
from mirror.cli.delivery import cmd_cancel, cmd_hosts_revive, cmd_prune, cmd_retry, cmd_status
from mirror.cli.ingest import cmd_ingest, cmd_inspect
from mirror.cli.service import (
    cmd_config_allow_host,
    cmd_config_check,
    cmd_db_current,
    cmd_db_upgrade,
    cmd_doctor,
    cmd_followers_change,
    cmd_followers_list,
    cmd_init,
    cmd_serve,
    cmd_worker,
)
from mirror.reconstruct import DumpKind


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirror", description="Mirror archived Lemmy discussions back into the fediverse."
    )
    parser.add_argument("--version", action="version", version=f"fedimirror {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $MIRROR_CONFIG, ./mirror.toml)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text for people (default), or one JSON object per line for log collectors",
    )
    # `--config` is accepted after the command too (`mirror init --config PATH`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="write a config, create the database and the bot's key")
    init.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="where to write the config (default: $MIRROR_CONFIG, else ./mirror.toml)",
    )
    init.add_argument(
        "--base-url",
        required=True,
        metavar="URL",
        help="public base URL, e.g. https://mirror.example.org (permanent); a loopback "
        "one (http://127.0.0.1:PORT) is also where `serve` listens",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing config file")
    init.set_defaults(handler=cmd_init)

    serve = commands.add_parser("serve", parents=[common], help="run the ActivityPub service")
    serve.add_argument(
        "--listen", metavar="HOST:PORT", help="listen address (default: [server].listen)"
    )
    serve.set_defaults(handler=cmd_serve)

    followers = commands.add_parser(
        "followers", parents=[common], help="list, remove or block followers"
    )
    follower_commands = followers.add_subparsers(
        dest="followers_command", required=True, metavar="ACTION"
    )
    listing = follower_commands.add_parser("list", help="list followers of the bot")
    listing.add_argument("--all", action="store_true", help="include removed and blocked ones")
    listing.set_defaults(handler=cmd_followers_list)
    for action, help_text in (
        ("remove", "stop sending to a follower (they are told with a Reject)"),
        ("block", "remove a follower and refuse their future Follows"),
    ):
        sub = follower_commands.add_parser(action, help=help_text)
        sub.add_argument("actor", metavar="ACTOR_URL", help="the follower's actor id")
        sub.set_defaults(
            handler=cmd_followers_change, state={"remove": "removed", "block": "blocked"}[action]
        )

    communities_cli.add_parser(commands, common)

    worker = commands.add_parser(
        "worker", parents=[common], help="deliver queued activities (no HTTP service)"
    )
    worker.set_defaults(handler=cmd_worker)

    status = commands.add_parser("status", parents=[common], help="delivery queue and host health")
    status.add_argument("--json", action="store_true", help="one JSON document (default: text)")
    status.set_defaults(handler=cmd_status)

    retry = commands.add_parser(
        "retry", parents=[common], help="queue parked (and with --failed, failed) deliveries again"
    )
    retry.add_argument("--failed", action="store_true", help="failed and cancelled deliveries too")
    retry.add_argument("--host", help="only deliveries to this host")
    retry.add_argument(
        "--unconfirmed",
        action="store_true",
        help="publish again, now, what the targets have not confirmed "
        "(missing, refused, failed, parked, waiting)",
    )
    retry.add_argument(
        "--run", type=int, metavar="RUN", help="with --unconfirmed: only this run's items"
    )
    retry.set_defaults(handler=cmd_retry)

    cancel = commands.add_parser("cancel", parents=[common], help="give up outstanding deliveries")
    cancel.add_argument("--host", help="every outstanding delivery to this host")
    cancel.add_argument("--activity", metavar="ID", help="every delivery of this activity")
    cancel.add_argument("--all", action="store_true", help="every outstanding delivery")
    cancel.set_defaults(handler=cmd_cancel)

    hosts = commands.add_parser("hosts", parents=[common], help="destination server health")
    host_commands = hosts.add_subparsers(dest="hosts_command", required=True, metavar="ACTION")
    revive = host_commands.add_parser(
        "revive", help="a dead host is back: close its breaker and unpark its deliveries"
    )
    revive.add_argument("host", metavar="HOST", help="as `mirror status` names it (host[:port])")
    revive.set_defaults(handler=cmd_hosts_revive)

    prune = commands.add_parser(
        "prune", parents=[common], help="delete old delivered rows and inbox records"
    )
    prune.add_argument(
        "--older-than",
        type=int,
        metavar="DAYS",
        help="retention in days (default [delivery].retention_days)",
    )
    prune.set_defaults(handler=cmd_prune)

    backfill = commands.add_parser(
        "backfill", parents=[common], help="publish the reconstruction into a community"
    )
    backfill.add_argument(
        "--to", required=True, metavar="COMMUNITY", help="!name@host, name@host or its URL"
    )
    backfill.add_argument(
        "--from",
        dest="source",
        default="all",
        metavar="SOURCE",
        help="a reconstructed community (name@instance or its title), all, or unknown "
        "(default: all)",
    )
    backfill.add_argument(
        "--since",
        type=_iso_datetime,
        metavar="DATE",
        help="only posts published since then: ISO 8601, e.g. 2025-07-01 or "
        "2025-07-01T12:00:00Z (UTC unless an offset is given; default: all)",
    )
    backfill.add_argument("--limit", type=int, metavar="N", help="at most N posts (default: all)")
    backfill.add_argument(
        "--rate",
        type=float,
        metavar="POSTS_PER_MINUTE",
        help="pace (default [backfill].rate_per_minute; 0: unpaced)",
    )
    backfill.add_argument(
        "--attribution",
        choices=("bot", "puppets"),
        help="who new objects are attributed to (default [backfill].attribution); "
        "an object keeps the author it was first published with",
    )
    backfill.add_argument("--wait", action="store_true", help="stay and show progress")
    backfill.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    backfill.set_defaults(handler=cmd_backfill)

    runs = commands.add_parser(
        "runs", parents=[common], help="list, pause, resume or cancel backfill runs"
    )
    runs.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "pause", "resume", "cancel"],
        help="list the runs and what is not confirmed (default); pause a run's deliveries "
        "(in-flight ones finish), resume them, or cancel what it has not sent",
    )
    runs.add_argument(
        "run", nargs="?", type=int, metavar="RUN", help="the run's number (pause, resume, cancel)"
    )
    runs.add_argument("--json", action="store_true", help="one JSON document (list)")
    runs.set_defaults(handler=cmd_runs)

    retract = commands.add_parser(
        "retract", parents=[common], help="send Deletes for mirrored items (they answer 410)"
    )
    retract.add_argument("item", nargs="?", metavar="ITEM", help="a reconstructed item id")
    retract.add_argument("--run", type=int, metavar="RUN", help="everything a run published")
    retract.set_defaults(handler=cmd_retract)

    sandbox = commands.add_parser(
        "sandbox", parents=[common], help="run a local Lemmy-compatible instance to backfill into"
    )
    sandbox.add_argument(
        "--listen",
        default="127.0.0.1:8790",
        metavar="HOST:PORT",
        help="where it listens (default: 127.0.0.1:8790)",
    )
    sandbox.add_argument(
        "--community",
        default="sandbox",
        metavar="NAME",
        help="its community: backfill --to NAME@HOST:PORT (default: sandbox)",
    )
    sandbox.add_argument(
        "--software",
        default="lemmy",
        metavar="lemmy|piefed[/VERSION]",
        help="which server it behaves like (default lemmy 0.19.9; lemmy/1.0.0 refuses Note "
        "posts; piefed answers 200 to refusals, refuses replies to unknown parents and "
        "limits new accounts)",
    )
    sandbox.add_argument(
        "--refusals",
        type=int,
        choices=(200, 400),
        help="status of a refused activity (default: the profile's, lemmy 400, piefed 200)",
    )
    sandbox.set_defaults(handler=cmd_sandbox)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="sandbox + service + samples: a whole backfill on this machine",
    )
    demo.add_argument(
        "--exit", action="store_true", help="stop when the backfill is done (default: Ctrl-C)"
    )
    demo.set_defaults(handler=cmd_demo)

    config = commands.add_parser(
        "config", parents=[common], help="check the configuration, allow a local host"
    )
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check", help="validate the config and print the effective values (secrets masked)"
    )
    check.set_defaults(handler=cmd_config_check)
    allow_host = config_commands.add_parser(
        "allow-host",
        help="let every command reach this non-public HOST:PORT (a local sandbox): "
        "adds it to [federation].allow_hosts in the config file",
    )
    allow_host.add_argument("entry", metavar="HOST:PORT", help="e.g. 127.0.0.1:8790")
    allow_host.set_defaults(handler=cmd_config_allow_host)

    doctor = commands.add_parser(
        "doctor", parents=[common], help="check config, database, keys, public URL, clock, targets"
    )
    doctor.set_defaults(handler=cmd_doctor)

    ingest = commands.add_parser(
        "ingest", parents=[common], help="reconstruct posts and comments from page dumps"
    )
    ingest.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="dump files or folders")
    ingest.add_argument(
        "--samples", action="store_true", help="ingest the sample dumps shipped with fedimirror"
    )
    ingest.add_argument(
        "--format",
        choices=[k.value for k in DumpKind],
        help="read every file as this page kind instead of detecting it",
    )
    ingest.add_argument(
        "--captured-at",
        type=_iso_datetime,
        metavar="ISO8601",
        help="when the pages were captured (default: each file's modification time)",
    )
    ingest.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="list every file and what became of it (and log more, as `mirror -v` does)",
    )
    ingest.set_defaults(handler=cmd_ingest)

    inspect = commands.add_parser(
        "inspect", parents=[common], help="print the reconstructed posts and comments"
    )
    inspect.add_argument("--json", action="store_true", help="one JSON document (default: text)")
    inspect.set_defaults(handler=cmd_inspect)

    db = commands.add_parser("db", parents=[common], help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="upgrade the schema (default: to head)")
    upgrade.add_argument(
        "revision", nargs="?", default="head", help="an alembic revision (default: head)"
    )
    upgrade.set_defaults(handler=cmd_db_upgrade)
    current = db_commands.add_parser("current", help="print the schema revision")
    current.set_defaults(handler=cmd_db_current)
    _in_operators_order(commands)
    _describe(parser)
    return parser


#: `mirror --help` lists the commands in the order an operator meets them.
OPERATORS_PATH = (
    "init",
    "ingest",
    "inspect",
    "serve",
    "backfill",
    "runs",
    "status",
    "communities",
    "followers",
    "doctor",
    "config",
    "retry",
    "cancel",
    "hosts",
    "prune",
    "retract",
    "worker",
    "sandbox",
    "demo",
    "db",
)


def _in_operators_order(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    # argparse lists them as they were added; the declarations stay grouped by area.
    listed = commands._choices_actions
    listed.sort(key=lambda a: OPERATORS_PATH.index(a.dest) if a.dest in OPERATORS_PATH else 99)


def _describe(parser: argparse.ArgumentParser) -> None:
    """Each command's --help opens with the line `mirror --help` shows for it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                sub.description = sub.description or helps.get(name)
                _describe(sub)


def _iso_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2025-07-28T12:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

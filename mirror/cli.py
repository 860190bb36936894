"""The ``mirror`` command: parses arguments and wires the parts together.

Exit codes: 0 success, 1 a runtime failure or a refused input file,
2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from mirror import __version__
from mirror.clock import SystemClock
from mirror.config import DEFAULT_CONFIG_NAME, Settings, load_settings
from mirror.db import migrate
from mirror.db.session import make_engine, write_transaction
from mirror.errors import ConfigError, MirrorError
from mirror.reconstruct import DumpKind

log = logging.getLogger("mirror")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(MirrorError):
    """Arguments that parse but make no sense together."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # A daemon reports what it does; one-shot commands only what goes wrong.
    _setup_logging(
        args.verbose + (1 if args.command in ("serve", "worker", "sandbox") else 0),
        args.log_format,
    )
    try:
        # `init` writes the config file, so it cannot read it first.
        settings = load_settings(args.config) if args.command != "init" else Settings()
        return int(args.handler(args, settings))
    except (ConfigError, UsageError) as exc:
        print(f"mirror: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MirrorError as exc:
        print(f"mirror: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        log.debug("database error", exc_info=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"mirror: error: database: {reason}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`mirror inspect | head`): not an error.
        sys.stdout = None  # type: ignore[assignment]
        return EXIT_OK


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
        help="text for people, or one JSON object per line for log collectors",
    )
    # `--config` is accepted after the command too (`mirror init --config PATH`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init", parents=[common], help="write a config, create the database and the bot's key"
    )
    init.add_argument(
        "--base-url",
        required=True,
        metavar="URL",
        help="public base URL, e.g. https://mirror.example.org",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing config file")
    init.set_defaults(handler=cmd_init)

    serve = commands.add_parser("serve", parents=[common], help="run the ActivityPub service")
    serve.add_argument("--listen", metavar="HOST:PORT", help="listen address (default from config)")
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
        sub.add_argument("actor", metavar="ACTOR_URL")
        sub.set_defaults(
            handler=cmd_followers_change, state={"remove": "removed", "block": "blocked"}[action]
        )

    worker = commands.add_parser(
        "worker", parents=[common], help="deliver queued activities (no HTTP service)"
    )
    worker.set_defaults(handler=cmd_worker)

    status = commands.add_parser("status", parents=[common], help="delivery queue and host health")
    status.add_argument("--json", action="store_true", help="one JSON document")
    status.set_defaults(handler=cmd_status)

    retry = commands.add_parser(
        "retry", parents=[common], help="queue parked (and with --failed, failed) deliveries again"
    )
    retry.add_argument("--failed", action="store_true", help="failed and cancelled deliveries too")
    retry.add_argument("--host", help="only deliveries to this host")
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
    revive.add_argument("host", metavar="HOST")
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
        help="a reconstructed community (name@instance or its title), all, or unknown",
    )
    backfill.add_argument(
        "--since", type=_iso_datetime, metavar="DATE", help="only posts published since"
    )
    backfill.add_argument("--limit", type=int, metavar="N", help="at most N posts")
    backfill.add_argument(
        "--rate",
        type=float,
        metavar="POSTS_PER_MINUTE",
        help="pace (default [backfill].rate_per_minute; 0: unpaced)",
    )
    backfill.add_argument("--wait", action="store_true", help="stay and show progress")
    backfill.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    backfill.set_defaults(handler=cmd_backfill)

    runs = commands.add_parser("runs", parents=[common], help="list, pause, resume or cancel runs")
    runs.add_argument(
        "action", nargs="?", default="list", choices=["list", "pause", "resume", "cancel"]
    )
    runs.add_argument("run", nargs="?", type=int, metavar="RUN")
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
    sandbox.add_argument("--listen", default="127.0.0.1:8790", metavar="HOST:PORT")
    sandbox.add_argument("--community", default="sandbox", metavar="NAME")
    sandbox.add_argument(
        "--software",
        default="lemmy/0.19.9",
        metavar="NAME/VERSION",
        help="what its NodeInfo says (lemmy/1.0.0 refuses Note posts)",
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

    config = commands.add_parser("config", parents=[common], help="check the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check", help="validate the config and print the effective values (secrets masked)"
    )
    check.set_defaults(handler=cmd_config_check)

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
    ingest.set_defaults(handler=cmd_ingest)

    inspect = commands.add_parser(
        "inspect", parents=[common], help="print the reconstructed posts and comments"
    )
    inspect.add_argument("--json", action="store_true", help="one JSON document")
    inspect.set_defaults(handler=cmd_inspect)

    db = commands.add_parser("db", parents=[common], help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="upgrade the schema (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    current = db_commands.add_parser("current", help="print the schema revision")
    current.set_defaults(handler=cmd_db_current)
    return parser


def _iso_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2025-07-28T12:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _setup_logging(verbosity: int, fmt: str = "text") -> None:
    from mirror.observe.logs import setup_logging

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    setup_logging(level, fmt)


def _engine(settings: Settings, *, upgrade: bool = True) -> Engine:
    engine = make_engine(settings.database_url, echo=settings.database.echo)
    if upgrade:
        migrate.ensure_schema(engine)
    return engine


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.ingest.files import ingest_paths, sample_files

    paths: list[Path] = list(args.paths)
    if args.samples:
        paths.extend(sample_files())
    if not paths:
        raise UsageError("ingest needs at least one PATH, or --samples")
    engine = _engine(settings)
    kind = DumpKind(args.format) if args.format else None
    reports = ingest_paths(
        engine, paths, clock=SystemClock(), kind=kind, captured_at=args.captured_at
    )
    if not reports:
        raise UsageError("no dump files found under " + ", ".join(str(p) for p in paths))

    console = Console(highlight=False)
    table = Table(title="ingest", show_lines=False)
    for column in ("file", "kind", "posts", "comments", "merged", "errors"):
        table.add_column(
            column, justify="right" if column in ("posts", "comments", "merged") else "left"
        )
    for report in reports:
        table.add_row(
            str(report.path),
            report.kind or "-",
            str(report.posts),
            str(report.comments),
            str(report.merged),
            report.error or "",
        )
    console.print(table)
    failed = [r for r in reports if not r.ok]
    for report in failed:
        print(f"mirror: refused {report.path}: {report.error}", file=sys.stderr)
    _queue_updates(settings, engine)
    return EXIT_FAILED if failed else EXIT_OK


def _queue_updates(settings: Settings, engine: Engine) -> None:
    """Mirrored items whose reconstruction the ingest changed get Updates."""
    from mirror.publish.refresh import has_publications, queue_updates

    if not settings.instance.base_url or not has_publications(engine):
        return
    federation = _federation(settings)
    for report in queue_updates(federation):
        print(
            f"run {report.run_id}: {report.updated} changed mirrored items get an Update "
            f"to {report.target}; `mirror serve` or `mirror worker` delivers them"
        )


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.inspection import build_document, render_threads

    document = build_document(_engine(settings))
    if args.json:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    counts = {k: len(document[k]) for k in ("communities", "authors", "posts", "comments")}
    print(
        f"{counts['posts']} posts, {counts['comments']} comments, "
        f"{counts['authors']} authors, {counts['communities']} communities"
    )
    print()
    for line in render_threads(document):
        print(line)
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings, upgrade=False)
    migrate.upgrade(engine, args.revision)
    print(f"database at {migrate.current_revision(engine)}")
    return EXIT_OK


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings, upgrade=False)
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind head {head}"
    print(f"{current or 'empty'} ({state})")
    return EXIT_OK


# -- identity and service ---------------------------------------------------

INIT_REMINDER = "run `mirror init --base-url URL` first"


def _config_target(args: argparse.Namespace) -> Path:
    """Where `init` writes: --config, else $MIRROR_CONFIG, else ./mirror.toml."""
    named = getattr(args, "config", None) or os.environ.get("MIRROR_CONFIG")
    return Path(named).expanduser() if named else Path(DEFAULT_CONFIG_NAME)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.federation.actors import BOT, create_actor, get_actor
    from mirror.signatures import MasterKey, create_master_key_file, load_master_key
    from mirror.vocab.ids import Urls

    urls = Urls.from_base_url(args.base_url)
    target = _config_target(args)
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; pass --force to overwrite it (keys are never replaced)")
    template = (resources.files("mirror") / "mirror.example.toml").read_text()
    written = template.replace('base_url = ""', f'base_url = "{urls.base}"', 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(written)
    settings = load_settings(target)

    if os.environ.get("MIRROR_MASTER_KEY"):
        master_key: MasterKey = load_master_key(os.environ, settings.master_key_path)
        key_note = "master key: from MIRROR_MASTER_KEY"
    elif settings.master_key_path.exists():
        master_key = load_master_key(os.environ, settings.master_key_path)
        key_note = f"master key: kept {settings.master_key_path}"
    else:
        master_key = create_master_key_file(settings.master_key_path)
        key_note = f"master key: created {settings.master_key_path} (mode 0600)"

    engine = _engine(settings)
    username = settings.instance.username
    with write_transaction(engine) as conn:
        existing = get_actor(conn, username)
        if existing is None:
            create_actor(
                conn, username=username, kind=BOT, master_key=master_key, now=SystemClock().now()
            )
            actor_note = f"bot @{username}: created with a new RSA-2048 key"
        else:
            # Verify the master key opens the stored key, but never replace it.
            master_key.decrypt(existing.private_key)
            actor_note = f"bot @{username}: exists; its key was kept"
    print(f"config: wrote {target}")
    print(key_note)
    print(actor_note)
    print(f"actor: {urls.actor(username)}  (acct:{username}@{urls.host})")
    print(
        "warning: the base URL is permanent: every id published is built on it, and "
        "followers and Lemmy instances keep those ids."
    )
    if urls.base.startswith("http://") or ":" in urls.host:
        print(
            "warning: a real Lemmy federates only with https on the default port; "
            f"{urls.base} is fine for local tests only."
        )
    print(
        "back up the master key (and the database): without it the private keys in the "
        "database cannot be decrypted."
    )
    return EXIT_OK


def _federation(settings: Settings):  # type: ignore[no-untyped-def]
    """The wired federation service, or a clear message saying to run init."""
    from mirror.federation.service import Federation
    from mirror.signatures import MasterKeyError, load_master_key

    if not settings.instance.base_url:
        raise UsageError(f"no [instance].base_url configured: {INIT_REMINDER}")
    try:
        master_key = load_master_key(os.environ, settings.master_key_path)
    except MasterKeyError as exc:
        raise UsageError(f"{exc}") from None
    engine = _engine(settings)
    federation = Federation(
        settings=settings, engine=engine, clock=SystemClock(), master_key=master_key
    )
    with engine.connect() as conn:
        from mirror.federation.actors import get_actor

        if get_actor(conn, settings.instance.username) is None:
            raise UsageError(
                f"the bot @{settings.instance.username} does not exist: {INIT_REMINDER}"
            )
    return federation


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.server.app import parse_listen, serve

    federation = _federation(settings)
    try:
        host, port = parse_listen(args.listen or settings.server.listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    asyncio.run(serve(federation, host=host, port=port))
    return EXIT_OK


def cmd_followers_list(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.federation.follows import ACTIVE, BLOCKED, REMOVED, list_followers

    federation = _federation(settings)
    states = (ACTIVE, REMOVED, BLOCKED) if args.all else (ACTIVE,)
    with federation.engine.connect() as conn:
        rows = list_followers(conn, settings.instance.username, states=states)
    console = Console(highlight=False)
    table = Table(title=f"followers of @{settings.instance.username}")
    for column in ("actor", "state", "since", "inbox"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.actor_url,
            row.state,
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            row.shared_inbox or row.inbox,
        )
    console.print(table)
    return EXIT_OK


def cmd_followers_change(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.federation.actors import get_actor
    from mirror.federation.follows import reject_follower, set_state

    federation = _federation(settings)
    username = settings.instance.username
    with write_transaction(federation.engine) as conn:
        previous = set_state(conn, username, args.actor, args.state, federation.clock.now())
        told = False
        if previous is not None and previous.state == "active":
            bot = get_actor(conn, username)
            assert bot is not None
            told = reject_follower(conn, federation, bot, previous)
    if previous is None and args.state != "blocked":
        raise MirrorError(f"{args.actor} does not follow @{username}")
    note = " (a Reject is queued; `serve` or `worker` delivers it)" if told else ""
    print(f"{args.actor}: {args.state}{note}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.server.app import run_worker

    asyncio.run(run_worker(_federation(settings)))
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    engine = _engine(settings)
    with engine.connect() as conn:
        report = operate.status(conn, SystemClock().now())
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console(highlight=False)
    states = report["deliveries"]["by_state"]
    console.print("deliveries: " + ", ".join(f"{name} {count}" for name, count in states.items()))
    oldest = report["deliveries"]["oldest_due_at"]
    if oldest:
        console.print(
            f"oldest due: {oldest} ({report['deliveries']['oldest_due_age_s']:.0f} s ago)"
        )
    console.print(f"followers: {report['followers']}")
    if report["hosts"]:
        table = Table(title="hosts")
        for column in ("host", "breaker", "dead", "outstanding", "last success", "last error"):
            table.add_column(column)
        for host in report["hosts"]:
            table.add_row(
                host["host"],
                host["breaker"],
                "dead" if host["dead"] else "",
                str(host["outstanding"]),
                host["last_success_at"] or "-",
                (host["last_error"] or "")[:60],
            )
        console.print(table)
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    engine = _engine(settings)
    with write_transaction(engine) as conn:
        count = operate.retry(conn, now=SystemClock().now(), failed=args.failed, host=args.host)
    print(f"{count} deliveries queued again")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    if not (args.host or args.activity or args.all):
        raise UsageError("cancel needs --host HOST, --activity ID or --all")
    engine = _engine(settings)
    with write_transaction(engine) as conn:
        count = operate.cancel(
            conn, now=SystemClock().now(), host=args.host, activity=args.activity
        )
    print(f"{count} deliveries cancelled")
    return EXIT_OK


def cmd_hosts_revive(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    engine = _engine(settings)
    with write_transaction(engine) as conn:
        count = operate.revive(conn, args.host, SystemClock().now())
    print(f"{args.host}: revived; {count} parked deliveries queued again")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.delivery import operate

    days = args.older_than if args.older_than is not None else settings.delivery.retention_days
    engine = _engine(settings)
    with write_transaction(engine) as conn:
        deliveries, received = operate.prune(conn, now=SystemClock().now(), retention_days=days)
    print(f"pruned {deliveries} delivered rows and {received} inbox records older than {days} days")
    return EXIT_OK


# -- backfill ---------------------------------------------------------------------


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.publish.start import start_backfill

    federation = _federation(settings)

    async def start():  # type: ignore[no-untyped-def]
        try:
            return await start_backfill(
                federation,
                to=args.to,
                source=args.source,
                since=args.since,
                limit=args.limit,
                rate=args.rate,
                dry_run=args.dry_run,
            )
        finally:
            await federation.close()

    target, report = asyncio.run(start())
    planned = report.planned
    print(
        f"target: {target.id} ({target.software or 'unknown software'} "
        f"{target.version or ''}, posts as {target.post_type(settings.backfill.post_type)}); "
        f"inbox {target.inbox}"
    )
    print(
        f"plan: {planned['posts']} posts, {planned['comments']} comments, "
        f"{planned['followers_only']} comments of unknown posts (followers only)"
    )
    for reason, count in report.left_out.items():
        print(f"left out: {count} ({reason})")
    if args.dry_run:
        print("dry run: nothing was queued. The first activities:")
        json.dump(report.first, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    print(
        f"run {report.run_id}: {report.queued} new, {report.updated} updated, "
        f"{report.requeued} queued again, {report.unchanged} already there, "
        f"{report.deleted} deleted; {report.deliveries} deliveries queued"
    )
    if not args.wait:
        print("`mirror serve` or `mirror worker` delivers them; `mirror runs` shows progress")
        return EXIT_OK
    return _wait_for_run(federation.engine, report.run_id)


def _wait_for_run(engine: Engine, run_id: int) -> int:
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from mirror.publish.runs import progress

    def read() -> dict:  # type: ignore[type-arg]
        with engine.connect() as conn:
            return progress(conn, run_id, SystemClock().now())

    report = read()
    if sys.stderr.isatty():
        columns = (
            TextColumn(f"run {run_id}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} delivered"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        started, first = time.monotonic(), report["done"]
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("deliver", total=report["total"], rate="")
            while not report["finished"]:
                elapsed = time.monotonic() - started
                rate = (report["done"] - first) / elapsed if elapsed > 0 else 0
                bar.update(task, completed=report["done"], rate=f"{rate:.1f}/s")
                time.sleep(0.5)
                report = read()
            bar.update(task, completed=report["done"])
    else:
        last = 0.0
        while not report["finished"]:
            if time.monotonic() - last >= 10:
                log.warning("run %d: %d/%d delivered", run_id, report["done"], report["total"])
                last = time.monotonic()
            time.sleep(0.5)
            report = read()
    states = report["by_state"]
    print(
        f"run {run_id} done: {states['delivered']} delivered, {states['failed']} failed, "
        f"{states['cancelled']} cancelled, {states['parked']} parked"
    )
    return EXIT_OK if states["failed"] == 0 else EXIT_FAILED


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.publish import runs

    engine = _engine(settings)
    now = SystemClock().now()
    if args.action == "list":
        with engine.connect() as conn:
            listing = runs.list_runs(conn, now)
        if args.json:
            json.dump(listing, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return EXIT_OK
        table = Table(title="backfill runs")
        for column in ("run", "target", "state", "delivered", "outstanding", "failed", "parked"):
            table.add_column(column)
        for run in listing:
            table.add_row(
                str(run["id"]),
                run["target"],
                run["state"],
                f"{run['done']}/{run['total']}",
                str(run["outstanding"]),
                str(run["by_state"]["failed"]),
                str(run["by_state"]["parked"]),
            )
        Console(highlight=False).print(table)
        return EXIT_OK
    if args.run is None:
        raise UsageError(f"runs {args.action} needs a RUN number")
    action = {"pause": runs.pause, "resume": runs.resume, "cancel": runs.cancel}[args.action]
    with write_transaction(engine) as conn:
        count = action(conn, args.run, now)
    verb = {"pause": "held", "resume": "released", "cancel": "cancelled"}[args.action]
    print(f"run {args.run}: {count} deliveries {verb}")
    return EXIT_OK


def cmd_retract(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.publish.backfill import PUBLICATIONS, delete_publications
    from mirror.vocab.ids import Urls

    if (args.item is None) == (args.run is None):
        raise UsageError("retract needs an ITEM or --run RUN")
    if not settings.instance.base_url:
        raise UsageError(f"no [instance].base_url configured: {INIT_REMINDER}")
    engine = _engine(settings)
    where = PUBLICATIONS.c.item_id == args.item if args.item else PUBLICATIONS.c.run_id == args.run
    with write_transaction(engine) as conn:
        count = delete_publications(
            conn,
            urls=Urls.from_base_url(settings.instance.base_url),
            now=SystemClock().now(),
            where=where,
            inbox_for={},
        )
    if count == 0:
        raise MirrorError(f"nothing mirrored matches {args.item or f'run {args.run}'}")
    print(f"{count} objects: Deletes queued; their URLs answer 410 now")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.sandbox.serve import run_sandbox
    from mirror.server.app import parse_listen

    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    software, _, version = args.software.partition("/")
    asyncio.run(
        run_sandbox(
            host=host, port=port, community=args.community, software=software, version=version
        )
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.demo import run_demo

    return asyncio.run(run_demo(settings, exit_when_done=args.exit))


# -- operating ----------------------------------------------------------------------

SECRET_KEYS = {("admin", "token"), ("metrics", "token")}


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.engine import make_url

    from mirror.config import iter_options
    from mirror.vocab.ids import Urls

    settings.backfill.check()
    if settings.instance.base_url:
        Urls.from_base_url(settings.instance.base_url)
    print(f"# effective configuration ({settings.source or 'no config file: defaults'})")
    section = None
    for name, key, value in iter_options(settings):
        if name != section:
            print(f"\n[{name}]")
            section = name
        if (name, key) in SECRET_KEYS and value:
            value = "********"
        elif (name, key) == ("database", "url") and value:
            value = make_url(value).render_as_string(hide_password=True)
        print(f"{key} = {json.dumps(value)}")
    print(f"\n# database: {make_url(settings.database_url).render_as_string(hide_password=True)}")
    key_source = (
        "MIRROR_MASTER_KEY" if os.environ.get("MIRROR_MASTER_KEY") else settings.master_key_path
    )
    print(f"# master key: {key_source}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.doctor import run_doctor

    checks = run_doctor(settings)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK

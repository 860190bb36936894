"""Setting up and running the service: init, db, serve, worker, followers,
config check and allow-host, doctor.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
from dataclasses import replace
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mirror.cli.wiring import EXIT_FAILED, EXIT_OK, UsageError, engine_for, federation_for
from mirror.clock import SystemClock
from mirror.config import (
    DEFAULT_CONFIG_NAME,
    ServerSettings,
    Settings,
    find_config_file,
    load_settings,
)
from mirror.db import migrate
from mirror.db.session import write_transaction
from mirror.errors import ConfigError, MirrorError


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    engine = engine_for(settings, upgrade=False)
    migrate.upgrade(engine, args.revision)
    print(f"database at {migrate.current_revision(engine)}")
    return EXIT_OK


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    engine = engine_for(settings, upgrade=False)
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind head {head}"
    print(f"{current or 'empty'} ({state})")
    return EXIT_OK


def _config_target(args: argparse.Namespace) -> Path:
    """Where `init` writes: --config, else $MIRROR_CONFIG, else ./mirror.toml."""
    named = getattr(args, "config", None) or os.environ.get("MIRROR_CONFIG")
    return Path(named).expanduser() if named else Path(DEFAULT_CONFIG_NAME)


def _filled_template(base_url: str, metrics_token: str, listen: str | None) -> str:
    """The example config with the base URL, a metrics token and the listen address filled in."""
    template = (resources.files("mirror") / "mirror.example.toml").read_text()
    written = template.replace('base_url = ""', f'base_url = "{base_url}"', 1)
    if listen is not None:
        head, section, rest = written.partition("\n[server]\n")
        assert section, "the example config has a [server] section"
        default = f'listen = "{ServerSettings().listen}"'
        assert default in rest, "the example config shows [server].listen's default"
        written = head + section + rest.replace(default, f'listen = "{listen}"', 1)
    # The token of [metrics] only ([admin] has one too): /metrics is off on the
    # public listener without it, and a scraper is given this one.
    head, section, rest = written.partition("\n[metrics]\n")
    assert section, "the example config has a [metrics] section"
    rest = rest.replace('token = ""', f'token = "{metrics_token}"', 1)
    return head + section + rest


def private_dir(path: Path) -> str | None:
    """Create ``path`` (mode 0700), or tighten an existing one; a note when it changed."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask; say it exactly
        return f"data dir: created {path} (mode 0700)"
    mode = path.stat().st_mode & 0o777
    if mode & 0o077 == 0:
        return None
    try:
        path.chmod(0o700)
    except OSError as exc:
        return f"warning: {path} is mode {mode:o}; chmod 700 it ({exc.strerror})"
    return f"data dir: {path} was mode {mode:o}, now 0700"


def _write_private(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` as mode 0600 (an existing file is tightened too)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        file.write(text)


def _settings_of(text: str, target: Path) -> Settings:
    """The settings ``text`` gives once written to ``target`` (the environment still applies).

    Read before anything is written, so a refused database leaves the
    existing config (and key) as they were.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".mirror-init-", suffix=".toml", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write the config into {target.parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        return replace(load_settings(name), source=target)
    finally:
        os.unlink(name)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.db.instance import check_base_url, claim_base_url, where
    from mirror.federation.actors import BOT, create_actor, get_actor
    from mirror.net.listen import local_listen
    from mirror.signatures import MasterKey, create_master_key_file, load_master_key
    from mirror.vocab.ids import Urls

    urls = Urls.from_base_url(args.base_url)
    target = _config_target(args)
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; pass --force to overwrite it (keys are never replaced)")
    # A loopback base URL is reached directly: listen right there. Any other
    # is a TLS proxy's, which forwards to the default listen address.
    listen = local_listen(urls.base)
    written = _filled_template(urls.base, secrets.token_urlsafe(32), listen)
    settings = _settings_of(written, target)

    notes = []
    uses_data_dir = not settings.database.url or (
        not os.environ.get("MIRROR_MASTER_KEY") and not settings.paths.master_key_file
    )
    if uses_data_dir:
        notes.append(private_dir(settings.data_dir))
    engine = engine_for(settings)
    database = where(engine)
    with engine.connect() as conn:
        # Before the config or a key is written: another instance's database
        # stays as it was, and so does the config that pointed at it.
        check_base_url(conn, urls.base, database)
    _write_private(target, written)

    if os.environ.get("MIRROR_MASTER_KEY"):
        master_key: MasterKey = load_master_key(os.environ, settings.master_key_path)
        key_note = "master key: from MIRROR_MASTER_KEY"
    elif settings.master_key_path.exists():
        master_key = load_master_key(os.environ, settings.master_key_path)
        key_note = f"master key: kept {settings.master_key_path}"
    else:
        master_key = create_master_key_file(settings.master_key_path)
        key_note = f"master key: created {settings.master_key_path} (mode 0600)"

    username = settings.instance.username
    now = SystemClock().now()
    with write_transaction(engine) as conn:
        claim_base_url(conn, urls.base, database, now)
        existing = get_actor(conn, username)
        if existing is None:
            create_actor(conn, username=username, kind=BOT, master_key=master_key, now=now)
            actor_note = f"bot @{username}: created with a new RSA-2048 key"
        else:
            # Verify the master key opens the stored key, but never replace it.
            master_key.decrypt(existing.private_key)
            actor_note = f"bot @{username}: exists; its key was kept"
    print(f"config: wrote {target.resolve()} (mode 0600, with a random [metrics].token)")
    for note in notes:
        if note:
            print(note)
    print(f"database: {database}")
    if listen is not None:
        print(f"listen: {listen}, where the base URL points")
    else:
        print(
            f"listen: {settings.server.listen}; your TLS proxy for {urls.base} forwards there "
            "([server].listen)"
        )
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
    mirror = "mirror" if _found_by_default(target) else f"mirror --config {target.resolve()}"
    print(f"next: `{mirror} ingest DUMPS/` (or `--samples`), then `{mirror} serve`")
    return EXIT_OK


def _found_by_default(config: Path) -> bool:
    """Whether commands run from here read ``config`` without being told (--config)."""
    try:
        found = find_config_file(None, os.environ)
    except ConfigError:  # $MIRROR_CONFIG names a file that is not there
        return False
    return found is not None and found.resolve() == config.resolve()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from mirror.server.app import parse_listen, serve

    try:
        host, port = parse_listen(args.listen or settings.server.listen)
    except ValueError as exc:
        raise UsageError(f"{'--listen' if args.listen else '[server].listen'}: {exc}") from None
    federation = federation_for(settings)
    asyncio.run(serve(federation, host=host, port=port))
    return EXIT_OK


def cmd_followers_list(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.federation.follows import ACTIVE, BLOCKED, REMOVED, list_followers

    federation = federation_for(settings)
    states = (ACTIVE, REMOVED, BLOCKED) if args.all else (ACTIVE,)
    with federation.engine.connect() as conn:
        rows = list_followers(conn, settings.instance.username, states=states)
    if not rows:
        bot = f"@{settings.instance.username}@{federation.urls.host}"
        print(
            f"nobody follows or followed {bot}"
            if args.all
            else f"nobody follows {bot} (--all includes removed and blocked followers)"
        )
        return EXIT_OK
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

    federation = federation_for(settings)
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

    asyncio.run(run_worker(federation_for(settings)))
    return EXIT_OK


SECRET_KEYS = {("admin", "token"), ("metrics", "token")}


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.engine import make_url

    from mirror.config import iter_options
    from mirror.server.routes.access import trusted_networks
    from mirror.server.routes.health import check_metrics_listen
    from mirror.server.tls import server_ssl_context
    from mirror.vocab.ids import Urls

    settings.backfill.check()
    check_metrics_listen(settings)
    server_ssl_context(settings)
    trusted_networks(settings)
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
    for entry in settings.hosted:
        print(f"\n[[hosted]]\nsource = {json.dumps(entry.source)}")
        if entry.name:
            print(f"name = {json.dumps(entry.name)}")
        if entry.title:
            print(f"title = {json.dumps(entry.title)}")
    print(f"\n# database: {make_url(settings.database_url).render_as_string(hide_password=True)}")
    key_source = (
        "MIRROR_MASTER_KEY" if os.environ.get("MIRROR_MASTER_KEY") else settings.master_key_path
    )
    print(f"# master key: {key_source}")
    return EXIT_OK


def cmd_config_allow_host(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.config import parse_host_port
    from mirror.config_edit import add_to_list
    from mirror.net.guard import host_port

    try:
        entry = host_port(*parse_host_port(args.entry))
    except ValueError as exc:
        raise UsageError(f"allow-host: {exc}") from None
    if settings.source is None:
        raise UsageError(
            "allow-host: there is no config file to edit (none at --config, $MIRROR_CONFIG "
            "or ./mirror.toml): run `mirror init --base-url URL` first"
        )
    added = add_to_list(settings.source, "federation", "allow_hosts", entry)
    state = "now holds" if added else "already holds"
    print(
        f"{settings.source}: [federation].allow_hosts {state} {entry}; every command reads "
        "it, a running `mirror serve` or `mirror worker` too"
    )
    if os.environ.get("MIRROR_FEDERATION__ALLOW_HOSTS") is not None:
        print("note: MIRROR_FEDERATION__ALLOW_HOSTS is set, and replaces what the file says")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.doctor import run_doctor

    checks = run_doctor(settings)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK

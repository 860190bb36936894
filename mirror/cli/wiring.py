"""What the command handlers share: exit codes, UsageError, and the database
and the federation service built from the settings.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from mirror.clock import SystemClock
from mirror.config import Settings
from mirror.db import migrate
from mirror.db.instance import check_base_url, claim_base_url, where
from mirror.db.session import make_engine, write_transaction
from mirror.errors import MirrorError

if TYPE_CHECKING:
    from mirror.federation.service import Federation

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class UsageError(MirrorError):
    """Arguments that parse but make no sense together."""


INIT_REMINDER = "run `mirror init --base-url URL` first"


def engine_for(settings: Settings, *, upgrade: bool = True) -> Engine:
    engine = make_engine(settings.database_url, echo=settings.database.echo)
    if upgrade:
        migrate.ensure_schema(engine)
    return engine


def federation_for(settings: Settings) -> Federation:
    """The wired federation service, or a clear message saying to run init."""
    from mirror.federation.service import Federation
    from mirror.signatures import MasterKeyError, load_master_key

    if not settings.instance.base_url:
        raise UsageError(f"no [instance].base_url configured: {INIT_REMINDER}")
    try:
        master_key = load_master_key(os.environ, settings.master_key_path)
    except MasterKeyError as exc:
        raise UsageError(f"{exc}") from None
    engine = engine_for(settings)
    federation = Federation(
        settings=settings, engine=engine, clock=SystemClock(), master_key=master_key
    )
    database = where(engine)
    with engine.connect() as conn:
        from mirror.federation.actors import get_actor

        # Before anything is served or sent: ids minted on another base URL
        # over this database's would be a second identity on the first's data.
        recorded = check_base_url(conn, federation.urls.base, database)
        if get_actor(conn, settings.instance.username) is None:
            raise UsageError(
                f"the bot @{settings.instance.username} does not exist: {INIT_REMINDER}"
            )
    if recorded is None:
        # A database initialised before the base URL was recorded (and that
        # published nothing, or the migration would have found it): adopt it.
        with write_transaction(engine) as conn:
            claim_base_url(conn, federation.urls.base, database, federation.clock.now())
    return federation

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
from mirror.db.session import make_engine
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
    with engine.connect() as conn:
        from mirror.federation.actors import get_actor

        if get_actor(conn, settings.instance.username) is None:
            raise UsageError(
                f"the bot @{settings.instance.username} does not exist: {INIT_REMINDER}"
            )
    return federation

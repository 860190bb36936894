"""Schema upgrades with alembic, serialised across processes.

The schema is created only by the migrations. Every command that opens the
database upgrades it first when needed, under a lock so that several
processes starting at once do not race: a PostgreSQL advisory lock, or a
lock file beside a SQLite database.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from mirror.db.session import is_sqlite
from mirror.errors import DatabaseError

log = logging.getLogger(__name__)

#: pg_advisory_lock key for schema upgrades ("fedimirror" folded to 63 bits).
MIGRATION_LOCK_KEY = 0x6665_6469_6D69_7272


def migrations_dir() -> Path:
    """The alembic script directory, installed as ``mirror.migrations``."""
    spec = importlib.util.find_spec("mirror.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    # Running from a source checkout that was never installed.
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(f"cannot reach the database {_where(engine)}: {_reason(exc)}") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` under the cross-process lock."""
    with _migration_lock(engine) as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, revision)
        except CommandError as exc:
            current = MigrationContext.configure(connection).get_current_revision()
            raise DatabaseError(
                f"cannot upgrade the database {_where(engine)} from revision {current} "
                f"to {revision}: {str(exc).splitlines()[0]} (was it made by a newer fedimirror?)"
            ) from None
        connection.commit()


def ensure_schema(engine: Engine) -> None:
    """Upgrade to head if the database is behind (the automatic first run)."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    log.info("upgrading the database schema to %s", head)
    upgrade(engine)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[sa.Connection]:
    if is_sqlite(engine):
        database = engine.url.database
        lock_path = Path(f"{database}.lock") if database and database != ":memory:" else None
        with contextlib.ExitStack() as stack:
            if lock_path is not None:
                # Mode 0600 like the database beside it (the data dir is private).
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                handle = stack.enter_context(os.fdopen(fd, "a+"))
                fcntl.flock(handle, fcntl.LOCK_EX)
            with engine.connect() as connection:
                yield connection
        return
    try:
        connection_cm = engine.connect()
        connection = connection_cm.__enter__()
    except OperationalError as exc:
        raise DatabaseError(f"cannot reach the database {_where(engine)}: {_reason(exc)}") from None
    try:
        # Session-level lock, held across alembic's own transactions.
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            yield connection
        finally:
            connection.rollback()
            connection.execute(
                sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            connection.commit()
    finally:
        connection_cm.__exit__(None, None, None)


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

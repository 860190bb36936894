"""The base URL a database belongs to: recorded once, then every config is checked against it.

Every id the service publishes is built on the base URL, and the database
holds those ids and the keys that signed them. A config naming another base
URL on the same database would mint a second identity over the first one's
data (issue 19: `init` added a second bot to a shared default database
silently), so it is refused, naming the database.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db.base import table_of
from mirror.db.models.instance import INSTANCE_ROW, InstanceRecord
from mirror.errors import ConfigError

INSTANCE = table_of(InstanceRecord)


class BaseUrlMismatch(ConfigError):
    """The config's base URL is not the one the database was initialised with."""


def where(engine: Engine) -> str:
    """The database as an operator recognises it (the URL, password hidden)."""
    return engine.url.render_as_string(hide_password=True)


def recorded_base_url(conn: sa.Connection) -> str | None:
    return conn.execute(
        sa.select(INSTANCE.c.base_url).where(INSTANCE.c.id == INSTANCE_ROW)
    ).scalar_one_or_none()


def check_base_url(conn: sa.Connection, base_url: str, database: str) -> str | None:
    """The recorded base URL (None if none yet); BaseUrlMismatch if it is another one."""
    recorded = recorded_base_url(conn)
    if recorded is not None and recorded != base_url:
        raise BaseUrlMismatch(
            f"the database {database} belongs to {recorded}, not to {base_url} "
            "([instance].base_url): every id in it is built on its base URL; "
            "point this config at its own database ([database].url or [paths].data_dir) "
            f"or set base_url back to {recorded}"
        )
    return recorded


def claim_base_url(conn: sa.Connection, base_url: str, database: str, now: datetime) -> None:
    """Record ``base_url`` if the database has none yet; refuse another one.

    Call inside a write transaction: on SQLite it holds the write lock, so two
    processes cannot both record; on PostgreSQL the primary key makes the
    second insert fail instead of recording a second base URL.
    """
    if check_base_url(conn, base_url, database) is None:
        conn.execute(
            sa.insert(INSTANCE).values(id=INSTANCE_ROW, base_url=base_url, recorded_at=now)
        )

"""Alembic environment: the URL comes from the caller or the fedimirror config.

``mirror db upgrade`` passes an open connection; a developer running
``alembic`` from the repository gets the database of the effective config.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import mirror.db.models  # noqa: F401  (registers every table)
from mirror.db.base import Base

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    # Our column types are plain SQL types underneath; render those, so the
    # revision files do not import the package.
    from mirror.db.types import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from mirror.config import load_settings
    from mirror.db.session import normalize_url

    return normalize_url(load_settings().database_url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from mirror.db.session import make_engine

    engine = make_engine(_url())
    with engine.connect() as connection:
        _run(connection)
        connection.commit()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

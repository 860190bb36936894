"""Engines and sessions, made by factories and passed down (no module-level engine)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from mirror.errors import DatabaseError

WRITE_OPTION = "mirror_write"
#: WAL pages (4 KiB each) written between automatic checkpoints: 64 MiB.
WAL_CHECKPOINT_PAGES = 16384


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs; we drive PostgreSQL with psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"database URL {url!r} is not a valid SQLAlchemy URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout."""
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if is_sqlite(url):
        _bind_nulls_directly()
        database = make_url(url).database
        if database and database != ":memory:":
            _create_private(Path(database).expanduser())
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"the driver for {make_url(url).drivername} is not installed ({exc.name}); "
            "install fedimirror[postgres] for PostgreSQL"
        ) from None
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _create_private(path: Path) -> None:
    """Create a new SQLite file as mode 0600, in a directory of mode 0700 if it is new.

    The database holds the (encrypted) keys, the followers and every
    activity; SQLite gives its -wal and -shm files the database file's mode,
    so creating the file first, empty, makes all three private.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DatabaseError(f"cannot create the directory for {path}: {exc.strerror}") from exc
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise DatabaseError(f"cannot create the database file {path}: {exc.strerror}") from exc


def _bind_nulls_directly() -> None:
    """Let Python's sqlite3 find None in its adapter registry (a process-wide setting).

    The module binds exact str, int and float values as they are and passes
    every other value through its adapters first (CPython
    Modules/_sqlite/cursor.c, ``_need_adapt``). For None, found in no
    registry, that meant a failed lookup of ``__adapt__`` and of
    ``__conform__`` per NULL: ~310 ns each, where a row of posts or comments
    holds a dozen NULLs. Registered, None is adapted to itself by a C
    callable in ~90 ns, and binds as NULL exactly as before.
    """
    sqlite3.register_adapter(type(None), _NOTHING.get)


#: ``_NOTHING.get(value)`` is None for any value: the adapter for None, in C.
_NOTHING: dict[Any, Any] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin,
    # so that BEGIN IMMEDIATE below takes the write lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A checkpoint copies every page the WAL holds back into the database.
    # Bulk writes (an ingest, a backfill's deliveries) rewrite the same
    # hash-keyed index pages batch after batch; checkpointing every 64 MB
    # instead of SQLite's 4 MB copies each of them far fewer times (the
    # ingest benchmark's storing alone: a fifth faster, its final checkpoint
    # included). After a checkpoint the WAL file is cut back to that size.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096}")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # A deferred transaction that later writes can fail with "database is
    # locked" when another writer got there first; writers say so up front
    # and BEGIN IMMEDIATE waits (busy_timeout) for the lock instead.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextlib.contextmanager
def write_transaction(engine: Engine, *, defer_checkpoint: bool = False) -> Iterator[sa.Connection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN.

    With ``defer_checkpoint`` an SQLite commit never checkpoints the WAL
    (SQLite's automatic checkpoint runs inside the commit that crosses
    WAL_CHECKPOINT_PAGES); the caller runs :func:`checkpoint_wal` when the
    time suits it. An ingest does, once the other process has its turn to
    write, so the checkpoint is not in the way of the next batch.
    """
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection if is_sqlite(engine) else None
        deferred = defer_checkpoint and raw is not None
        if deferred:
            # On the driver's connection: a PRAGMA through SQLAlchemy would begin a transaction.
            raw.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
        try:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection
        finally:
            if deferred:
                raw.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")  # type: ignore[union-attr]


def checkpoint_wal(engine: Engine) -> None:
    """Copy what SQLite's WAL holds into the database file, as far as readers allow.

    PASSIVE, as SQLite's own automatic checkpoint: it waits for nobody and
    leaves what a reader still needs. Nothing to do on PostgreSQL.
    """
    if not is_sqlite(engine):
        return
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # type: ignore[union-attr]

"""How fedimirror's SQLite connections are set up."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from mirror.db.bulk import JSONText, bulk_insert
from mirror.db.session import (
    WAL_CHECKPOINT_PAGES,
    checkpoint_wal,
    make_engine,
    write_transaction,
)
from mirror.ingest.batch import CHECKPOINT_EVERY, Checkpoints


def test_connections_use_wal_and_checkpoint_every_64_mib(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA wal_autocheckpoint").scalar() == WAL_CHECKPOINT_PAGES
        assert pragma("PRAGMA journal_size_limit").scalar() == 64 * 1024 * 1024
    engine.dispose()


def _table(database: Path) -> sa.Engine:
    """An engine on a new database with one table of 3 KB rows."""
    engine = make_engine(f"sqlite:///{database}")
    with write_transaction(engine) as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    return engine


def _fill(engine: sa.Engine, rows: int, *, defer_checkpoint: bool = False) -> None:
    with write_transaction(engine, defer_checkpoint=defer_checkpoint) as connection:
        connection.execute(
            sa.text("INSERT INTO t (data) VALUES (:data)"),
            [{"data": os.urandom(3000)} for _ in range(rows)],
        )


def test_bulk_writes_stay_in_the_wal_past_sqlites_default_4_mb(tmp_path: Path) -> None:
    # At SQLite's default (1,000 pages) the second transaction below would be
    # checkpointed and the third would reuse the WAL from its start.
    database = tmp_path / "m.db"
    engine = _table(database)
    for n in range(3):
        _fill(engine, 1000 * (n + 1))
    wal = Path(f"{database}-wal").stat().st_size
    assert 16 * 1024 * 1024 < wal < 64 * 1024 * 1024
    engine.dispose()


def test_a_deferred_checkpoint_waits_for_checkpoint_wal(tmp_path: Path) -> None:
    database = tmp_path / "m.db"
    engine = _table(database)
    # Past the 64 MB at which a plain commit would checkpoint the WAL.
    for _ in range(2):
        _fill(engine, 12_000, defer_checkpoint=True)
    assert Path(f"{database}-wal").stat().st_size > WAL_CHECKPOINT_PAGES * 4096
    assert database.stat().st_size < 1024 * 1024  # nothing copied into the file yet
    with engine.connect() as connection:  # the connection's own setting is back
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == (
            WAL_CHECKPOINT_PAGES
        )
    checkpoint_wal(engine)
    assert database.stat().st_size > WAL_CHECKPOINT_PAGES * 4096
    engine.dispose()


def test_ingest_checkpoints_every_second_batch_when_nobody_waits(tmp_path: Path) -> None:
    database = tmp_path / "m.db"
    engine = _table(database)
    checkpoints = Checkpoints(engine)
    sizes = []
    for _ in range(2 * CHECKPOINT_EVERY):
        _fill(engine, 500, defer_checkpoint=True)
        checkpoints.stored()
        checkpoints.settle()
        sizes.append(database.stat().st_size)
    # Copied into the database file at the second batch and the fourth only.
    assert sizes[0] < sizes[CHECKPOINT_EVERY - 1]
    assert sizes[CHECKPOINT_EVERY - 1] == sizes[CHECKPOINT_EVERY] < sizes[-1]
    engine.dispose()


def test_nulls_and_json_text_bind_without_sqlite3s_adapter_search(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    # Without a registered adapter, sqlite3.adapt has nothing for None.
    assert sqlite3.adapt(None) is None
    with write_transaction(engine) as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT, data JSON)")
        table = sa.Table(
            "t",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("note", sa.Text),
            sa.Column("data", sa.JSON),
        )
        bulk_insert(
            connection,
            table,
            [
                {"id": 1, "note": None, "data": JSONText('{"a": 1}')},
                {"id": 2, "note": "x", "data": {"b": 2}},
            ],
        )
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT id, note, data, typeof(note) FROM t").all()
    assert rows == [(1, None, '{"a": 1}', "null"), (2, "x", '{"b": 2}', "text")]
    engine.dispose()

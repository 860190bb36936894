"""How fedimirror's SQLite connections are set up."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from mirror.db.session import WAL_CHECKPOINT_PAGES, make_engine, write_transaction


def test_connections_use_wal_and_checkpoint_every_64_mib(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA wal_autocheckpoint").scalar() == WAL_CHECKPOINT_PAGES
        assert pragma("PRAGMA journal_size_limit").scalar() == 64 * 1024 * 1024
    engine.dispose()


def test_bulk_writes_stay_in_the_wal_past_sqlites_default_4_mb(tmp_path: Path) -> None:
    # At SQLite's default (1,000 pages) the second transaction below would be
    # checkpointed and the third would reuse the WAL from its start.
    database = tmp_path / "m.db"
    engine = make_engine(f"sqlite:///{database}")
    with write_transaction(engine) as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    for n in range(3):
        with write_transaction(engine) as connection:
            connection.execute(
                sa.text("INSERT INTO t (data) VALUES (:data)"),
                [{"data": os.urandom(3000)} for _ in range(1000 * (n + 1))],
            )
    wal = Path(f"{database}-wal").stat().st_size
    assert 16 * 1024 * 1024 < wal < 64 * 1024 * 1024
    engine.dispose()

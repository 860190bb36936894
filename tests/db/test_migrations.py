"""The schema comes only from alembic: upgrades from empty on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mirror.db import migrate
from mirror.db.base import Base
from mirror.db.session import make_engine

TABLES = {
    "alias",
    "author",
    "comment",
    "community",
    "dump_file",
    "fragment",
    "observation",
    "post",
    "local_actor",
    "follower",
    "remote_actor",
    "received_activity",
    "activity",
    "ap_object",
    "instance",
    "admin_session",
    "hosted_community",
    "hosted_backlog",
    "follower_copy",
}


def _upgrade_and_check(url: str) -> None:
    engine = make_engine(url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= TABLES
        # The models and the migrations describe the same schema.
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    engine.dispose()


def test_upgrade_empty_sqlite_to_head(sqlite_url: str) -> None:
    _upgrade_and_check(sqlite_url)


@pytest.mark.postgres
def test_upgrade_empty_postgresql_to_head(pg_url: str) -> None:
    _upgrade_and_check(pg_url)


def test_downgrade_to_base_and_up_again(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    config = migrate.alembic_config(engine)
    command.downgrade(config, "base")
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_ensure_schema_is_a_no_op_at_head(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.ensure_schema(engine)
    migrate.ensure_schema(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def _race(url: str, tmp_path: Path, n: int = 4) -> None:
    """Several processes open a fresh database at once; the lock serialises them."""
    script = tmp_path / "race.py"
    script.write_text(
        "import sys\n"
        "from mirror.db import migrate\n"
        "from mirror.db.session import make_engine\n"
        "migrate.ensure_schema(make_engine(sys.argv[1]))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, str(script), url], stderr=subprocess.PIPE)
        for _ in range(n)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * n, errors
    assert migrate.current_revision(make_engine(url)) == migrate.head_revision()


def test_concurrent_first_runs_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    _race(sqlite_url, tmp_path)


@pytest.mark.postgres
def test_concurrent_first_runs_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    _race(pg_url, tmp_path)


def test_unknown_revision_is_one_clear_line(sqlite_url: str) -> None:
    from mirror.errors import DatabaseError

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(DatabaseError) as info:
        migrate.ensure_schema(engine)
    assert "from_the_future" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fragments_earlier_versions_left_out_are_added(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, clock
) -> None:
    from mirror.ingest.files import ingest_file
    from tests.conftest import CAPTURED
    from tests.helpers import MULTI_PARAGRAPH_THREAD

    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    engine = make_engine(url)
    migrate.upgrade(engine)
    thread = tmp_path / "thread.txt"
    thread.write_text(MULTI_PARAGRAPH_THREAD)
    assert ingest_file(engine, thread, clock=clock, captured_at=CAPTURED).ok
    select = sa.text("SELECT para_hash, kind, item_id FROM fragment ORDER BY para_hash")
    with engine.begin() as conn:
        written = conn.execute(select).all()
        # What a database filled by an earlier version holds: no fragment rows.
        conn.execute(sa.text("DELETE FROM fragment"))
    assert len(written) == 1
    command.downgrade(migrate.alembic_config(engine), "8c41d7e2b5a3")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(select).all() == written
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_base_url_of_published_activities_is_recorded(
    request: pytest.FixtureRequest, backend: str, clock
) -> None:
    """A database that published before the base URL was recorded gets the one its ids use."""
    from mirror.db.base import table_of
    from mirror.db.instance import recorded_base_url
    from mirror.db.models import Activity
    from mirror.federation.actors import BOT, create_actor
    from mirror.signatures import MasterKey

    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    engine = make_engine(url)
    migrate.upgrade(engine, "c41f7a2d9e18")
    with engine.begin() as conn:
        create_actor(
            conn, username="mirror", kind=BOT, master_key=MasterKey.generate(), now=clock.now()
        )
        conn.execute(
            sa.insert(table_of(Activity)).values(
                id="a1",
                actor="mirror",
                type="Accept",
                public=False,
                json={"id": "https://old.example/activities/a1", "type": "Accept"},
                created_at=clock.now(),
            )
        )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert recorded_base_url(conn) == "https://old.example"
    # Down and up again on a database that published nothing: nothing is recorded.
    command.downgrade(migrate.alembic_config(engine), "c41f7a2d9e18")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM activity"))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert recorded_base_url(conn) is None
    engine.dispose()

"""Shared fixtures: seed dumps, real SQLite files, a real PostgreSQL database per run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.clock import FrozenClock
from mirror.db import migrate
from mirror.db.session import make_engine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEEDS = SHARED / "seeds"
SEED = {
    "profile": SEEDS / "000_a0b9976c4945b458.txt",
    "thread": SEEDS / "001_30b88eaef078e33e.txt",
    "flat": SEEDS / "002_b8238697cfe1f06f.txt",
    "bare": SEEDS / "003_2043c5b9bef078dd.txt",
    "listing": SEEDS / "004_944b8da03abeca4a.txt",
}
#: A capture time for the seeds (the doc estimates late July 2025 for 004).
CAPTURED = datetime(2025, 7, 28, 12, 0, tzinfo=UTC)
#: ../shared is beside the project in CI, not in a plain clone: tests of the
#: real seeds and of Lemmy's example JSON skip there, saying why, and the
#: behaviour they cover is also tested on the project's own samples.
SEEDS_HERE = SEEDS.is_dir()
needs_seeds = pytest.mark.skipif(
    not SEEDS_HERE,
    reason="../shared/seeds is not here (a plain clone); mirror/samples cover each format",
)
LEMMY_EXAMPLES = SHARED / "lemmy-examples"
needs_lemmy_examples = pytest.mark.skipif(
    not LEMMY_EXAMPLES.is_dir(),
    reason="../shared/lemmy-examples is not here (a plain clone)",
)


def seed(name: str) -> Path:
    """One of the five seeds (profile, thread, flat, bare, listing); skips without ../shared."""
    if not SEEDS_HERE:
        pytest.skip(f"../shared/seeds is not here (a plain clone): needs the {name} seed")
    return SEED[name]


def seeds_dir() -> Path:
    """The seeds' folder; skips without ../shared."""
    if not SEEDS_HERE:
        pytest.skip("../shared/seeds is not here (a plain clone)")
    return SEEDS


def corpus() -> list[Path]:
    """What the integration tests ingest: the five real seeds where they are here (CI),
    else the samples the project ships (every format, with overlaps)."""
    from mirror.ingest.files import sample_files

    return sorted(SEEDS.glob("*.txt")) if SEEDS_HERE else sample_files()


#: Small dumps written for the tests in the seeds' formats (tests/fixtures/README.md):
#: with the samples, every behaviour a seed test checks is checked in a plain clone too.
FIXTURE_DUMPS = ROOT / "tests" / "fixtures" / "dumps"


def shipped(name: str) -> Path:
    """A dump the project ships: a sample (mirror/samples) or a test fixture, by file name."""
    from mirror.ingest.files import sample_files

    found = [p for p in [*sample_files(), *FIXTURE_DUMPS.glob("*.txt")] if p.name == name]
    assert len(found) == 1, f"no shipped dump named {name}"
    return found[0]


def shipped_dumps() -> list[Path]:
    """Every dump the project ships: the samples, then the test fixtures."""
    from mirror.ingest.files import sample_files

    return [*sample_files(), *sorted(FIXTURE_DUMPS.glob("*.txt"))]


PG_ADMIN_URL = os.environ.get(
    "MIRROR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's config, data directory or MIRROR_* variables."""
    for name in list(os.environ):
        if name.startswith("MIRROR_") and name != "MIRROR_TEST_PG_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mirror.db'}"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _pg_available() -> bool:
    try:
        probe = sa.create_engine(PG_ADMIN_URL)
        with probe.connect():
            pass
        probe.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Engine]:
    """The machine's PostgreSQL (admin connection), or the test fails loudly."""
    if not _pg_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; start it (see .ci/run)")
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()


@pytest.fixture
def pg_url(pg_server: Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"mirror_test_{uuid.uuid4().hex[:12]}"
    with pg_server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with pg_server.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()

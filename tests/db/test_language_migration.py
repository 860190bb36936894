"""Migration 4f2a9c1d7e60: stored language names become Lemmy's codes, the names kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from mirror.clock import FrozenClock
from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.ingest.files import ingest_paths
from tests.conftest import CAPTURED

SAMPLE = Path(__file__).resolve().parents[2] / "mirror" / "samples" / "profile_fern.txt"
BEFORE = "b7d30e9a4c15"


def _items(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for table in ("post", "comment")
            for row in conn.execute(
                sa.text(f"SELECT id, language, language_name FROM {table} ORDER BY id")
            )
        ]


def _languages_said(engine: Engine) -> list[tuple[Any, ...]]:
    observation = sa.table("observation", sa.column("id"), sa.column("data", sa.JSON))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(observation.c.id, observation.c.data).order_by("id"))
        return [
            (r.id, r.data.get("language"), r.data.get("language_name"), list(r.data))
            for r in rows
            if "language" in r.data or "language_name" in r.data
        ]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_names_become_codes_and_the_names_stay(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    engine = make_engine(url)
    migrate.upgrade(engine)
    dump = tmp_path / "profile.txt"
    # Two items: one in a language of Lemmy's list, one in a name it lacks.
    text = SAMPLE.read_text(encoding="utf-8")
    dump.write_text(text.replace("    English\n", "    Klingon\n", 1) + "\n" + _second_item(text))
    clock = FrozenClock(CAPTURED)
    assert all(r.ok for r in ingest_paths(engine, [dump], clock=clock, captured_at=CAPTURED))
    written, said = _items(engine), _languages_said(engine)
    assert {(code, name) for _, code, name in written if name} == {
        (None, "Klingon"),
        ("en", "English"),
    }
    assert len(said) == 2

    # What an earlier version stored: the page's name in `language`, no language_name.
    command.downgrade(migrate.alembic_config(engine), BEFORE)
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("comment")}
        old = conn.execute(sa.text("SELECT language FROM comment WHERE language IS NOT NULL"))
        assert sorted(old.scalars()) == ["English", "Klingon"]
    assert "language_name" not in columns
    assert sorted(name for _, name, _, _ in _languages_said(engine)) == ["English", "Klingon"]

    migrate.upgrade(engine)
    assert _items(engine) == written
    assert _languages_said(engine) == said
    engine.dispose()


def _second_item(profile: str) -> str:
    """The sample's first item again, in English, with another body (a second comment)."""
    start = profile.index("  • fern_wright")
    end = profile.index("\n\n", profile.index("Fermenting is optional."))
    item = profile[start:end].replace("Fermenting is optional.", "Drying is quicker.")
    return item + "\n"

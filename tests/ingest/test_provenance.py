"""Provenance records: where each copy was, and what it said besides its text."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db.models import Comment, Observation
from mirror.ingest.files import ingest_file
from mirror.ingest.rows import with_references
from tests.conftest import CAPTURED, shipped


def _records(engine: Engine, clock) -> list[tuple[str, int, dict, str | None]]:
    path = shipped("thread_full_bikes.txt")
    report = ingest_file(engine, path, clock=clock, captured_at=CAPTURED)
    assert report.ok, report.error
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Observation.kind, Observation.first_line, Observation.data, Comment.parent_id)
            .join(Comment, Comment.id == Observation.item_id, isouter=True)
            .order_by(Observation.first_line)
        ).all()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_copy_records_what_it_said_and_what_it_was_placed_under(
    backend: str, request: pytest.FixtureRequest, clock
) -> None:
    engine = request.getfixturevalue("engine" if backend == "sqlite" else "pg_engine")
    records = _records(engine, clock)
    post = [data for kind, _, data, _ in records if kind == "post"]
    assert len(post) == 1 and post[0]["title"] and "body" not in post[0]
    assert post[0]["counts_captured_at"] == CAPTURED.isoformat()
    replies = [(data, parent) for kind, _, data, parent in records if kind == "comment" and parent]
    assert len(replies) == 7, "the full thread has seven replies"
    for data, parent in replies:
        # The references the writer resolved join the copy's own words.
        assert data["parent_id"] == parent
        assert data["post_id"].startswith("p")
        assert data["confidence"] == "high"
        assert isinstance(data["parent_known"], bool)
    top = [data for kind, _, data, parent in records if kind == "comment" and not parent]
    assert len(top) == 4 and all("parent_id" not in data for data in top)


def test_references_join_an_empty_or_a_full_record() -> None:
    refs = {"post_id": "p1", "parent_id": "c2"}
    assert json.loads(with_references("{}", refs)) == refs
    assert json.loads(with_references('{"score": 3}', refs)) == {"score": 3, **refs}
    assert with_references('{"score": 3}', {}) == '{"score": 3}'
    # Ids are written as json.dumps writes them; anything else is escaped by it.
    assert with_references("{}", refs) == json.dumps(refs)
    odd = {"post_id": 'p"1\\', "parent_id": "c\u00e92"}
    assert with_references('{"score": 3}', odd) == json.dumps({"score": 3, **odd})

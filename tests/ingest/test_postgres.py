"""The same reconstruction on PostgreSQL as on SQLite (the seeds where here, else the samples)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from mirror.ingest.files import ingest_paths
from mirror.inspection import build_document
from tests.conftest import CAPTURED, corpus

pytestmark = pytest.mark.postgres


def _document(engine: Engine, clock) -> dict:
    reports = ingest_paths(engine, corpus(), clock=clock, captured_at=CAPTURED)
    assert all(r.ok for r in reports)
    return build_document(engine)


def test_postgresql_and_sqlite_reconstruct_the_same(
    pg_engine: Engine, engine: Engine, clock
) -> None:
    assert _document(pg_engine, clock) == _document(engine, clock)


def test_postgresql_ingest_twice_adds_nothing(pg_engine: Engine, clock) -> None:
    first = _document(pg_engine, clock)
    reports = ingest_paths(pg_engine, corpus(), clock=clock, captured_at=CAPTURED)
    assert sum(r.posts + r.comments for r in reports) == 0
    assert build_document(pg_engine) == first

"""The planner against its frozen reference (tests/publish/reference.py wrote it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mirror.db.session import make_engine
from tests.publish import reference

FROZEN = json.loads(reference.FIXTURE.read_text())


@pytest.mark.parametrize("corpus", ["samples", "seeds"])
@pytest.mark.parametrize(
    "planner", [reference.stream_planner, reference.document_planner], ids=["stream", "document"]
)
def test_the_plan_equals_the_frozen_reference(corpus: str, planner: reference.Planner) -> None:
    if not reference.CORPORA[corpus].is_dir():
        pytest.skip(f"{reference.CORPORA[corpus]} is not here (a plain clone)")
    assert reference.reference(planner, [corpus]) == {corpus: FROZEN[corpus]}


def test_the_plan_of_the_benchmark_corpus_equals_its_frozen_digest() -> None:
    """Opt-in: FEDIMIRROR_BENCH_DB names the 50 MB corpus ingested
    (benchmarks/backfill.py --keep DIR writes DIR/backfill-template.db; 15 s)."""
    database = os.environ.get("FEDIMIRROR_BENCH_DB")
    if not database:
        pytest.skip("FEDIMIRROR_BENCH_DB is not set (the 50 MB benchmark corpus, ingested)")
    engine = make_engine(f"sqlite:///{Path(database)}")
    try:
        digest = reference.digest(engine, reference.stream_planner)
    finally:
        engine.dispose()
    assert digest == json.loads(reference.BENCH_FIXTURE.read_text())

"""Planning reads an outline of the reconstruction; a backfill reads bodies a chunk at a time."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from mirror.clock import FrozenClock
from mirror.ingest.files import ingest_paths
from mirror.inspection import build_document, build_outline
from mirror.publish.backfill import _with_bodies
from mirror.publish.plan import Options, build_plan
from tests.conftest import CAPTURED, seeds_dir


def _ingest_seeds(engine: Engine) -> None:
    paths = sorted(seeds_dir().glob("*.txt"))
    reports = list(ingest_paths(engine, paths, clock=FrozenClock(CAPTURED), captured_at=CAPTURED))
    assert all(r.ok for r in reports)


def _without_texts(item: dict[str, Any]) -> dict[str, Any]:
    outlined = {k: v for k, v in item.items() if k not in ("body", "sources")}
    return {**outlined, "has_body": bool((item["body"] or "").strip())}


def test_the_outline_is_the_document_without_bodies_and_sources(engine: Engine) -> None:
    _ingest_seeds(engine)
    document, outline = build_document(engine), build_outline(engine)
    assert outline["communities"] == document["communities"]
    assert outline["authors"] == document["authors"]
    for kind in ("posts", "comments"):
        assert outline[kind] == [_without_texts(i) for i in document[kind]]
        assert any(i["body"] for i in document[kind])
    assert not all(i["has_body"] for i in outline["posts"])  # the seeds' listings


def test_bodies_are_read_a_chunk_at_a_time_and_let_go(engine: Engine) -> None:
    _ingest_seeds(engine)
    bodies = {i["id"]: i["body"] for k in ("posts", "comments") for i in build_document(engine)[k]}
    plan = build_plan(build_outline(engine), Options())
    assert len(plan.items) > 3 * 7
    seen = {}
    with engine.connect() as conn:
        for item in _with_bodies(conn, plan.items, size=7):
            seen[item.id] = item.data["body"]
            assert sum("body" in i.data for i in plan.items) <= 7
    assert seen == {item.id: bodies[item.id] for item in plan.items}
    assert not any("body" in item.data for item in plan.items)


def test_bodies_a_plan_already_holds_are_kept(engine: Engine) -> None:
    _ingest_seeds(engine)
    plan = build_plan(build_document(engine), Options())
    before = {item.id: item.data["body"] for item in plan.items}
    with engine.connect() as conn:
        assert [item.data["body"] for item in _with_bodies(conn, plan.items, size=7)] == list(
            before.values()
        )
    assert {item.id: item.data["body"] for item in plan.items} == before

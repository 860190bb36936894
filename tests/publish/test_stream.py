"""The streamed plan: its chunk queries use the indexes, and a plan killed mid-way resumes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db import lease, migrate
from mirror.db.models import Comment, Post
from mirror.db.session import make_engine, write_transaction
from mirror.federation.actors import BOT, create_actor
from mirror.publish import runs
from mirror.publish.backfill import ACTIVITIES, PUBLICATIONS, RUNS
from mirror.publish.planning import StillPlanning
from mirror.publish.report import Report
from mirror.publish.stream import _page
from mirror.signatures import MasterKey
from tests.publish import plan_child, reference

ROOT = Path(__file__).resolve().parents[2]
ROWS = 100_000


def _query_plan(engine: Engine, model: type, dated: bool, after: list[str | None] | None) -> str:
    """EXPLAIN QUERY PLAN of the chunk query _page runs (the same statement, compiled)."""
    captured: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    with engine.connect() as conn:
        sa.event.listen(engine, "before_cursor_execute", grab)
        try:
            _page(conn, model, dated, after, 500)
        finally:
            sa.event.remove(engine, "before_cursor_execute", grab)
        statement, parameters = captured[-1]
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()  # type: ignore[arg-type]
    return "\n".join(str(r[-1]) for r in rows)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """100,000 posts and as many comments (a fifth of unknown posts), some of unknown time."""
    path = tmp_path_factory.mktemp("big") / "mirror.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    common = {"confidence": "high", "created_at": start, "updated_at": start}
    posts = [
        {
            **common,
            "id": f"p{n:07d}",
            "title": f"t{n}",
            "title_derived": False,
            "published_at": None if n % 50 == 0 else start + timedelta(seconds=n * 7919 % ROWS),
        }
        for n in range(ROWS)
    ]
    comments = [
        {
            **common,
            "id": f"c{n:07d}",
            "post_id": None if n % 5 == 0 else f"p{n:07d}",
            "parent_known": True,
            "body": "b",
            "published_at": start + timedelta(seconds=n * 104729 % ROWS),
        }
        for n in range(ROWS)
    ]
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(Post), posts)
        conn.execute(sa.insert(Comment), comments)
        conn.exec_driver_sql("ANALYZE")
    return engine


@pytest.mark.parametrize(
    ("model", "dated", "after", "index"),
    [
        (Post, True, None, "ix_post_published"),
        (Post, True, ["2024-01-01T10:00:00+00:00", "p0012345"], "ix_post_published"),
        (Post, False, ["", "p0012345"], "ix_post_published"),
        (Comment, True, ["2024-01-01T10:00:00+00:00", "c0012345"], "ix_comment_post_published"),
        (Comment, False, None, "ix_comment_post_published"),
    ],
)
def test_each_chunk_query_walks_its_index_without_sorting(
    big: Engine, model: type, dated: bool, after: list[str | None] | None, index: str
) -> None:
    with big.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(model)) == ROWS
    explained = _query_plan(big, model, dated, after)
    assert f"USING INDEX {index}" in explained or f"USING COVERING INDEX {index}" in explained, (
        explained
    )
    assert "TEMP B-TREE" not in explained, explained
    assert "SCAN" not in explained, explained  # a range of the index, not the whole table


def _ingested(tmp_path: Path) -> Path:
    path = tmp_path / "ingested.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    reference.ingest(engine, reference.CORPORA["samples"])
    with write_transaction(engine) as conn:
        create_actor(
            conn,
            username="mirror",
            kind=BOT,
            master_key=MasterKey.generate(),
            now=reference.CAPTURED,
        )
    engine.dispose()
    return path


def _published(
    url: str,
) -> tuple[list[tuple[object, ...]], dict[str, int], list[tuple[object, ...]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    PUBLICATIONS.c.id,
                    PUBLICATIONS.c.item_id,
                    PUBLICATIONS.c.kind,
                    PUBLICATIONS.c.target,
                    PUBLICATIONS.c.actor,
                    PUBLICATIONS.c.parent_id,
                    PUBLICATIONS.c.content_hash,
                    PUBLICATIONS.c.state,
                    PUBLICATIONS.c.reason,
                    PUBLICATIONS.c.sends,
                ).order_by(PUBLICATIONS.c.id)
            ).all()
            activities = dict(
                conn.execute(
                    sa.select(ACTIVITIES.c.type, sa.func.count()).group_by(ACTIVITIES.c.type)
                ).all()
            )
            runs = conn.execute(sa.select(RUNS.c.state, RUNS.c["items"], RUNS.c.progress)).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in rows], activities, [tuple(r) for r in runs]


def test_a_plan_killed_mid_way_resumes_to_what_one_run_makes(tmp_path: Path) -> None:
    template = _ingested(tmp_path)
    clean, killed = tmp_path / "clean.db", tmp_path / "killed.db"
    shutil.copyfile(template, clean)
    shutil.copyfile(template, killed)
    one = plan_child.plan(f"sqlite:///{clean}")
    assert one.run_id is not None and one.queued == sum(one.planned.values()) > 0

    child = subprocess.run(
        [sys.executable, "-m", "tests.publish.plan_child", f"sqlite:///{killed}", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == -9, child.stderr  # SIGKILL, after its third chunk
    partial, _, runs = _published(f"sqlite:///{killed}")
    assert [r[0] for r in runs] == ["planning"]  # made first, and left so by the crash
    assert 0 < len(partial) < one.queued
    assert runs[0][2]["phase"] == 0 and runs[0][2]["used"]

    again = plan_child.plan(f"sqlite:///{killed}")
    assert again.run_id == 1 and again.planned == one.planned and again.left_out == one.left_out
    assert again.queued == one.queued - len(partial)
    assert _published(f"sqlite:///{killed}") == _published(f"sqlite:///{clean}")
    # Planning it again now finds nothing new and records no run.
    assert plan_child.plan(f"sqlite:///{killed}").run_id is None
    assert _published(f"sqlite:///{killed}")[2] == _published(f"sqlite:///{clean}")[2]


def _waiting_planner(url: str, folder: Path, after: int = 2) -> subprocess.Popen[str]:
    """A planner in its own process, waiting after its ``after``-th chunk (plan_child)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.publish.plan_child", url, str(after), str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (folder / "waiting").exists():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline, "the planner never reached its chunk"
        time.sleep(0.05)
    return child


def _clean(tmp_path: Path) -> tuple[str, str, Report]:
    """Two copies of the ingested seeds: one planned in one run here, one to test on."""
    template = _ingested(tmp_path)
    clean, tested = tmp_path / "clean.db", tmp_path / "tested.db"
    shutil.copyfile(template, clean)
    shutil.copyfile(template, tested)
    one = plan_child.plan(f"sqlite:///{clean}")
    return f"sqlite:///{clean}", f"sqlite:///{tested}", one


def test_a_second_planner_into_the_same_target_is_refused_while_the_first_lives(
    tmp_path: Path,
) -> None:
    clean, url, one = _clean(tmp_path)
    first = _waiting_planner(url, tmp_path)
    try:
        with pytest.raises(StillPlanning, match=rf"being planned now by .*:{first.pid}"):
            plan_child.plan(url)
    finally:
        first.kill()
        first.wait()
    # Killed (on this machine, its lease not run out): the next planner
    # takes the target over at once and ends where one run ends.
    again = plan_child.plan(url)
    assert again.run_id == 1 and again.planned == one.planned
    assert _published(url) == _published(clean)


def test_a_planner_that_lost_its_lease_writes_nothing_more(tmp_path: Path) -> None:
    _clean_url, url, _one = _clean(tmp_path)
    first = _waiting_planner(url, tmp_path)
    engine = make_engine(url)
    try:
        before = _published(url)[0]
        # Another machine's planner took the target after the first stalled.
        with write_transaction(engine) as conn:
            conn.execute(
                sa.update(lease.LEASES)
                .where(lease.LEASES.c.name == f"plan:{plan_child.TARGET.id}")
                .values(holder="elsewhere:1", expires_at=datetime.now(UTC) + timedelta(hours=1))
            )
        (tmp_path / "go").touch()
        _, stderr = first.communicate(timeout=60)
        assert first.returncode == 3, stderr
        assert "is now planned by elsewhere:1" in stderr
        assert _published(url)[0] == before
    finally:
        first.kill()
        engine.dispose()


@pytest.mark.parametrize("verb", ["pause", "cancel"])
def test_pausing_or_cancelling_a_run_while_it_is_planned_stops_its_planner(
    tmp_path: Path, verb: str
) -> None:
    clean, url, one = _clean(tmp_path)
    planner = _waiting_planner(url, tmp_path)
    engine = make_engine(url)
    try:
        with write_transaction(engine) as conn:
            getattr(runs, verb)(conn, 1, datetime.now(UTC))
        partial = _published(url)[0]
        (tmp_path / "go").touch()
        _, stderr = planner.communicate(timeout=60)
        assert planner.returncode == 3, stderr
        assert f"run 1 was {'paused' if verb == 'pause' else 'cancelled'}" in stderr
        # The chunk under way when it was told is not written.
        assert _published(url)[0] == partial
        if verb == "cancel":
            state = _published(url)[2][0][0]
            assert state == "cancelled"
            # The target is free: a new backfill plans a new run.
            assert plan_child.plan(url).run_id == 2
            return
        # Paused: a backfill again says what to do, and after a resume it
        # plans the rest, ending where one run ends.
        with pytest.raises(StillPlanning, match="mirror runs resume 1"):
            plan_child.plan(url)
        with write_transaction(engine) as conn:
            runs.resume(conn, 1, datetime.now(UTC))
        again = plan_child.plan(url)
        assert again.run_id == 1 and again.planned == one.planned
        assert _published(url) == _published(clean)
    finally:
        planner.kill()
        engine.dispose()

"""The operators' counts read the small partial indexes, not the delivered or confirmed bulk."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.delivery.states import State, operator_state_sql, stored_not
from mirror.delivery.tables import DELIVERIES
from mirror.publish.records import PUBLICATIONS

NOW = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    path: Path = tmp_path_factory.mktemp("plan") / "plan.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    return engine


def _plan(engine: Engine, query: sa.Select) -> str:  # type: ignore[type-arg]
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(row[-1]) for row in rows)


def test_delivery_states_are_counted_from_the_unsent_index(engine: Engine) -> None:
    view = operator_state_sql(DELIVERIES, NOW)
    query = (
        sa.select(view, sa.func.count())
        .where(stored_not(DELIVERIES.c.state, State.DELIVERED))
        .group_by(view)
    )
    plan = _plan(engine, query)
    assert "COVERING INDEX ix_delivery_unsent" in plan, plan


def test_publication_states_are_counted_from_the_unconfirmed_index(engine: Engine) -> None:
    # All runs at once (status, metrics); a run's own counts still walk
    # ix_publication_run_id (issue 22: runs and the admin page, not done yet).
    query = (
        sa.select(PUBLICATIONS.c.state, sa.func.count())
        .where(stored_not(PUBLICATIONS.c.state, "confirmed"))
        .group_by(PUBLICATIONS.c.state)
    )
    plan = _plan(engine, query)
    assert "COVERING INDEX ix_publication_unconfirmed" in plan, plan

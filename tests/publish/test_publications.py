"""Publication pieces on a real database: the job's lease, the lookup schedule, known limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from mirror.db import lease, migrate
from mirror.db.session import make_engine, write_transaction
from mirror.federation.actors import BOT, create_actor
from mirror.publish import release
from mirror.publish.confirm import Window
from mirror.publish.servers import LEMMY, MARGIN, PIEFED
from mirror.signatures import MasterKey

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _leases(engine: Engine) -> None:
    def hold(holder: str, at: datetime) -> bool:
        with write_transaction(engine) as conn:
            return lease.hold(conn, "job", holder, now=at, seconds=30)

    assert hold("a", T0)
    with engine.connect() as conn:
        # More than half the lease left: no need to write it again.
        assert lease.fresh(conn, "job", "a", now=T0 + timedelta(seconds=14), seconds=30)
        assert not lease.fresh(conn, "job", "a", now=T0 + timedelta(seconds=16), seconds=30)
        assert not lease.fresh(conn, "job", "b", now=T0, seconds=30)
    assert not hold("b", T0 + timedelta(seconds=10))  # a holds it
    assert hold("a", T0 + timedelta(seconds=20))  # renewed: until +50 s
    assert not hold("b", T0 + timedelta(seconds=45))
    assert hold("b", T0 + timedelta(seconds=51))  # a's lease ran out
    with write_transaction(engine) as conn:
        assert lease.holder_of(conn, "job", now=T0 + timedelta(seconds=52)) == "b"
        lease.give_up(conn, "job", "b")
        assert lease.holder_of(conn, "job", now=T0 + timedelta(seconds=52)) is None
    assert hold("a", T0 + timedelta(seconds=53))  # given up: taken at once


def test_one_holder_of_a_job_at_a_time(engine: Engine) -> None:
    _leases(engine)


@pytest.mark.postgres
def test_one_holder_of_a_job_at_a_time_on_postgresql(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    try:
        _leases(engine)
    finally:
        engine.dispose()


def test_lookups_come_at_growing_intervals_and_end_at_the_window() -> None:
    window = Window(600)
    times = []
    checks = 0
    while (due := window.next_check(T0, checks)) is not None:
        times.append((due - T0).total_seconds())
        checks += 1
    assert times == [1, 3, 9, 27, 81, 243, 600]
    assert Window(5).next_check(T0, 0) == T0 + timedelta(seconds=1)
    assert [Window(5).next_check(T0, n) for n in (1, 2, 3)] == [
        T0 + timedelta(seconds=3),
        T0 + timedelta(seconds=5),
        None,
    ]


def test_piefeds_new_account_limit_is_honoured_before_sending(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        create_actor(conn, username="mirror", kind=BOT, master_key=MasterKey.generate(), now=T0)
        young = T0 + timedelta(hours=1)
        assert release.young_account_due(conn, PIEFED, "mirror", count=2, now=young) is None
        due, reason = release.young_account_due(conn, PIEFED, "mirror", count=3, now=young)  # type: ignore[misc]
        assert due == T0 + timedelta(hours=24) + MARGIN
        assert "can_create_post" in reason and "@mirror" in reason
        # Old enough: no limit; Lemmy has none.
        later = T0 + timedelta(hours=24, seconds=1)
        assert release.young_account_due(conn, PIEFED, "mirror", count=9, now=later) is None
        assert release.young_account_due(conn, LEMMY, "mirror", count=9, now=young) is None

"""Ordering per host, crash repeats, parking, dead hosts, operator actions, status."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import psycopg.sql
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg

from mirror.db.session import write_transaction
from mirror.delivery import enqueue, operate
from mirror.delivery.claim import _CLAIMABLE, claim
from mirror.delivery.states import ALLOWED, PARKED_DEAD, State, stored_in
from mirror.delivery.tables import ACTIVITIES, DELIVERIES
from mirror.delivery.worker import ClaimerLock
from mirror.errors import MirrorError
from mirror.vocab.activities import recipe
from mirror.vocab.context import PUBLIC
from tests.delivery.conftest import START, Env
from tests.sink import Answer


def test_state_graph_is_closed() -> None:
    assert set(ALLOWED) == set(State)
    assert ALLOWED[State.DELIVERED] == frozenset()  # terminal
    for targets in ALLOWED.values():
        assert targets <= set(State)


async def test_replies_never_arrive_before_their_parent(env: Env) -> None:
    # The post is slow and fails once; its comments are queued behind it.
    env.sink.script = lambda hit, n: Answer(500) if n == 1 else Answer(delay_s=0.05)
    env.publish("post")
    env.publish("c1", depends_on="post")
    env.publish("c2", depends_on="c1")
    env.publish("other")  # independent: flows at once
    await env.cycle()
    # The post and the independent item go out together; the replies wait.
    assert set(env.sink.objects()) == {
        env.federation.urls.object("post"),
        env.federation.urls.object("other"),
    }
    for _ in range(4):
        await env.cycle(advance_s=60)
    arrived = [o.rsplit("/", 1)[1] for o in env.sink.objects()]
    assert arrived.index("post", 1) < arrived.index("c1") < arrived.index("c2")
    assert {r["state"] for r in env.rows()} == {"delivered"}


async def test_an_outbox_writes_at_flush_in_call_order(env: Env) -> None:
    # A backfill's path: many activities built, then written in a few statements.
    urls = env.federation.urls
    env.sink.script = lambda hit, n: Answer(500) if n == 1 else Answer()

    def create(name: str, parent: str | None = None) -> dict:
        note = {"id": urls.object(name), "type": "Note", "content": f"<p>{name}</p>"}
        if parent:
            note["inReplyTo"] = urls.object(parent)
        return recipe("create", username="mirror", object=note, to=[PUBLIC], cc=[])

    with write_transaction(env.engine) as conn:
        outbox = enqueue.Outbox(conn, urls=urls)
        ids = [
            outbox.publish(
                username="mirror",
                recipe=create(name, parent),
                inboxes=[env.sink.inbox],
                now=env.clock.now(),
                depends_on=urls.object(parent) if parent else None,
            )
            for name, parent in [("post", None), ("c1", "post"), ("c2", "c1")]
        ]
        with pytest.raises(enqueue.TooLarge):
            outbox.publish(
                username="mirror",
                recipe=create("huge" + "x" * enqueue.MAX_ACTIVITY_BYTES),
                inboxes=[env.sink.inbox],
                now=env.clock.now(),
            )
        assert len(outbox) == 3
        assert conn.scalar(sa.select(sa.func.count()).select_from(ACTIVITIES)) == 0
        outbox.flush()
    assert [r["activity_id"] for r in env.rows()] == ids
    for _ in range(4):
        await env.cycle(advance_s=60)
    arrived = [o.rsplit("/", 1)[1] for o in env.sink.objects()]
    assert arrived == ["post", "post", "c1", "c2"]
    assert {r["state"] for r in env.rows()} == {"delivered"}


async def test_create_update_delete_stay_in_order(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(503) if n == 1 else Answer()
    env.publish("p1")
    env.publish("p1", kind="Update")
    await env.cycle()
    assert len(env.sink.hits) == 1  # the Update waits for the Create
    await env.cycle(advance_s=60)
    await env.cycle(advance_s=60)
    assert [h.activity["type"] for h in env.sink.hits] == ["Create", "Create", "Update"]


async def test_a_failed_parent_parks_its_dependants(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(403, "banned")
    env.publish("post")
    env.publish("c1", depends_on="post")
    env.publish("c2", depends_on="c1")
    env.publish("other")
    await env.cycle()
    states = [r["state"] for r in env.rows()]
    assert states == ["failed", "parked", "parked", "failed"]
    assert "which failed: HTTP 403: banned" in env.rows()[1]["last_error"]
    assert env.status()["deliveries"]["by_state"]["parked"] == 2


async def test_a_request_cut_short_is_repeated_with_the_same_id(env: Env) -> None:
    activity = env.publish("p1")
    with write_transaction(env.engine) as conn:
        claimed = claim(
            conn,
            worker="crashed",
            now=START,
            limit=1,
            limits=env.worker.limits,
            urls=env.federation.urls,
        )
    assert len(claimed) == 1 and not claimed[0].repeat
    # The worker dies before recording anything. Before the lease expires,
    # nobody else may take the row...
    assert await env.cycle(advance_s=60) == 0
    assert env.status()["deliveries"]["by_state"]["in_flight"] == 1
    # ...after it, the row is repeated, with the id the cut attempt used.
    env.sink.script = lambda hit, n: Answer(
        400,
        json.dumps(
            {
                "error": "unknown",
                "message": "duplicate key value violates unique constraint"
                " received_activity_ap_id_key",
            }
        ),
    )
    assert await env.cycle(advance_s=120) == 1
    assert env.sink.hits[0].activity["id"].endswith(activity)
    assert env.row()["state"] == "delivered"  # the duplicate proves the first attempt arrived


async def test_a_duplicate_answer_to_a_fresh_attempt_is_a_failure(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(400, json.dumps({"error": "couldnt_create"}))
    env.publish("p1")
    await env.cycle()
    assert env.row()["state"] == "failed"


async def test_dead_host_parks_new_deliveries_until_revived(tmp_path) -> None:
    from tests.delivery.conftest import make_env

    env, sink = await make_env(tmp_path, dead_after_s=6 * 3600)
    try:
        await sink.stop()
        env.publish("p1")
        for _ in range(5):
            await env.cycle(advance_s=3 * 3600)
        assert env.status()["hosts"][0]["dead"]
        env.publish("p2")
        parked = env.rows()[1]
        assert parked["state"] == "parked" and parked["last_error"].startswith(PARKED_DEAD)
        await sink.start()
        with write_transaction(env.engine) as conn:
            assert operate.revive(conn, sink.base.removeprefix("http://"), env.clock.now()) == 1
        await env.cycle()
        assert env.rows()[1]["state"] == "delivered"
    finally:
        await sink.stop()
        await env.worker.sender.close()
        env.engine.dispose()


async def test_retry_cancel_and_prune(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(404) if n == 1 else Answer()
    env.publish("p1")
    env.publish("p2")
    await env.cycle()
    states = sorted(r["state"] for r in env.rows())
    assert states == ["delivered", "failed"]
    with write_transaction(env.engine) as conn:
        assert operate.retry(conn, now=env.clock.now(), failed=True, host=None) == 1
    await env.cycle()
    assert {r["state"] for r in env.rows()} == {"delivered"}
    env.publish("p3")
    with write_transaction(env.engine) as conn:
        assert operate.cancel(conn, now=env.clock.now(), host=None, activity=None) == 1
    assert await env.cycle() == 0
    env.clock.advance(timedelta(days=30))
    with write_transaction(env.engine) as conn:
        deliveries, _ = operate.prune(conn, now=env.clock.now(), retention_days=14)
    assert deliveries == 2
    assert [r["state"] for r in env.rows()] == ["cancelled"]


async def test_status_has_the_documented_shape(env: Env) -> None:
    env.publish("p1")
    report = env.status()
    assert set(report["deliveries"]["by_state"]) == {
        "pending",
        "in_flight",
        "retrying",
        "delivered",
        "failed",
        "cancelled",
        "parked",
    }
    assert report["deliveries"]["by_state"]["pending"] == 1
    assert report["deliveries"]["outstanding"] == 1
    assert report["followers"] == 0 and isinstance(report["hosts"], list)
    json.dumps(report)


async def test_per_host_limit_holds_across_workers(tmp_path) -> None:
    from tests.delivery.conftest import make_env

    env, sink = await make_env(tmp_path, per_host_concurrency=2)
    try:
        for n in range(6):
            env.publish(f"p{n}")
        limits, urls = env.worker.limits, env.federation.urls
        with write_transaction(env.engine) as conn:
            first = claim(conn, worker="w1", now=START, limit=10, limits=limits, urls=urls)
        with write_transaction(env.engine) as conn:
            second = claim(conn, worker="w2", now=START, limit=10, limits=limits, urls=urls)
        assert len(first) == 2 and second == []
    finally:
        await sink.stop()
        await env.worker.sender.close()
        env.engine.dispose()


async def test_a_second_claimer_on_sqlite_is_refused(env: Env) -> None:
    database = env.engine.url.database
    first = ClaimerLock(database)
    first.acquire()
    try:
        with pytest.raises(MirrorError, match="already delivering"):
            ClaimerLock(database).acquire()
    finally:
        first.release()


async def test_graceful_stop_finishes_in_flight_and_releases_the_rest(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(delay_s=0.2)
    for n in range(3):
        env.publish(f"p{n}")
    stop = asyncio.Event()
    task = asyncio.create_task(env.worker.run(stop, grace_s=2))
    await asyncio.sleep(0.1)
    stop.set()
    await task
    assert {r["state"] for r in env.rows()} == {"delivered"}
    # A hung request is cut at the grace period and its lease given back.
    env.sink.script = lambda hit, n: Answer(delay_s=5)
    env.publish("p9")
    stop = asyncio.Event()
    task = asyncio.create_task(env.worker.run(stop, grace_s=0.1))
    await asyncio.sleep(0.2)
    stop.set()
    await task
    last = env.rows()[-1]
    assert last["state"] == "pending" and last["locked_by"] is None


async def test_outcomes_are_kept_when_the_claim_beside_them_fails(env: Env) -> None:
    """Recording and the next claim share a transaction; a failed claim must not undo a record."""
    env.publish("post")
    env.publish("reply", depends_on="post")
    claimed = await asyncio.to_thread(env.worker._claim_sync, 10)
    assert len(claimed) == 1  # the reply waits for its post
    attempts = await asyncio.gather(*env.worker.sender.sends(claimed))
    refuse = {
        "sqlite": [
            "CREATE TRIGGER refuse_claims BEFORE UPDATE OF last_request_at ON delivery_host "
            "BEGIN SELECT RAISE(ABORT, 'claims refused'); END"
        ],
        "postgresql": [
            "CREATE FUNCTION refuse_claims() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'claims refused'; END $$",
            "CREATE TRIGGER refuse_claims BEFORE UPDATE OF last_request_at ON delivery_host "
            "FOR EACH ROW EXECUTE FUNCTION refuse_claims()",
        ],
    }[env.engine.dialect.name]
    with write_transaction(env.engine) as conn:
        for statement in refuse:
            conn.exec_driver_sql(statement)

    results, more = await asyncio.to_thread(env.worker._commit_and_claim_sync, attempts, 10)

    assert more == [] and [type(r.outcome).__name__ for r in results] == ["Delivered"]
    post, reply = env.rows()
    assert post["state"] == "delivered"
    assert reply["state"] == "pending" and reply["locked_by"] is None and reply["attempts"] == 0
    with write_transaction(env.engine) as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER refuse_claims"
            if env.engine.dialect.name == "sqlite"
            else "DROP TRIGGER refuse_claims ON delivery_host"
        )
    # With claims possible again, the next record-and-claim does both at once.
    _, more = await asyncio.to_thread(env.worker._commit_and_claim_sync, [], 10)
    assert [c.id for c in more] == [reply["id"]]
    attempts = await asyncio.gather(*env.worker.sender.sends(more))
    results, _ = await asyncio.to_thread(env.worker._commit_and_claim_sync, attempts, 10)
    assert [r["state"] for r in env.rows()] == ["delivered", "delivered"]


def _plan(conn: sa.Connection, statement: sa.Executable, params: dict) -> str:
    compiled = statement.compile(dialect=conn.dialect)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("ANALYZE")  # as the worker does at start (refresh_statistics)
        values = compiled.construct_params(params)
        args = tuple(
            str(v) if hasattr(v, "isoformat") else v
            for v in (values[name] for name in compiled.positiontup or ())
        )
        return str(conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), args).all())
    # Could the planner use the partial indexes at all, in the generic plan
    # PostgreSQL may choose for a statement psycopg prepares? Only if it sees
    # that the query's states imply the index's condition.
    numbered = statement.compile(dialect=asyncpg.dialect())
    values = numbered.construct_params(params)
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql(f"PREPARE claimable AS {numbered}")
    args = [psycopg.sql.Literal(values[name]) for name in numbered.positiontup or ()]
    execute = psycopg.sql.SQL("EXPLAIN EXECUTE claimable({})").format(
        psycopg.sql.SQL(", ").join(args)
    )
    text = execute.as_string(conn.connection.driver_connection)
    return str(conn.exec_driver_sql(text.replace("%", "%%")).all())


async def test_claims_walk_the_partial_indexes_of_outstanding_rows(env: Env) -> None:
    for name in ("a", "b", "c"):
        env.publish(name)
    await env.cycle()
    env.publish("d", depends_on="c")
    with write_transaction(env.engine) as conn:
        plan = _plan(
            conn,
            _CLAIMABLE,
            {"host": "127.0.0.1", "now": env.clock.now(), "quota": 8},
        )
    assert "ix_delivery_host_pending" in plan
    assert "ix_delivery_outstanding_order" in plan
    with env.engine.connect() as conn:
        delivered = conn.scalar(
            sa.select(sa.func.count())
            .select_from(DELIVERIES)
            .where(stored_in(DELIVERIES.c.state, State.DELIVERED))
        )
    assert delivered == 3

"""Each kind of answer ends in the right state, with the right number of attempts."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import pytest

from mirror.delivery.enqueue import TooLarge
from tests.delivery.conftest import START, Env
from tests.sink import Answer


async def test_2xx_is_delivered_with_the_exact_content_type(env: Env) -> None:
    env.publish("p1")
    assert await env.cycle() == 1
    row = env.row()
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 1, 202)
    hit = env.sink.hits[0]
    assert hit.headers["Content-Type"] == "application/activity+json"
    assert "Signature" in hit.headers and "Digest" in hit.headers
    assert hit.activity["type"] == "Create"


async def test_500_retries_with_backoff_then_delivers(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(500, "oops") if n < 3 else Answer(202)
    env.publish("p1")
    await env.cycle()
    first = env.row()
    assert (first["state"], first["attempts"], first["last_status"]) == ("pending", 1, 500)
    assert first["next_attempt_at"] > START
    assert await env.cycle() == 0  # not due yet
    await env.cycle(advance_s=11)
    second = env.row()
    assert second["attempts"] == 2
    assert second["next_attempt_at"] - START >= timedelta(seconds=11 + 10)  # doubled
    await env.cycle(advance_s=25)
    assert env.row()["state"] == "delivered" and env.row()["attempts"] == 3


@pytest.mark.parametrize(
    "first",
    [
        Answer(delay_s=2),  # read, then no answer within total_timeout_s
        Answer(503),
        Answer(500, "oops"),
        Answer(400, json.dumps({"error": "inbox_timeout"})),
    ],
    ids=["timeout", "503", "500", "lemmy-inbox_timeout"],
)
async def test_a_retry_keeps_its_activity_id_and_a_duplicate_answer_is_delivered(
    env: Env, first: Answer
) -> None:
    """Issue 19, decision "Activity ids on retry": an attempt that may have arrived
    is retried with the same id, which a receiver recognises as a repeat; Lemmy
    1.0, which recorded it, answers a duplicate, and that is a delivery."""
    env.sink.lemmy_ids = True
    env.sink.script = lambda hit, n: first if n == 1 else Answer()
    original = env.publish("p1")
    await env.cycle()
    assert env.row()["state"] == "pending"
    await env.cycle(advance_s=11)
    ids = [hit.activity["id"] for hit in env.sink.hits]
    assert len(ids) == 2 and set(ids) == {env.federation.urls.activity(original)}
    assert env.sink.hits[1].duplicate
    row = env.row()
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 2, 400)
    assert row["last_error"] == "the server already had this activity"


async def test_an_id_the_receiver_refused_is_sent_anew_when_an_operator_retries(
    env: Env,
) -> None:
    """Lemmy 1.0 records an id before checking it: after a refusal (fixed by the
    operator since) the same id would only be answered as a duplicate."""
    from mirror.db.models import Activity
    from mirror.db.session import write_transaction
    from mirror.delivery import operate

    env.sink.lemmy_ids = True
    refusal = Answer(400, json.dumps({"error": "only_mods_can_post_in_community"}))
    env.sink.script = lambda hit, n: refusal if n == 1 else Answer()
    original = env.publish("p1")
    await env.cycle()
    assert env.row()["state"] == "failed"
    with write_transaction(env.engine) as conn:
        assert operate.retry(conn, now=env.clock.now(), failed=True, host=None) == 1
    await env.cycle()
    first, second = env.sink.hits
    assert first.activity["id"].endswith(original)
    assert second.activity["id"] != first.activity["id"] and not second.duplicate
    assert second.activity["object"] == first.activity["object"]  # the object id never changes
    assert env.row()["state"] == "delivered"
    # The rebuilt activity is served at its id too.
    with env.engine.connect() as conn:
        import sqlalchemy as sa

        ids = set(conn.scalars(sa.select(Activity.id)))
    assert second.activity["id"].rsplit("/", 1)[1] in ids


async def test_429_waits_for_retry_after(env: Env) -> None:
    env.sink.script = lambda hit, n: (
        Answer(429, headers={"Retry-After": "120"}) if n == 1 else Answer()
    )
    env.publish("p1")
    await env.cycle()
    assert env.row()["next_attempt_at"] == START + timedelta(seconds=120)
    assert await env.cycle(advance_s=100) == 0
    assert await env.cycle(advance_s=20) == 1
    assert env.row()["state"] == "delivered"


async def test_a_request_that_cannot_be_sent_fails_at_once(env: Env) -> None:
    # A malformed inbox never becomes valid: no three days of retries.
    env.publish("p1", inboxes=[env.sink.inbox, "http://bücher.example/inbox"])
    assert await env.cycle() == 2
    by_inbox = {row["inbox"]: row for row in env.rows()}
    sent, refused = by_inbox[env.sink.inbox], by_inbox["http://bücher.example/inbox"]
    assert sent["state"] == "delivered"
    assert (refused["state"], refused["attempts"], refused["last_status"]) == ("failed", 1, None)
    assert refused["last_error"].startswith("not sent: http://bücher.example/inbox")
    assert "not ASCII" in refused["last_error"]


async def test_timeout_is_retried(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(delay_s=2) if n == 1 else Answer()
    env.publish("p1")
    await env.cycle()
    row = env.row()
    assert row["state"] == "pending" and row["last_status"] is None
    assert "timed out" in row["last_error"]
    await env.cycle(advance_s=11)
    assert env.row()["state"] == "delivered"


async def test_410_fails_at_once_with_the_reason(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(410, "this inbox is gone for good")
    env.publish("p1")
    await env.cycle()
    row = env.row()
    assert (row["state"], row["attempts"], row["last_status"]) == ("failed", 1, 410)
    assert "this inbox is gone for good" in row["last_error"]


async def test_lemmy_400s_are_classified_by_their_error_field(env: Env) -> None:
    answers = {
        1: Answer(400, json.dumps({"error": "inbox_timeout"})),
        2: Answer(400, json.dumps({"error": "only_mods_can_post_in_community"})),
    }
    env.sink.script = lambda hit, n: answers[n]
    env.publish("p1")
    await env.cycle()
    assert env.row()["state"] == "pending"  # transient
    await env.cycle(advance_s=11)
    row = env.row()
    assert row["state"] == "failed" and "only_mods_can_post_in_community" in row["last_error"]


async def test_lemmy_unknown_is_retried_a_few_times_then_fails(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(400, json.dumps({"error": "unknown", "message": "x"}))
    env.publish("p1")
    for _ in range(5):
        await env.cycle(advance_s=4000)
    row = env.row()
    assert row["state"] == "failed" and row["attempts"] == 3


async def test_down_host_opens_the_breaker_and_a_probe_closes_it(env: Env) -> None:
    await env.sink.stop()  # connection refused
    for n in range(4):
        env.publish(f"p{n}")
    for _ in range(3):
        await env.cycle(advance_s=4000)
    host = env.status()["hosts"][0]
    assert host["breaker"] == "open" and host["consecutive_failures"] >= 3
    assert await env.cycle() == 0  # open: nothing is sent
    await env.sink.start()
    env.clock.advance(4000)  # past every retry time and the cool-off
    assert await env.cycle() == 1  # half open: a single probe
    assert env.status()["hosts"][0]["breaker"] == "closed"
    for _ in range(3):
        await env.cycle(advance_s=4000)
    assert [r["state"] for r in env.rows()] == ["delivered"] * 4


async def test_gives_up_after_the_horizon(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(500)
    env.publish("p1")
    for _ in range(40):
        await env.cycle(advance_s=3600)
    row = env.row()
    assert row["state"] == "failed" and "gave up" in row["last_error"]


async def test_enqueueing_twice_is_a_no_op_and_shared_inboxes_group(env: Env) -> None:
    from mirror.db.session import write_transaction
    from mirror.delivery import enqueue

    activity = env.publish("p1", inboxes=[env.sink.inbox, env.sink.inbox])
    with write_transaction(env.engine) as conn:
        enqueue.enqueue(
            conn,
            activity_id=activity,
            ordering_key="k",
            depends_on=None,
            inboxes=[env.sink.inbox],
            now=START,
        )
    assert len(env.rows()) == 1


async def test_oversized_activities_are_refused_before_sending(env: Env) -> None:
    import pytest

    from mirror.db.session import write_transaction
    from mirror.delivery import enqueue
    from mirror.vocab.activities import recipe

    note = {"id": env.federation.urls.object("big"), "type": "Note", "content": "x" * 300_000}
    with pytest.raises(TooLarge, match="bytes"), write_transaction(env.engine) as conn:
        enqueue.publish(
            conn,
            urls=env.federation.urls,
            username="mirror",
            recipe=recipe("create", username="mirror", object=note, to=[], cc=[]),
            inboxes=[env.sink.inbox],
            now=START,
        )
    assert env.rows() == []


async def test_a_ban_parks_the_actors_other_deliveries_to_that_host(env: Env) -> None:
    env.sink.script = lambda hit, n: Answer(400, json.dumps({"error": "site_ban"}))
    for n in range(4):
        env.publish(f"p{n}")
    env.worker.limits = type(env.worker.limits)(per_host=1, interval_ms=0, lease_s=60)
    await env.cycle()
    states = [r["state"] for r in env.rows()]
    assert states == ["failed", "parked", "parked", "parked"]
    assert all("refuses mirror" in r["last_error"] for r in env.rows()[1:])
    assert len(env.sink.hits) == 1


async def test_failed_attempts_log_at_info_and_accepted_ones_at_debug(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    logger = "mirror.delivery.attempts_log"
    env.sink.script = lambda hit, n: Answer(500, "oops") if n == 1 else Answer(202)
    env.publish("p1")
    with caplog.at_level(logging.DEBUG, logger=logger):
        await env.cycle()
        due = env.row()["next_attempt_at"]
        await env.cycle(advance_s=11)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]
    assert [level for level, _ in lines] == [logging.INFO, logging.DEBUG]
    host = env.row()["host"]
    # What happened and what comes next, not a schedule: "took", then the due time.
    assert re.fullmatch(
        rf"delivery 1 to {re.escape(host)}: HTTP 500, attempt 1 took \d+ ms, "
        rf"next attempt at {due:%H:%M:%S} UTC",
        lines[0][1],
    ), lines[0][1]
    assert re.fullmatch(
        rf"delivery 1 to {re.escape(host)}: HTTP 202, attempt 2 took \d+ ms, delivered",
        lines[1][1],
    ), lines[1][1]
    # At info, which `serve` and `worker` run at, only the failure is written.
    caplog.clear()
    env.sink.script = lambda hit, n: Answer(202)
    env.publish("p2")
    with caplog.at_level(logging.INFO, logger=logger):
        await env.cycle()
    assert not [r for r in caplog.records if r.name == logger]


async def test_a_destination_the_guard_refuses_is_its_hosts_last_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 20: refused before any request was made, deliveries failed while
    `mirror status` showed their host healthy (a last success, no last error)."""
    from tests.delivery.conftest import make_env

    env, sink = await make_env(tmp_path, network={"allow_private_networks": False})
    try:
        env.publish("p1")
        await env.cycle()
        row = env.row()
        assert row["state"] == "failed" and row["last_status"] is None
        assert row["last_error"].startswith("not sent: ")
        assert f"add {row['host']} to [federation].allow_hosts" in row["last_error"]
        (host,) = env.status()["hosts"]
        assert host["last_error"] == row["last_error"]
        assert host["last_failure_at"] is not None and host["last_success_at"] is None
        # No request reached the host: its breaker does not count it.
        assert host["breaker"] == "closed" and host["consecutive_failures"] == 0
        assert sink.hits == []
    finally:
        await sink.stop()
        await env.worker.sender.close()
        env.engine.dispose()


async def test_a_delivery_that_cannot_be_signed_is_retried_without_blaming_the_host(
    env: Env,
) -> None:
    # "ghost"'s key was sealed with another master key, so it cannot sign:
    # the attempt is recorded and backed off (not left to loop on its lease),
    # and the host's health is untouched.
    from mirror.db.session import write_transaction
    from mirror.delivery import enqueue
    from mirror.federation.actors import BOT, create_actor
    from mirror.signatures import MasterKey
    from mirror.vocab.activities import recipe

    urls = env.federation.urls
    note = {"id": urls.object("g1"), "type": "Note", "content": "<p>g1</p>"}
    with write_transaction(env.engine) as conn:
        create_actor(conn, username="ghost", kind=BOT, master_key=MasterKey.generate(), now=START)
        enqueue.publish(
            conn,
            urls=urls,
            username="ghost",
            recipe=recipe("create", username="ghost", object=note, to=[], cc=[]),
            inboxes=[env.sink.inbox],
            now=START,
        )
    env.publish("p1")  # the same host, a signable actor
    assert await env.cycle() == 2
    ghost, sent = env.rows()
    assert (ghost["state"], ghost["attempts"], ghost["last_status"]) == ("pending", 1, None)
    assert ghost["last_error"].startswith("not signed: no key for ghost: ")
    assert ghost["next_attempt_at"] > START
    assert sent["state"] == "delivered"
    assert len(env.sink.hits) == 1
    (host,) = env.status()["hosts"]
    assert host["consecutive_failures"] == 0 and host["breaker"] == "closed"

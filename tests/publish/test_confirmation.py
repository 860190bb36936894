"""Published means stored: backfills into the sandbox's profiles, confirmed by asking it.

The sandbox behaves as Lemmy or PieFed do (refusals with 400 or 200, a
new-account post limit, replies to unknown parents refused, resolve_object)
and shares the service's clock, which a test moves a day forward.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from mirror.clock import ShiftedClock
from mirror.db.session import write_transaction
from mirror.inspection import build_document
from mirror.publish import publications
from mirror.publish.backfill import PUBLICATIONS
from mirror.publish.plan import Options, build_plan
from mirror.publish.prepare import object_id_for
from mirror.publish.start import start_backfill
from mirror.sandbox.app import Instance
from tests.publish.test_backfill import handle, mirror_service, settled, wait_for_run
from tests.server.conftest import Service
from tests.server.test_observe import METRICS_TOKEN, samples, scrape_text


def stored_ids(sandbox: Instance) -> set[str]:
    return {i for i, item in sandbox.objects.items() if not item.deleted}


def confirmed_urls(service: Service, run_id: int) -> set[str]:
    with service.engine.connect() as conn:
        rows = conn.execute(
            sa.select(PUBLICATIONS.c.id).where(
                PUBLICATIONS.c.run_id == run_id, PUBLICATIONS.c.state == "confirmed"
            )
        ).scalars()
        return {service.federation.urls.object(i) for i in rows}


@pytest.mark.parametrize("refusals", [200, 400])
async def test_a_fresh_bot_into_piefed_is_confirmed_as_stored_then_the_rest_a_day_later(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any], refusals: int
) -> None:
    clock = ShiftedClock()
    service = await mirror_service_with(service_factory, clock)
    sandbox = await sandbox_factory("piefed", clock=clock, refusal_status=refusals)
    target, report = await start_backfill(service.federation, to=handle(sandbox))
    posts, comments = report.planned["posts"], report.planned["comments"]
    # PieFed takes 4 posts from an account younger than a day: we send 3; every
    # comment waits for its post to be confirmed.
    assert report.deliveries == 3 and report.waiting == posts - 3 + comments

    first = await settled(service, report.run_id)
    # What the run reports as confirmed is exactly what the sandbox stored.
    assert confirmed_urls(service, report.run_id) == stored_ids(sandbox)
    assert first["confirmed"] == len(sandbox.objects) > 3
    assert first["waiting"] == posts + comments - first["confirmed"], str(first)
    assert first["refused"] == first["missing"] == first["failed"] == 0
    assert sandbox.refused == []  # the limit was honoured, not hit
    with service.engine.connect() as conn:
        reasons = publications.not_confirmed(conn, run_id=report.run_id)
    assert any("can_create_post" in (r["reason"] or "") for r in reasons)
    assert any("parent" in (r["reason"] or "") for r in reasons)
    # The metrics say the same.
    metrics = samples((await scrape_text(service)).decode())
    for state in ("confirmed", "waiting", "sent", "missing", "refused"):
        assert metrics[("mirror_publications", (("state", state),))] == first[state]

    clock.advance(timedelta(hours=24, minutes=16))
    done = await wait_for_run(service, report.run_id, timeout=120)
    items = done["publications"]
    assert items["confirmed"] == posts + comments, done
    assert items["unverifiable"] == report.planned["followers_only"]
    assert sandbox.refused == []
    # Stored once each, every reply after its parent, with the parents of the plan.
    assert len(sandbox.objects) == posts + comments
    urls = service.federation.urls
    plan = build_plan(build_document(service.engine), Options())
    for item in plan.items:
        if item.kind != "comment":
            continue
        stored = sandbox.objects[urls.object(object_id_for(item.id, target.id))]
        parent = sandbox.objects[urls.object(object_id_for(item.reply_to, target.id))]
        assert stored.parent == parent.id and parent.number < stored.number

    _, again = await start_backfill(service.federation, to=handle(sandbox))
    assert again.queued == again.updated == again.requeued == again.deliveries == 0


async def mirror_service_with(service_factory: Callable[..., Any], clock: Any) -> Service:
    async def factory(**sections: Any) -> Service:
        return await service_factory(clock=clock, metrics={"token": METRICS_TOKEN}, **sections)

    return await mirror_service(factory, rate_per_minute=0.0)


async def test_a_stricter_limit_than_known_is_found_missing_and_published_again(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    """A server stricter than we know: its 200 refusals show as missing, with the inferred
    reason, and go again (new activity ids) once the account is old enough."""
    clock = ShiftedClock()

    async def factory(**sections: Any) -> Service:
        return await service_factory(clock=clock, confirm={"window_s": 3.0}, **sections)

    service = await mirror_service(factory, rate_per_minute=0.0)
    # It takes one post from a young account; we send three.
    sandbox = await sandbox_factory("piefed", clock=clock, new_account_posts=0)
    _, report = await start_backfill(service.federation, to=handle(sandbox))
    first = await settled(service, report.run_id)
    assert first["confirmed"] >= 1 and first["missing"] == 2, first
    with service.engine.connect() as conn:
        missing = [
            r
            for r in publications.not_confirmed(conn, run_id=report.run_id)
            if r["state"] == "missing"
        ]
    assert "probably the new-account limit" in missing[0]["reason"]
    assert len(sandbox.refused) == 2  # answered 200, refused all the same

    clock.advance(timedelta(hours=24, minutes=16))
    done = await wait_for_run(service, report.run_id, timeout=120)
    items = done["publications"]
    posts, comments = report.planned["posts"], report.planned["comments"]
    assert items["confirmed"] == posts + comments, done
    with service.engine.connect() as conn:
        sends = dict(
            conn.execute(
                sa.select(PUBLICATIONS.c.id, PUBLICATIONS.c.sends).where(
                    PUBLICATIONS.c.kind == "post"
                )
            ).all()
        )
    assert sorted(sends.values()).count(2) == 2  # the two missing ones, published again


async def test_a_500_for_one_object_fails_it_and_parks_its_replies_only(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirror_service(service_factory, rate_per_minute=0.0)
    sandbox = await sandbox_factory("lemmy")
    target = sandbox.group_id
    document = build_document(service.engine)
    plan = build_plan(document, Options())
    commented = next(
        i.reply_to for i in plan.items if i.kind == "comment" and i.reply_to and i.depth == 1
    )
    poisoned = service.federation.urls.object(object_id_for(commented, target))
    sandbox.fail_objects.add(poisoned)
    _, report = await start_backfill(service.federation, to=handle(sandbox))
    done = await wait_for_run(service, report.run_id, timeout=120)
    items = done["publications"]
    assert items["failed"] == 1 and items["parked"] >= 1, done
    assert (
        items["confirmed"] + items["failed"] + items["parked"] + items["unverifiable"]
        == (done["total"])
    )
    with service.engine.connect() as conn:
        groups = publications.not_confirmed(conn, run_id=report.run_id)
        breaker = conn.execute(
            sa.text("SELECT breaker_open_until FROM delivery_host WHERE host = :h"),
            {"h": sandbox.host.lower()},
        ).scalar()
    (failed,) = [g for g in groups if g["state"] == "failed"]
    assert "HTTP 500" in failed["reason"] and "3 times" in failed["reason"]
    # Its replies name it; theirs name them.
    parked = [g["reason"] for g in groups if g["state"] == "parked"]
    assert any("which is failed" in r for r in parked)
    assert all("which is failed" in r or "which is parked" in r for r in parked)
    assert breaker is None  # the host's breaker never opened
    assert poisoned not in sandbox.objects


async def test_retry_unconfirmed_sends_what_waits_now(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    """An operator who got the account approved need not wait for the day to pass."""
    clock = ShiftedClock()
    service = await mirror_service_with(service_factory, clock)
    sandbox = await sandbox_factory("piefed", clock=clock, new_account_limit=False)
    _, report = await start_backfill(service.federation, to=handle(sandbox))
    first = await settled(service, report.run_id)
    assert first["waiting"] > 0
    with write_transaction(service.engine) as conn:
        assert publications.retry_unconfirmed(conn, now=clock.now(), run_id=report.run_id) > 0
    done = await wait_for_run(service, report.run_id, timeout=120)
    posts, comments = report.planned["posts"], report.planned["comments"]
    assert done["publications"]["confirmed"] == posts + comments, done

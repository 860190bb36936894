"""Hosted communities over real HTTP: the Group as Lemmy shapes it, followed, read-only."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mirror.db.models import Follower
from mirror.db.session import write_transaction
from mirror.federation.communities import host, unhost
from mirror.ingest.files import ingest_paths, sample_files
from mirror.signatures import MasterKey
from tests.conftest import CAPTURED, LEMMY_EXAMPLES
from tests.peer import Peer
from tests.server.conftest import Service, wait_for

AP = "application/activity+json"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAME = "bikerepair"


def host_samples(service: Service, name: str | None = NAME, **kw: str) -> str:
    """Ingest the project's samples and host their bike community; returns its name."""
    clock = service.federation.clock
    ingest_paths(service.engine, sample_files(), clock=clock, captured_at=CAPTURED)
    with write_transaction(service.engine) as conn:
        outcome = host(
            conn,
            source=kw.pop("source", "bikerepair@bikes.example"),
            name=name,
            master_key=service.master_key,
            now=clock.now(),
            bot_username="mirror",
            **kw,
        )
    return outcome.hosted.name


@pytest.fixture
async def hosted(service: Service) -> Service:
    host_samples(service)
    return service


def followers_of(service: Service, name: str) -> list[tuple[str, str, str | None]]:
    with service.engine.connect() as conn:
        rows = conn.execute(
            sa.select(Follower.actor_url, Follower.state, Follower.shared_inbox).where(
                Follower.local_username == name
            )
        )
        return [tuple(r) for r in rows]


async def _group(service: Service) -> dict:
    status, headers, body = await service.get(f"/c/{NAME}")
    assert status == 200 and headers["Content-Type"] == AP
    return json.loads(body)


def _check_lemmy_shape(group: dict, lemmy_group: dict, service: Service) -> None:
    """Every field of Lemmy's own Group but its pictures, languages and tags, as Lemmy has them."""
    optional = {"icon", "image", "language", "tag", "updated", "description"}
    assert set(lemmy_group) - optional <= set(group)
    for key, value in lemmy_group.items():
        if key in group and key not in optional:
            assert type(group[key]) is type(value), key
    assert set(group["publicKey"]) == set(lemmy_group["publicKey"])
    assert set(group["source"]) == set(lemmy_group["source"])
    base = f"{service.base}/c/{NAME}"
    assert group["id"] == base and group["type"] == "Group"
    assert group["preferredUsername"] == NAME
    assert group["inbox"] == f"{base}/inbox"
    assert group["outbox"] == f"{base}/outbox"
    assert group["followers"] == f"{base}/followers"
    assert group["featured"] == f"{base}/featured"
    assert group["attributedTo"] == f"{base}/moderators"
    assert group["publicKey"] == {
        "id": f"{base}#main-key",
        "owner": base,
        "publicKeyPem": group["publicKey"]["publicKeyPem"],
    }
    assert group["endpoints"] == {"sharedInbox": f"{service.base}/inbox"}
    assert group["postingRestrictedToMods"] is False
    assert group["published"].endswith("Z")


async def test_group_has_the_shape_of_lemmys_own(hosted: Service) -> None:
    group = await _group(hosted)
    _check_lemmy_shape(group, json.loads((FIXTURES / "lemmy/group.json").read_text()), hosted)
    assert group["name"] == "Archive of Bike Repair // Workshop"
    # It says it is an archive, and links the original community.
    assert "read-only archive" in group["summary"]
    assert 'href="https://bikes.example/c/bikerepair"' in group["summary"]
    assert "(https://bikes.example/c/bikerepair)" in group["source"]["content"]
    assert group["source"]["mediaType"] == "text/markdown"
    assert "the test operator" in group["summary"]
    # Its key is its own, not the bot's.
    _, _, body = await hosted.get("/u/mirror")
    assert json.loads(body)["publicKey"]["publicKeyPem"] != group["publicKey"]["publicKeyPem"]


@pytest.mark.skipif(not LEMMY_EXAMPLES.is_dir(), reason="../shared/lemmy-examples is not here")
@pytest.mark.parametrize("version", ["lemmy", "lemmy-1.0/lemmy"])
async def test_group_has_the_shape_of_lemmy_examples(hosted: Service, version: str) -> None:
    lemmy_group = json.loads((LEMMY_EXAMPLES / version / "objects/group.json").read_text())
    _check_lemmy_shape(await _group(hosted), lemmy_group, hosted)


async def test_webfinger_answers_the_group_and_still_the_bot(hosted: Service) -> None:
    host_port = hosted.base.removeprefix("http://")
    status, _, body = await hosted.get(
        f"/.well-known/webfinger?resource=acct:{NAME}@{host_port}", accept="application/jrd+json"
    )
    jrd = json.loads(body)
    assert status == 200 and jrd["subject"] == f"acct:{NAME}@{host_port}"
    self_link = next(link for link in jrd["links"] if link["rel"] == "self")
    assert self_link == {
        "rel": "self",
        "type": AP,
        "href": f"{hosted.base}/c/{NAME}",
        "properties": {"https://www.w3.org/ns/activitystreams#type": "Group"},
    }
    status, _, body = await hosted.get(f"/.well-known/webfinger?resource={hosted.base}/c/{NAME}")
    assert status == 200 and json.loads(body)["subject"] == f"acct:{NAME}@{host_port}"
    status, _, body = await hosted.get(f"/.well-known/webfinger?resource=acct:mirror@{host_port}")
    bot_link = next(link for link in json.loads(body)["links"] if link["rel"] == "self")
    assert bot_link == {"rel": "self", "type": AP, "href": f"{hosted.base}/u/mirror"}
    # One namespace, two paths: the Group is not a user, the bot not a community.
    assert (await hosted.get(f"/u/{NAME}"))[0] == 404
    assert (await hosted.get("/c/mirror"))[0] == 404
    _, _, body = await hosted.get("/nodeinfo/2.1", accept="application/json")
    assert json.loads(body)["usage"]["users"]["total"] == 1


async def test_collections(hosted: Service) -> None:
    base = f"/c/{NAME}"
    _, _, body = await hosted.get(f"{base}/moderators")
    moderators = json.loads(body)
    assert moderators["type"] == "OrderedCollection"
    assert moderators["orderedItems"] == [f"{hosted.base}/u/mirror"]
    _, _, body = await hosted.get(f"{base}/featured")
    assert json.loads(body)["orderedItems"] == [] and json.loads(body)["totalItems"] == 0
    _, _, body = await hosted.get(f"{base}/followers")
    followers = json.loads(body)
    assert followers["id"] == f"{hosted.base}{base}/followers" and followers["totalItems"] == 0
    status, headers, body = await hosted.get(f"{base}/outbox")
    outbox = json.loads(body)
    # Unpaged with its items inline (what Lemmy and PieFed read); nothing announced yet.
    assert status == 200 and headers["Content-Type"] == AP
    assert outbox["type"] == "OrderedCollection" and "first" not in outbox
    assert outbox["totalItems"] == 0 and outbox["orderedItems"] == []


async def test_follow_accept_and_undo_the_way_lemmy_does(hosted: Service, peer: Peer) -> None:
    group = await peer.discover_group(hosted.base, NAME)
    follow = peer.follow(group["id"])
    assert await peer.send(group["endpoints"]["sharedInbox"], follow) == 202
    assert followers_of(hosted, NAME) == [(peer.actor_id, "active", f"{peer.base}/inbox")]
    await wait_for(lambda: len(peer.received) == 1)
    accept = peer.received[0]
    assert accept.verified  # by httpsig, with the key the Group publishes
    assert accept.headers["Signature"].split('keyId="')[1].startswith(group["publicKey"]["id"])
    assert accept.json["type"] == "Accept" and accept.json["actor"] == group["id"]
    assert accept.json["object"]["id"] == follow["id"]
    assert accept.json["object"]["object"] == group["id"]
    _, _, body = await hosted.get(f"/c/{NAME}/followers")
    assert json.loads(body)["totalItems"] == 1
    # The bot is followed apart from the Group.
    assert followers_of(hosted, "mirror") == []
    assert await peer.send(group["inbox"], peer.undo(follow)) == 202
    assert followers_of(hosted, NAME) == [(peer.actor_id, "removed", f"{peer.base}/inbox")]


async def test_a_follower_deleted_is_removed_from_the_group(hosted: Service, peer: Peer) -> None:
    group = await peer.discover_group(hosted.base, NAME)
    await peer.send(group["inbox"], peer.follow(group["id"]))
    delete = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.actor_id}#delete",
        "type": "Delete",
        "actor": peer.actor_id,
        "object": peer.actor_id,
    }
    assert await peer.send(f"{hosted.base}/inbox", delete) == 202
    assert followers_of(hosted, NAME) == [(peer.actor_id, "removed", f"{peer.base}/inbox")]


@pytest.mark.parametrize("where", ["to", "audience", "reply"])
async def test_posts_and_replies_into_the_group_are_refused(
    hosted: Service, peer: Peer, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    group = f"{hosted.base}/c/{NAME}"
    note = {"id": f"{peer.base}/objects/n1", "type": "Note", "content": "<p>hi</p>"}
    create = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.base}/activities/c-{where}",
        "type": "Create",
        "actor": peer.actor_id,
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        "object": note,
    }
    if where == "to":
        create["cc"] = [group]
    elif where == "audience":
        create["audience"] = group
    else:
        note["to"] = [f"{group}/followers"]
    with caplog.at_level("INFO"):
        for _ in range(2):  # refused again, not taken for a duplicate
            assert await peer.send(f"{hosted.base}/inbox", create) == 403
    assert "read-only archive" in caplog.text and create["id"] in caplog.text
    # Elsewhere a Create is accepted (and ignored) as before.
    create["id"] += "-elsewhere"
    create.pop("cc", None), create.pop("audience", None), note.pop("to", None)
    assert await peer.send(f"{hosted.base}/inbox", create) == 202


async def test_community_page_lists_its_posts_with_paging(hosted: Service) -> None:
    from mirror.server.routes import communities

    status, headers, body = await hosted.get(f"/c/{NAME}", accept=BROWSER)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "read-only archive" in page and "https://bikes.example/c/bikerepair" in page
    assert "Archived posts (11)" in page
    assert page.count("<article>") == min(11, communities.PAGE_SIZE)
    original = communities.PAGE_SIZE
    communities.PAGE_SIZE = 4
    try:
        first = (await hosted.get(f"/c/{NAME}", accept=BROWSER))[2].decode()
        last = (await hosted.get(f"/c/{NAME}?page=3", accept=BROWSER))[2].decode()
    finally:
        communities.PAGE_SIZE = original
    assert first.count("<article>") == 4 and 'rel="next"' in first and 'rel="prev"' not in first
    assert last.count("<article>") == 3 and 'rel="prev"' in last and 'rel="next"' not in last
    assert "page 3 of 3" in last
    assert (await hosted.get(f"/c/{NAME}?page=x", accept=BROWSER))[0] == 400


async def test_forced_unhost_answers_410_and_no_one_can_follow(hosted: Service, peer: Peer) -> None:
    group = await peer.discover_group(hosted.base, NAME)
    await peer.send(group["inbox"], peer.follow(group["id"]))
    now = datetime.now(UTC)
    with write_transaction(hosted.engine) as conn:
        unhost(conn, NAME, force=True, now=now)
    status, headers, body = await hosted.get(f"/c/{NAME}")
    assert status == 410 and json.loads(body)["formerType"] == "Group"
    assert headers["Content-Type"] == AP
    host_port = hosted.base.removeprefix("http://")
    assert (await hosted.get(f"/.well-known/webfinger?resource=acct:{NAME}@{host_port}"))[0] == 404
    other = Peer(username="bob")
    await other.start()
    try:
        assert await other.send(f"{hosted.base}/inbox", other.follow(group["id"])) == 202
        assert [r[0] for r in followers_of(hosted, NAME)] == [peer.actor_id]
    finally:
        await other.close()


async def test_serve_applies_the_hosted_tables_of_the_config(hosted: Service) -> None:
    from dataclasses import replace

    from mirror.config import HostedEntry
    from mirror.federation.service import Federation
    from mirror.server.app import apply_hosted_config

    settings = replace(hosted.settings, hosted=(HostedEntry("Seed Savers", "seeds", "Seeds"),))
    federation = Federation(
        settings=settings,
        engine=hosted.engine,
        clock=hosted.federation.clock,
        master_key=hosted.master_key,
    )
    lines = await asyncio.to_thread(apply_hosted_config, federation)
    assert "[[hosted]] seeds: created" in lines
    assert any(line.startswith(f"{NAME} is hosted but not in [[hosted]]") for line in lines)
    group = await peer_free_group(hosted, "seeds")
    assert group["name"] == "Seeds" and "Seed Savers@lemmy.example" in group["summary"]
    # A source known by its title only links its instance, not a /c/ path it does not know.
    assert 'href="https://lemmy.example/"' in group["summary"]


async def peer_free_group(service: Service, name: str) -> dict:
    status, _, body = await service.get(f"/c/{name}")
    assert status == 200
    return json.loads(body)


@pytest.mark.postgres
def test_hosting_on_postgresql(pg_engine: sa.Engine, clock) -> None:
    ingest_paths(pg_engine, sample_files(), clock=clock, captured_at=CAPTURED)
    key = MasterKey.generate()
    with write_transaction(pg_engine) as conn:
        outcome = host(
            conn,
            source="bikerepair@bikes.example",
            master_key=key,
            now=clock.now(),
            bot_username="mirror",
        )
    assert outcome.action == "created" and outcome.hosted.name == "bikerepair_bikes"
    with write_transaction(pg_engine) as conn:
        said = unhost(conn, "bikerepair_bikes", force=False, now=clock.now())
    assert "free again" in said

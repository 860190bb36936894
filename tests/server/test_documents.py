"""What the service serves: discovery, actor, collections, objects, in the shapes peers expect."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mirror.db.models import ApObject
from mirror.db.session import write_transaction
from mirror.signatures import sign_request
from tests.conftest import LEMMY_EXAMPLES, needs_lemmy_examples
from tests.peer import Peer
from tests.server.conftest import Service

LEMMY = LEMMY_EXAMPLES
AP = "application/activity+json"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def fixture(path: str) -> dict:
    """One of Lemmy's own example documents; skips without ../shared."""
    if not LEMMY.is_dir():
        pytest.skip("../shared/lemmy-examples is not here (a plain clone)")
    return json.loads((LEMMY / path).read_text())


async def test_webfinger_by_acct_and_by_url(service: Service) -> None:
    host = service.base.removeprefix("http://")
    status, headers, body = await service.get(
        f"/.well-known/webfinger?resource=acct:mirror@{host}", accept="application/jrd+json"
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/jrd+json")
    jrd = json.loads(body)
    assert jrd["subject"] == f"acct:mirror@{host}"
    self_link = next(link for link in jrd["links"] if link["rel"] == "self")
    assert self_link == {"rel": "self", "type": AP, "href": f"{service.base}/u/mirror"}
    status, _, body = await service.get(f"/.well-known/webfinger?resource={service.base}/u/mirror")
    assert status == 200 and json.loads(body)["subject"] == f"acct:mirror@{host}"


async def test_webfinger_refusals(service: Service) -> None:
    assert (await service.get("/.well-known/webfinger"))[0] == 400
    host = service.base.removeprefix("http://")
    assert (await service.get(f"/.well-known/webfinger?resource=acct:nobody@{host}"))[0] == 404
    assert (await service.get("/.well-known/webfinger?resource=acct:mirror@elsewhere.example"))[
        0
    ] == 404


async def test_host_meta_and_nodeinfo(service: Service) -> None:
    status, headers, body = await service.get(
        "/.well-known/host-meta", accept="application/xrd+xml"
    )
    assert status == 200 and b"/.well-known/webfinger?resource={uri}" in body
    status, _, body = await service.get("/.well-known/nodeinfo", accept="application/json")
    link = json.loads(body)["links"][0]
    assert link["rel"] == "http://nodeinfo.diaspora.software/ns/schema/2.1"
    status, headers, body = await service.get(link["href"].removeprefix(service.base))
    info = json.loads(body)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert info["version"] == "2.1"
    assert info["software"]["name"] == "fedimirror"
    assert info["protocols"] == ["activitypub"]
    assert info["openRegistrations"] is False
    assert info["usage"]["users"]["total"] == 1


async def test_landing_page_answers_quickly_with_html(service: Service) -> None:
    status, headers, body = await service.get("/", accept=AP)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"mirror" in body


async def test_actor_document_has_what_lemmy_and_mastodon_read(service: Service) -> None:
    status, headers, body = await service.get("/u/mirror")
    assert status == 200
    assert headers["Content-Type"] == AP  # exactly: Lemmy compares the string
    actor = json.loads(body)
    lemmy_person = fixture("lemmy/objects/person.json")
    required = {
        "id",
        "type",
        "preferredUsername",
        "inbox",
        "outbox",
        "endpoints",
        "publicKey",
        "published",
    }
    assert required <= set(actor) & set(lemmy_person) | {"type"}
    assert actor["id"] == f"{service.base}/u/mirror"  # equal to the URL it is served at
    assert actor["type"] == "Service"
    assert set(actor["publicKey"]) == set(lemmy_person["publicKey"])
    assert actor["publicKey"]["owner"] == actor["id"]
    assert actor["publicKey"]["id"] == actor["id"] + "#main-key"
    assert actor["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert actor["endpoints"] == {"sharedInbox": f"{service.base}/inbox"}
    assert actor["manuallyApprovesFollowers"] is False
    assert actor["discoverable"] is True
    assert actor["published"].endswith("Z")
    assert "mirror" in actor["summary"] and "the test operator" in actor["summary"]
    for key in ("id", "inbox", "outbox", "followers"):
        assert len(actor[key]) <= 255


async def test_actor_profile_page_for_browsers(service: Service) -> None:
    status, headers, body = await service.get("/u/mirror", accept=BROWSER)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "automated mirror" in page and "the test operator" in page
    assert (await service.get("/u/nobody"))[0] == 404


async def test_outbox_and_followers_collections(service: Service, peer: Peer) -> None:
    status, headers, body = await service.get("/u/mirror/outbox")
    assert status == 200
    outbox = json.loads(body)
    assert headers["Content-Type"] == AP
    assert outbox["type"] == "OrderedCollection" and outbox["totalItems"] == 0
    _, _, body = await service.get(outbox["first"].removeprefix(service.base))
    page = json.loads(body)
    assert page["type"] == "OrderedCollectionPage" and page["orderedItems"] == []
    assert (await service.get("/u/mirror/outbox?page=0"))[0] == 400
    _status, _, body = await service.get("/u/mirror/followers")
    followers = json.loads(body)
    assert followers == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{service.base}/u/mirror/followers",
        "type": "OrderedCollection",
        "totalItems": 0,
    }


async def test_followers_list_is_shown_when_configured(service_factory, peer: Peer) -> None:
    from tests.server.test_inbox import deliver

    service = await service_factory(federation={"followers_visible": True})
    await deliver(service, peer, peer.follow(f"{service.base}/u/mirror"))
    _, _, body = await service.get("/u/mirror/followers")
    document = json.loads(body)
    assert document["totalItems"] == 1 and document["orderedItems"] == [peer.actor_id]


def _store_object(
    service: Service, object_id: str, document: dict, *, deleted: bool = False
) -> None:
    now = datetime.now(UTC)
    with write_transaction(service.engine) as conn:
        conn.execute(
            sa.insert(ApObject.__table__),
            [
                {
                    "id": object_id,
                    "actor": "mirror",
                    "type": document["type"],
                    "json": document,
                    "created_at": now,
                    "updated_at": now,
                    "deleted_at": now if deleted else None,
                }
            ],
        )


async def test_objects_are_served_exactly_as_stored(service: Service) -> None:
    page = fixture("lemmy/objects/page.json")
    page["id"] = f"{service.base}/objects/p1"
    _store_object(service, "p1", page)
    status, headers, body = await service.get("/objects/p1")
    assert status == 200 and headers["Content-Type"] == AP
    assert json.loads(body) == page
    status, headers, body = await service.get("/objects/p1", accept=BROWSER)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "mirrored copy" in body.decode()
    assert (await service.get("/objects/nope"))[0] == 404


async def test_deleted_objects_answer_410_with_a_tombstone(service: Service) -> None:
    note = {"id": f"{service.base}/objects/c1", "type": "Note", "content": "<p>hi</p>"}
    _store_object(service, "c1", note, deleted=True)
    status, headers, body = await service.get("/objects/c1")
    tombstone = json.loads(body)
    assert status == 410 and headers["Content-Type"] == AP
    assert tombstone["type"] == "Tombstone" and tombstone["id"] == note["id"]
    assert tombstone["formerType"] == "Note"
    status, _, body = await service.get("/objects/c1", accept=BROWSER)
    assert status == 410 and "This mirrored comment was withdrawn on" in body.decode()
    assert set(fixture("lemmy/objects/tombstone.json")) - {"@context"} <= set(tombstone) | {
        "deleted"
    }


async def test_authorized_fetch_requires_a_signature(service_factory, peer: Peer) -> None:
    service = await service_factory(federation={"authorized_fetch": True})
    assert (await service.get("/u/mirror"))[0] == 401
    headers = sign_request(
        "GET",
        f"{service.base}/u/mirror",
        key_id=peer.key_id,
        private_key=peer.key,
        now=datetime.now(UTC),
    )
    status, _, body = await service.get("/u/mirror", headers=headers)
    assert status == 200 and json.loads(body)["type"] == "Service"
    # WebFinger and NodeInfo stay open; browsers still get the HTML page.
    host = service.base.removeprefix("http://")
    assert (await service.get(f"/.well-known/webfinger?resource=acct:mirror@{host}"))[0] == 200
    assert (await service.get("/u/mirror", accept=BROWSER))[0] == 200


@needs_lemmy_examples
def test_lemmy_examples_are_present() -> None:
    assert Path(LEMMY / "lemmy/objects/person.json").exists()

"""The pages people read: a mirrored post with its thread, a comment in context, a profile.

The samples are ingested and backfilled (puppets) into a sandbox; the pages
are read as HTML over loopback, and once more in headless Chromium, which
also takes screenshots.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from mirror.clock import FrozenClock
from mirror.db.models import Activity, ApObject, BackfillRun, Publication
from mirror.db.session import write_transaction
from mirror.ingest.files import ingest_paths, sample_files
from mirror.publish.start import start_backfill
from mirror.server.routes import actors
from tests.conftest import CAPTURED
from tests.server.conftest import Service
from tests.server.html_tree import Element, parse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
#: What leaked when pages printed the Markdown source instead of the HTML.
MARKDOWN = ("\\!", "\\_", "\\*", "*Mirrored", "](<", "](http")
POST = "Creaking bottom bracket that only creaks under load"
#: thread_full_bikes.txt (mirror/samples/README.md): first words -> its parent's.
THREAD = {
    "Check the seatpost": None,
    "The seatpost is carbon": "Check the seatpost",
    "Then pull it out": "The seatpost is carbon",
    "That was it!": "Then pull it out",
    "Also look at the saddle": "Check the seatpost",
    "If it does turn out": None,
    "Only if the shell": "If it does turn out",
    "Good point, I forgot": "Only if the shell",
    "Quick release skewers": None,
    "Which bottom bracket": None,
    "BSA threaded": "Which bottom bracket",
}


async def mirrored(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any], **sections: Any
) -> Service:
    """The samples, backfilled with puppets (queued; the pages need no delivery)."""
    service = await service_factory(worker=False, backfill={"attribution": "puppets"}, **sections)
    await asyncio.to_thread(
        ingest_paths,
        service.engine,
        sample_files(),
        clock=FrozenClock(CAPTURED),
        captured_at=CAPTURED,
    )
    sandbox = await sandbox_factory()
    await start_backfill(service.federation, to=f"sandbox@{sandbox.host}")
    return service


def published(service: Service) -> list[Any]:
    """Every object with its publication's kind, and the words a reader sees first."""
    from mirror.server.display import title_of

    with service.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ApObject.id, ApObject.actor, ApObject.json, Publication.kind).join(
                Publication, Publication.id == ApObject.id
            )
        ).all()
    return [(row.id, row.actor, row.kind, title_of(row.json, limit=10_000)) for row in rows]


def object_id(service: Service, first_words: str) -> str:
    found = [oid for oid, _, _, text in published(service) if text.startswith(first_words)]
    assert len(found) == 1, (first_words, found)
    return found[0]


async def page(service: Service, path: str) -> Element:
    status, headers, body = await service.get(path, accept=BROWSER)
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("text/html")
    return parse(body.decode())


def visible(tree: Element) -> str:
    return tree.find("body").text()


def enclosing_comment(element: Element) -> Element | None:
    node = element.parent
    while node is not None and node.tag != "li":
        node = node.parent
    return node


async def test_a_post_page_renders_its_content_and_its_whole_thread_nested(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirrored(service_factory, sandbox_factory)
    urls = service.federation.urls
    post = object_id(service, POST)
    ids = {words: object_id(service, words) for words in THREAD}
    tree = await page(service, f"/objects/{post}")

    text = visible(tree)
    assert not [m for m in MARKDOWN if m in text], text
    assert tree.find("h1").text() == POST
    meta = tree.find("article", class_="item").find("p", class_="meta")
    assert "by ana_spokes@bikes.example in bikerepair@bikes.example" in meta.text()
    assert "41 points" in meta.text()
    # The attribution's links are links, to the originals.
    attribution = tree.find("div", class_="attribution")
    assert [(a.attrs["href"], a.text()) for a in attribution.find_all("a")] == [
        ("https://bikes.example/u/ana_spokes", "ana_spokes@bikes.example"),
        ("https://bikes.example/c/bikerepair", "bikerepair@bikes.example"),
    ]

    thread = tree.find("section", class_="thread")
    assert thread.find("h2").text() == "11 comments"
    items = {words: thread.find("li", id=ids[words]) for words in THREAD}
    assert len(thread.find_all("li")) == len(THREAD)
    for words, parent in THREAD.items():
        above = enclosing_comment(items[words])
        assert above is (items[parent] if parent else None), words
        assert items[words].find("div", class_="content").text().startswith(words)
    milo = items["Check the seatpost"].find("p", class_="meta")
    assert milo.find("a").attrs["href"] == "https://wheels.example/u/milo"
    assert "milo@wheels.example" in milo.text() and "12 points" in milo.text()
    # "2 days ago" on a page captured on 28 July: the day is known, not the hour.
    time = milo.find("time")
    assert time.attrs["datetime"] == "2025-07-26T12:00:00Z" and time.text() == "26 Jul 2025"
    assert time.attrs["title"] == "the archive said “2 days ago”"
    assert milo.find_all("a")[-1].attrs["href"] == urls.object(ids["Check the seatpost"])


async def test_a_comment_page_shows_its_parents_above_and_its_replies_below(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirrored(service_factory, sandbox_factory)
    urls = service.federation.urls
    comment = object_id(service, "Then pull it out")
    tree = await page(service, f"/objects/{comment}")

    context = tree.find("nav", class_="context")
    first = context.find("a")
    assert (first.attrs["href"], first.text()) == (urls.object(object_id(service, POST)), POST)
    chain = [a.attrs["id"] for a in context.find("ol", class_="chain").find_all("article")]
    assert chain == [object_id(service, "Check the seatpost"), object_id(service, "The seatpost")]
    item = tree.find("article", class_="item")
    assert item.find("h1").text() == f"Comment on “{POST}”"
    reply_to = next(p for p in item.find_all("p", class_="meta") if "In reply to" in p.text())
    link = reply_to.find("a")
    assert link.attrs["href"] == urls.object(object_id(service, "The seatpost is carbon"))
    assert link.text() == "The seatpost is carbon, if that matters. I have never taken it out."
    paragraphs = item.find("div", class_="content").find_all("p")
    assert [p.text()[:20] for p in paragraphs] == [
        "Then pull it out, cl",
        "Torque it to the num",
        "If it still creaks a",
    ]
    replies = tree.find("section", class_="thread")
    assert replies.find("h2").text() == "1 comment below this one"
    assert [li.attrs["id"] for li in replies.find_all("li")] == [object_id(service, "That was it!")]


async def test_every_object_page_shows_text_and_links_not_markdown(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
) -> None:
    service = await mirrored(service_factory, sandbox_factory)
    objects = published(service)
    assert {kind for _, _, kind, _ in objects} == {"post", "comment", "orphan"}
    for oid, _, _, _ in objects:
        tree = await page(service, f"/objects/{oid}")
        text = visible(tree)
        assert not [m for m in MARKDOWN if m in text], (oid, text)
    # A URL in a comment is a link; backslashes the author typed stay as typed.
    tree = await page(service, f"/objects/{object_id(service, 'https://seeds.example')}")
    links = tree.find("article", class_="item").find("div", class_="content").find_all("a")
    assert links[0].attrs["href"] == links[0].text() == "https://seeds.example/catalogue/2024"
    tree = await page(service, f"/objects/{object_id(service, 'The plan lives at')}")
    assert "C:\\Users\\fern\\Documents\\plot-plan.txt" in visible(tree)


async def test_a_profile_lists_posts_only_with_counts_and_pages_through_all_of_them(
    service_factory: Callable[..., Any],
    sandbox_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = await mirrored(service_factory, sandbox_factory)
    objects = published(service)
    tree = await page(service, "/u/ana_spokes_bikes_example")
    assert tree.find("span", class_="counts").text() == "1 post, 3 comments"
    assert [h.text() for h in tree.find("ol", class_="posts").find_all("h3")] == [POST]
    assert tree.find_all("nav", class_="pages") == []

    # The bot holds the posts without a known author: more than a page of them.
    monkeypatch.setattr(actors, "PROFILE_PAGE", 3)
    posts = {text for _, actor, kind, text in objects if actor == "mirror" and kind == "post"}
    comments = sum(1 for _, actor, kind, _ in objects if actor == "mirror" and kind != "post")
    assert len(posts) > 6
    seen: list[str] = []
    path: str | None = "/u/mirror"
    pages = 0
    while path is not None:
        tree = await page(service, path)
        pages += 1
        assert (
            tree.find("span", class_="counts").text() == f"{len(posts)} posts, {comments} comments"
        )
        titles = [h.text() for h in tree.find("ol", class_="posts").find_all("h3")]
        assert 0 < len(titles) <= 3
        seen += titles
        nexts = tree.find_all("a", rel="next")
        path = "/u/mirror" + nexts[0].attrs["href"] if nexts else None
    assert pages == -(-len(posts) // 3)
    assert sorted(seen) == sorted(posts)  # every post once, no comment
    status, _, body = await service.get(f"/u/mirror?page={pages + 1}", accept=BROWSER)
    assert (status, body.decode()) == (404, f"no page {pages + 1}: the profile has {pages}")
    for bad in ("0", "-1", "two"):
        status, _, _ = await service.get(f"/u/mirror?page={bad}", accept=BROWSER)
        assert status == 400


def _store_big_thread(service: Service, comments: int, per_level: int) -> list[str]:
    """A post and ``comments`` replies, ``per_level`` per level: 2,000 make 50 levels."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = service.federation.urls
    ids = ["big0", *(f"big{i}" for i in range(1, comments + 1))]
    with write_transaction(service.engine) as conn:
        run = conn.execute(
            sa.insert(BackfillRun)
            .values(
                target="https://lemmy.example/c/big",
                inbox="https://lemmy.example/inbox",
                options={},
                state="active",
                items=len(ids),
                created_at=now,
                updated_at=now,
            )
            .returning(BackfillRun.id)
        ).scalar_one()
        conn.execute(
            sa.insert(Activity).values(
                id="abig", actor="mirror", type="Create", public=True, json={}, created_at=now
            )
        )

        def parent(i: int) -> str | None:
            return None if i == 0 else ids[max(0, i - per_level)]

        conn.execute(
            sa.insert(ApObject),
            [
                {
                    "id": oid,
                    "actor": "mirror",
                    "type": "Note",
                    "json": {
                        "id": base.object(oid),
                        "type": "Note",
                        "content": f"<p>words of {oid}</p>",
                        **({"name": "A big thread"} if i == 0 else {}),
                    },
                    "created_at": now,
                    "updated_at": now,
                }
                for i, oid in enumerate(ids)
            ],
        )
        conn.execute(
            sa.insert(Publication),
            [
                {
                    "id": oid,
                    "item_id": f"x{i}",
                    "kind": "post" if i == 0 else "comment",
                    "target": "https://lemmy.example/c/big",
                    "actor": "mirror",
                    "run_id": run,
                    "activity_id": "abig",
                    "content_hash": "-",
                    "parent_id": parent(i),
                    "state": "confirmed",
                    "created_at": now,
                    "updated_at": now,
                }
                for i, oid in enumerate(ids)
            ],
        )
    return ids


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_a_post_with_2000_comments_is_read_in_a_few_queries(
    service_factory: Callable[..., Any], backend: str, request: pytest.FixtureRequest
) -> None:
    # The thread is walked by recursive queries: both backends run them.
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else ""
    # No worker: nothing else reads the database while the queries are counted.
    service = await service_factory(worker=False, database={"url": url})
    ids = _store_big_thread(service, 2000, per_level=40)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append(statement)

    event.listen(service.engine, "before_cursor_execute", count)
    try:
        tree = await page(service, "/objects/big0")
    finally:
        event.remove(service.engine, "before_cursor_execute", count)
    # The handler's lookup, then the object, its ancestors and its descendants.
    assert len(statements) <= 4, statements
    thread = tree.find("section", class_="thread")
    assert thread.find("h2").text() == "2000 comments"
    assert len(thread.find_all("li")) == 2000
    deepest = thread.find("li", id=ids[-1])
    depth = 0
    node: Element | None = deepest
    while node is not None:
        node = enclosing_comment(node)
        depth += 1 if node is not None else 0
    assert depth == 49  # 50 levels: it sits under 49 comments
    assert enclosing_comment(thread.find("li", id="big41")) is thread.find("li", id="big1")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
async def test_the_pages_in_chromium(
    service_factory: Callable[..., Any],
    sandbox_factory: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.async_api import async_playwright

    service = await mirrored(service_factory, sandbox_factory)
    monkeypatch.setattr(actors, "PROFILE_PAGE", 3)
    post = object_id(service, POST)
    comment = object_id(service, "Then pull it out")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page_ = await browser.new_page(java_script_enabled=False)

            async def show(path: str, shot: str) -> str:
                response = await page_.goto(service.base + path)
                assert response is not None and response.status == 200
                await page_.screenshot(path=tmp_path / f"{shot}.png", full_page=True)
                text = await page_.locator("body").inner_text()
                assert not [m for m in MARKDOWN if m in text], (path, text)
                return text

            text = await show(f"/objects/{post}", "post")
            assert "11 comments" in text and "41 points" in text
            outer = object_id(service, "Check the seatpost")
            inner = object_id(service, "That was it!")
            # Nested three levels deep, and drawn to the right of its ancestor.
            assert await page_.locator(f"li#{outer} li#{inner}").count() == 1
            outer_box = await page_.locator(f"li#{outer} > article").bounding_box()
            inner_box = await page_.locator(f"li#{inner} > article").bounding_box()
            assert outer_box and inner_box and inner_box["x"] > outer_box["x"] + 30
            assert await page_.locator(".attribution a").count() == 2

            text = await show(f"/objects/{comment}", "comment")
            assert "In reply to The seatpost is carbon" in text
            await page_.click("nav.context a >> nth=0")
            assert page_.url == service.federation.urls.object(post)

            text = await show("/u/ana_spokes_bikes_example", "profile")
            assert "1 post, 3 comments" in text and POST in text
            text = await show("/u/mirror", "profile_bot")
            await page_.click("a[rel=next]")
            assert page_.url.endswith("/u/mirror?page=2")
            await page_.screenshot(path=tmp_path / "profile_bot_2.png", full_page=True)
            assert await page_.locator("a[rel=prev]").count() == 1
        finally:
            await browser.close()

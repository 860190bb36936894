"""The admin page, in real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from mirror.clock import ShiftedClock
from mirror.db.models import AdminSession, Community, Delivery
from mirror.delivery import operate
from tests.server.conftest import Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "correct horse battery staple"


async def test_admin_is_off_without_a_token(service: Service) -> None:
    assert (await service.get("/admin", accept="text/html"))[0] == 404
    assert (await service.get("/admin/login", accept="text/html"))[0] == 404


async def test_bearer_token_and_refusal(service_factory: Callable[..., Any]) -> None:
    service: Service = await service_factory(admin={"token": TOKEN})
    status, _, body = await service.get("/admin", accept="text/html")
    assert status == 401 and b"Sign in" in body and b"Delivery queue" not in body
    status, _, body = await service.get(
        "/admin", accept="text/html", headers={"Authorization": "Bearer wrong"}
    )
    assert status == 401
    status, _, body = await service.get(
        "/admin", accept="text/html", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200 and b"Delivery queue" in body


class Browser:
    """Form POSTs and GETs as a browser on ``origin`` sends them; cookies by hand."""

    def __init__(self, service: Service, origin: str | None = None) -> None:
        self.service = service
        self.origin = service.base if origin is None else origin

    async def request(
        self,
        method: str,
        path: str,
        *,
        cookie: str = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, dict[str, str], str, str]:
        """(status, headers, body, the mirror_admin cookie it set or "")."""
        sent = {**(headers or {})}
        if self.origin:
            sent["Origin"] = self.origin
        if cookie:
            sent["Cookie"] = f"mirror_admin={cookie}"
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.request(
                method, self.service.base + path, headers=sent, allow_redirects=False, **kwargs
            ) as response,
        ):
            morsel = response.cookies.get("mirror_admin")
            return (
                response.status,
                dict(response.headers),
                await response.text(),
                morsel.value if morsel is not None else "",
            )

    async def login(
        self, token: str = TOKEN, **kwargs: Any
    ) -> tuple[int, dict[str, str], str, str]:
        return await self.request("POST", "/admin/login", data={"token": token}, **kwargs)

    async def page(self, cookie: str, **kwargs: Any) -> int:
        return (await self.request("GET", "/admin", cookie=cookie, **kwargs))[0]


async def test_every_admin_answer_forbids_framing_sniffing_and_caching(
    service_factory: Callable[..., Any],
) -> None:
    # Issue 19, item 10: none of these headers were sent.
    service: Service = await service_factory(admin={"token": TOKEN})
    browser = Browser(service)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answers = [
        await browser.request("GET", "/admin"),  # 401, the sign-in form
        await browser.request("GET", "/admin/login"),
        await browser.request("GET", "/admin", headers=bearer),  # 200, the page
        await browser.login(),  # 303
        await Browser(service, "https://evil.example").login(),  # 403
    ]
    assert [a[0] for a in answers] == [401, 200, 200, 303, 403]
    for status, headers, body, _ in answers:
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, status
        assert "script-src" not in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Frame-Options"] == "DENY"
        # A page's styles carry the nonce its CSP allows, and nothing else is inline.
        nonces = set(re.findall(r"<style nonce=\"([^\"]+)\">", body))
        assert body.count("<style") == len(re.findall(r"<style nonce=", body))
        if "<style" in body:
            (nonce,) = nonces
            assert f"style-src 'nonce-{nonce}'" in csp
    # Each page gets its own nonce.
    assert answers[0][1]["Content-Security-Policy"] != answers[1][1]["Content-Security-Policy"]
    # The public pages are not the admin page's business.
    _, headers, _ = await service.get("/", accept="text/html")
    assert "Content-Security-Policy" not in headers


async def test_sign_in_and_out_need_our_origin(service_factory: Callable[..., Any]) -> None:
    # Issue 19, item 10: a foreign Origin was accepted on both.
    service: Service = await service_factory(admin={"token": TOKEN})
    for origin in ("https://evil.example", "null", f"{service.base}.evil.example"):
        status, _, body, cookie = await Browser(service, origin).login()
        assert (status, cookie) == (403, ""), origin
        assert f"must be sent from {service.base}/admin" in body
    assert (await Browser(service, "").login())[0] == 403  # neither Origin nor Referer
    referred = await Browser(service, "").login(headers={"Referer": f"{service.base}/admin"})
    assert referred[0] == 303 and referred[3]

    browser = Browser(service)
    _, _, _, cookie = await browser.login()
    assert await browser.page(cookie) == 200
    status, _, _, _ = await Browser(service, "https://evil.example").request(
        "POST", "/admin/logout", cookie=cookie
    )
    assert status == 403 and await browser.page(cookie) == 200  # still signed in


async def test_each_sign_in_is_a_session_that_ends_on_the_server(
    service_factory: Callable[..., Any],
) -> None:
    # Issue 19, item 10: the cookie was a fixed HMAC of the token, alive after sign-out.
    clock = ShiftedClock()
    service: Service = await service_factory(admin={"token": TOKEN}, clock=clock)
    browser = Browser(service)
    first, second = (await browser.login())[3], (await browser.login())[3]
    assert first and second and first != second and TOKEN not in first
    with service.engine.connect() as conn:
        stored = conn.scalars(sa.select(AdminSession.digest)).all()
    assert len(stored) == 2 and first not in stored and second not in stored  # digests only

    status, headers, _, _ = await browser.request("POST", "/admin/logout", cookie=first)
    assert (status, headers["Location"]) == (303, "/admin/login")
    assert await browser.page(first) == 401  # a copy of the cookie is worthless now
    assert await browser.page(second) == 200  # the other session is another login

    clock.advance(timedelta(hours=12, seconds=1))
    assert await browser.page(second) == 401  # expired
    third = (await browser.login())[3]
    with service.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(AdminSession)) == 1
    # A new admin token ends every session.
    settings = service.federation.settings
    service.federation.settings = replace(settings, admin=replace(settings.admin, token="new"))
    assert await browser.page(third) == 401


async def test_wrong_tokens_are_slowed_down_per_client(
    service_factory: Callable[..., Any],
) -> None:
    # Issue 19, item 10: 300 wrong tokens went through at 1,070/s.
    clock = ShiftedClock()
    service: Service = await service_factory(admin={"token": TOKEN}, clock=clock)
    browser = Browser(service)
    for attempt in range(5):
        # X-Forwarded-For from a client, not a trusted proxy: ignored, no fresh start.
        forged = {"X-Forwarded-For": f"198.51.100.{attempt}"}
        assert (await browser.login("wrong", headers=forged))[0] == 401
    status, headers, body, cookie = await browser.login()
    assert (status, cookie) == (429, "")  # not even the right token is compared now
    assert headers["Retry-After"] == "2" and "too many wrong tokens" in body
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await browser.request("GET", "/admin", headers=bearer))[0] == 429
    clock.advance(3)
    assert (await browser.login("wrong"))[0] == 401
    assert (await browser.login())[1]["Retry-After"] == "4"  # each failure doubles the wait
    clock.advance(5)
    status, _, _, cookie = await browser.login()
    assert status == 303 and cookie
    assert (await browser.login("wrong"))[0] == 401  # success started it again from zero


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    service_factory: Callable[..., Any],
) -> None:
    service: Service = await service_factory(
        admin={"token": TOKEN}, server={"trusted_proxies": ["127.0.0.0/8", "::1"]}
    )
    browser = Browser(service)

    def via_proxy(client: str) -> dict[str, str]:
        # What nginx's $proxy_add_x_forwarded_for makes of a client's own header.
        return {"X-Forwarded-For": f"203.0.113.99, {client}"}

    for _ in range(5):
        assert (await browser.login("wrong", headers=via_proxy("192.0.2.7")))[0] == 401
    assert (await browser.login(headers=via_proxy("192.0.2.7")))[0] == 429
    # Another client behind the same proxy is not held up, nor is the proxy itself.
    assert (await browser.login(headers=via_proxy("192.0.2.8")))[0] == 303
    assert (await browser.login())[0] == 303
    # IPv6 clients are counted by /64.
    for host in range(5):
        v6 = via_proxy(f"2001:db8:1:2::{host + 1}")
        assert (await browser.login("wrong", headers=v6))[0] == 401
    assert (await browser.login(headers=via_proxy("2001:db8:1:2::ff")))[0] == 429
    assert (await browser.login(headers=via_proxy("2001:db8:1:3::1")))[0] == 303


async def test_recent_deliveries_name_what_was_sent_and_page_back_to_the_first(
    service_factory: Callable[..., Any],
    sandbox_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mirror.server.routes import admin
    from tests.server.html_tree import parse
    from tests.server.test_pages import mirrored, published

    service = await mirrored(service_factory, sandbox_factory, admin={"token": TOKEN})
    monkeypatch.setattr(admin, "RECENT", 5)
    titles = {service.federation.urls.object(oid): text for oid, _, _, text in published(service)}
    with service.engine.connect() as conn:
        queued = sorted(conn.scalars(sa.select(Delivery.id)), reverse=True)
    assert len(queued) > 10  # replies wait for their parents: posts, mostly
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    seen: list[int] = []
    path: str | None = "/admin"
    while path is not None:
        status, _, body = await service.get(path, accept="text/html", headers=bearer)
        assert status == 200, body[:300]
        tree = parse(body.decode())
        rows = tree.find("table", class_="compact").find_all("tr")[1:]
        assert 0 < len(rows) <= 5
        for row in rows:
            seen.append(int(row.attrs["data-delivery"]))
            link = row.find_all("td")[1].find("a")
            # The object's title or first words, linked; never its URL as the text.
            assert "http" not in link.text()
            assert titles[link.attrs["href"]].startswith(link.text().rstrip("…"))
        older = tree.find_all("a", rel="next")
        path = older[0].attrs["href"].split("#")[0] if older else None
    assert seen == queued  # newest first, each once, down to the first
    for bad in ("x", "0", "-3"):
        status, _, _ = await service.get(f"/admin?before={bad}", accept="text/html", headers=bearer)
        assert status == 400

    # A community the dumps named only by its title is explained, not "?@host".
    communities = tree.find("h2", id="communities").parent.text()
    assert "?@" not in communities
    assert "name unknown, on lemmy.example" in communities
    assert "Pick it for a backfill by title" in communities


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
async def test_admin_page_in_chromium_shows_what_the_database_holds(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    from mirror.publish.start import start_backfill
    from tests.publish.test_backfill import handle, mirror_service, wait_for_run

    service = await mirror_service(service_factory, rate_per_minute=0.0)
    settings = service.federation.settings
    service.federation.settings = replace(settings, admin=replace(settings.admin, token=TOKEN))
    sandbox = await sandbox_factory()
    _, report = await start_backfill(service.federation, to=handle(sandbox), limit=2)
    done = await wait_for_run(service, report.run_id)
    with service.engine.connect() as conn:
        delivered = operate.status(conn, service.federation.clock.now())["deliveries"]["by_state"][
            "delivered"
        ]
        titles = [t for t in conn.scalars(sa.select(Community.title)) if t]
    assert delivered > 0 and titles

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(java_script_enabled=False)  # works without JavaScript
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            response = await page.goto(f"{service.base}/admin")
            assert response is not None and response.status == 401
            await page.fill("#token", "not the token")
            await page.click("button[type=submit]")
            assert "Sign-in failed" in await page.content()

            await page.fill("#token", TOKEN)
            await page.click("button[type=submit]")
            assert await page.title() == "fedimirror admin"
            cell = page.locator('td[data-state="delivered"]')
            assert int(await cell.inner_text()) == delivered
            run_row = page.locator(f'tr[data-run="{report.run_id}"]')
            assert sandbox.group_id in await run_row.inner_text()
            confirmed = run_row.locator('td[data-items="confirmed"]')
            items = done["publications"]
            assert await confirmed.inner_text() == f"{items['confirmed']}/{done['total']}"
            assert items["confirmed"] > 0
            assert sandbox.host.lower() in await page.locator("#hosts + table").inner_text()
            communities = await page.locator("#communities + table").inner_text()
            for title in titles:
                assert title in communities
            await page.screenshot(path=tmp_path / "admin.png", full_page=True)
            # Recent deliveries: one line a row, titles rather than object URLs.
            recent = page.locator("table.compact")
            rows = await recent.locator("tr").count()
            box = await recent.bounding_box()
            assert rows > 1 and box is not None and box["height"] < 36 * rows, (rows, box)
            assert "/objects/" not in await recent.inner_text()

            # A fresh browser without the session cookie is refused.
            other = await browser.new_page()
            response = await other.goto(f"{service.base}/admin")
            assert response is not None and response.status == 401
            assert "Delivery queue" not in await other.content()

            # The styles carry the CSP's nonce: Chromium blocked nothing.
            assert not [m for m in console if "Content Security Policy" in m], console
            # Signing out (Chromium sends our Origin with the form) ends the session.
            await page.click("text=Sign out")
            assert page.url == f"{service.base}/admin/login"
            response = await page.goto(f"{service.base}/admin")
            assert response is not None and response.status == 401
        finally:
            await browser.close()


def test_a_trusted_proxy_that_is_not_an_address_is_one_clear_line() -> None:
    from mirror.config import ServerSettings, Settings
    from mirror.errors import ConfigError
    from mirror.server.routes.access import trusted_networks

    settings = Settings(server=ServerSettings(trusted_proxies=["10.0.0.0/8", "nginx"]))
    with pytest.raises(ConfigError) as info:
        trusted_networks(settings)
    assert "[server].trusted_proxies: 'nginx' is not an IP address" in str(info.value)
    assert "\n" not in str(info.value)
    assert (
        len(trusted_networks(Settings(server=ServerSettings(trusted_proxies=["::1", "10.1.2.3"]))))
        == 2
    )

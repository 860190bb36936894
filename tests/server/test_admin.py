"""The admin page, in real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from mirror.db.models import Community
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


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
async def test_admin_page_in_chromium_shows_what_the_database_holds(
    service_factory: Callable[..., Any], sandbox_factory: Callable[..., Any]
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

            # A fresh browser without the session cookie is refused.
            other = await browser.new_page()
            response = await other.goto(f"{service.base}/admin")
            assert response is not None and response.status == 401
            assert "Delivery queue" not in await other.content()
        finally:
            await browser.close()

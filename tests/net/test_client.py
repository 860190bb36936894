"""The guarded client: private addresses refused unless allowed, limits, redirects."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.clock import SystemClock
from mirror.net.client import FetchError, fetch_json, make_session
from mirror.net.guard import ANYWHERE, PUBLIC_ONLY, is_public
from tests.peer import free_port


@pytest.fixture
async def origin():
    port = free_port()
    app = web.Application()

    async def doc(request: web.Request) -> web.Response:
        return web.json_response({"id": str(request.url)})

    async def big(request: web.Request) -> web.Response:
        return web.Response(
            body=json.dumps({"x": "y" * 5000}).encode(), content_type="application/json"
        )

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=410)

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    for path, handler in (
        ("/doc", doc),
        ("/big", big),
        ("/html", html),
        ("/gone", gone),
        ("/hop", hop),
    ):
        app.router.add_get(path, handler)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    yield f"http://127.0.0.1:{port}"
    await server.close()


async def fetch(url: str, *, allow_private: bool, max_bytes: int = 100_000):  # type: ignore[no-untyped-def]
    allowed = ANYWHERE if allow_private else PUBLIC_ONLY
    async with make_session(allowed=allowed, timeout_s=5, base_url="https://bot.example") as s:
        return await fetch_json(s, url, clock=SystemClock(), allowed=allowed, max_bytes=max_bytes)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        # Issue 19: carrier-grade NAT (cloud metadata), mapped and 6to4 forms of it.
        ("100.100.100.200", False),
        ("::ffff:100.100.100.200", False),
        ("2002:a9fe:a9fe::1", False),
        ("64:ff9b:1::a00:1", False),
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


async def test_loopback_is_refused_by_default(origin: str) -> None:
    with pytest.raises(FetchError) as info:
        await fetch(f"{origin}/doc", allow_private=False)
    assert info.value.reason == "blocked"


async def test_names_resolving_to_loopback_are_refused(origin: str) -> None:
    port = origin.rsplit(":", 1)[1]
    with pytest.raises(FetchError) as info:
        await fetch(f"http://localhost:{port}/doc", allow_private=False)
    assert info.value.reason == "blocked"


async def test_allowed_when_configured(origin: str) -> None:
    url, data = await fetch(f"{origin}/doc", allow_private=True)
    assert url == f"{origin}/doc" and data["id"] == url


async def test_redirect_targets_are_checked_again(origin: str) -> None:
    url, _data = await fetch(f"{origin}/hop?to={origin}/doc", allow_private=True)
    assert url == f"{origin}/doc"
    with pytest.raises(FetchError) as info:
        await fetch(f"{origin}/hop?to=ftp://example.org/x", allow_private=True)
    assert info.value.reason == "bad_url"


async def test_limits_and_bad_answers(origin: str) -> None:
    with pytest.raises(FetchError) as info:
        await fetch(f"{origin}/big", allow_private=True, max_bytes=1000)
    assert info.value.reason == "too_large"
    with pytest.raises(FetchError) as info:
        await fetch(f"{origin}/html", allow_private=True)
    assert info.value.reason == "not_json"
    with pytest.raises(FetchError) as info:
        await fetch(f"{origin}/gone", allow_private=True)
    assert (info.value.reason, info.value.status) == ("gone", 410)
    with pytest.raises(FetchError) as info:
        await fetch("file:///etc/passwd", allow_private=True)
    assert info.value.reason == "bad_url"

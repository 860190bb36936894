"""The delivery worker's HTTP/1.1 client against real servers on 127.0.0.1.

aiohttp servers where the server side is ordinary; asyncio stream servers
where a test needs the bytes on the wire exactly (no length, garbage, a
connection closed at a chosen moment).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mirror.net.client import FetchError
from mirror.net.guard import ANYWHERE, PUBLIC_ONLY, Allowed
from mirror.net.http1 import Http1Client
from tests.peer import free_port

BODY = b'{"type": "Create"}'


def client(**overrides: object) -> Http1Client:
    options: dict[str, object] = {
        "allowed": ANYWHERE,
        "user_agent": "fedimirror/test",
        "connect_timeout_s": 2.0,
        "total_timeout_s": 2.0,
    }
    options.update(overrides)
    return Http1Client(**options)  # type: ignore[arg-type]


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """An aiohttp inbox recording each request: peer port, headers, body."""
    seen: list[dict[str, object]] = []

    async def receive(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append({"port": peer[1] if peer else None, "headers": request.headers, "body": body})
        mode = request.query.get("answer", "")
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "refuse":
            return web.json_response(
                {"error": "unknown", "message": "x" * 10_000},
                status=400,
                headers={"retry-after": "30"},
            )
        if mode == "chunked":
            response = web.StreamResponse(status=202)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b"one ", b"two ", b"three"):
                await response.write(part)
            await response.write_eof()
            return response
        if mode == "close":
            return web.Response(status=202, headers={"Connection": "close"})
        return web.Response(status=202, text="ok")

    app = web.Application()
    app.router.add_post("/inbox", receive)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/inbox", seen
    await server.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a bare TCP server with the given handler; returns its inbox URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/inbox"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def test_posts_with_the_given_headers_and_reuses_the_connection(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    http = client()
    headers = {"Host": url.split("/")[2], "Content-Type": "application/activity+json", "X-A": "1"}
    first = await http.post(url, BODY, headers)
    second = await http.post(url, BODY, headers)
    http.close()
    assert (first.status, first.body) == (202, b"ok")
    assert second.status == 202
    assert seen[0]["port"] == seen[1]["port"]  # one keep-alive connection
    received = seen[0]["headers"]
    assert received["Host"] == url.split("/")[2]  # type: ignore[index]
    assert received.getall("Host") == [url.split("/")[2]]  # type: ignore[attr-defined]
    assert received["Content-Type"] == "application/activity+json"  # type: ignore[index]
    assert received["User-Agent"] == "fedimirror/test"  # type: ignore[index]
    assert received["Content-Length"] == str(len(BODY))  # type: ignore[index]
    assert seen[0]["body"] == BODY


async def test_keeps_the_start_of_a_long_answer_and_reads_headers_case_blind(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    http = client(keep_bytes=100)
    refused = await http.post(url + "?answer=refuse", BODY, {})
    again = await http.post(url, BODY, {})
    http.close()
    assert refused.status == 400
    assert len(refused.body) == 100 and refused.body.startswith(b'{"error": "unknown"')
    assert refused.headers.get("Retry-After") == "30"
    # The rest of the long body was read and dropped: the connection carried on.
    assert again.status == 202 and seen[0]["port"] == seen[1]["port"]


async def test_reads_a_chunked_answer(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    http = client()
    response = await http.post(url + "?answer=chunked", BODY, {})
    again = await http.post(url, BODY, {})
    http.close()
    assert (response.status, response.body) == (202, b"one two three")
    assert again.status == 202 and seen[0]["port"] == seen[1]["port"]


async def test_a_connection_close_answer_is_not_reused(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    http = client()
    assert (await http.post(url + "?answer=close", BODY, {})).status == 202
    assert (await http.post(url, BODY, {})).status == 202
    http.close()
    assert seen[0]["port"] != seen[1]["port"]


async def test_idle_connections_expire(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    http = client(idle_s=0.05)
    await http.post(url, BODY, {})
    await asyncio.sleep(0.1)
    await http.post(url, BODY, {})
    http.close()
    assert seen[0]["port"] != seen[1]["port"]


async def test_a_connection_the_server_closed_while_idle_is_replaced(raw) -> None:  # type: ignore[no-untyped-def]
    connections = []

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await read_request(reader)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()  # keep-alive announced, then closed anyway (a server's idle timeout)

    url = await raw(answer_once)
    http = client()
    assert (await http.post(url, BODY, {})).status == 202
    await asyncio.sleep(0.05)  # the close arrives while the connection is idle
    assert (await http.post(url, BODY, {})).status == 202
    http.close()
    assert len(connections) == 2


async def test_an_answer_without_length_ends_with_the_connection(raw) -> None:  # type: ignore[no-untyped-def]
    async def legacy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\naccepted, old style")
        await writer.drain()
        writer.close()

    http = client()
    response = await http.post(await raw(legacy), BODY, {})
    http.close()
    assert (response.status, response.body) == (200, b"accepted, old style")


async def test_an_interim_answer_is_skipped(raw) -> None:  # type: ignore[no-untyped-def]
    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        await writer.drain()

    http = client()
    response = await http.post(await raw(hints), BODY, {})
    http.close()
    assert (response.status, response.body) == (201, b"ok")
    assert "Link" not in response.headers


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "network"),  # not HTTP
        (b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nabc", "network"),  # cut short
        (b"", "network"),  # closed without a word
    ],
)
async def test_a_broken_answer_is_a_network_error(raw, reply: bytes, reason: str) -> None:  # type: ignore[no-untyped-def]
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    url = await raw(broken)
    http = client()
    with pytest.raises(FetchError) as caught:
        await http.post(url, BODY, {})
    http.close()
    assert caught.value.reason == reason
    assert str(caught.value).startswith(url)


async def test_total_timeout(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    http = client(total_timeout_s=0.3)
    with pytest.raises(FetchError) as caught:
        await http.post(url + "?answer=slow", BODY, {})
    assert caught.value.reason == "timeout"
    # The timed-out connection is not reused for the next request.
    assert (await http.post(url, BODY, {})).status == 202
    http.close()
    assert seen[0]["port"] != seen[1]["port"]


async def test_connection_refused() -> None:
    http = client()
    with pytest.raises(FetchError) as caught:
        await http.post(f"http://127.0.0.1:{free_port()}/inbox", BODY, {})
    assert caught.value.reason == "network"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.7"])
async def test_private_destinations_are_refused_unless_allowed(host: str) -> None:
    http = client(allowed=PUBLIC_ONLY)
    with pytest.raises(FetchError) as caught:
        await http.post(f"http://{host}:{free_port()}/inbox", BODY, {})
    assert caught.value.reason == "blocked"


async def test_an_allowed_host_port_is_delivered_to_and_no_other(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    netloc = url.split("/")[2]
    http = client(allowed=Allowed(hosts=frozenset({netloc})))
    assert (await http.post(url, BODY, {})).status == 202
    with pytest.raises(FetchError) as caught:
        await http.post(url.replace("127.0.0.1", "localhost"), BODY, {})
    http.close()
    assert caught.value.reason == "blocked"
    assert f"add localhost:{netloc.split(':')[1]} to [federation].allow_hosts" in str(caught.value)
    assert len(seen) == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/inbox",
        "http:///inbox",
        "http://example.org/in box",
        "http://example.org/in\r\nX-Evil: 1",
        "http://example.org:port/inbox",
        "http://bücher.example/inbox",
    ],
)
async def test_bad_urls_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(FetchError) as caught:
        await client().post(url, BODY, {})
    assert caught.value.reason == "bad_url"


async def test_a_header_with_a_line_break_is_refused(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    with pytest.raises(ValueError, match="line break"):
        await client().post(url, BODY, {"X-A": "1\r\nX-Evil: 2"})
    assert seen == []


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (server context, client context trusting it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


async def test_https(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls

    async def receive(request: web.Request) -> web.Response:
        return web.Response(status=202, text=f"tls {request.secure} {len(await request.read())}")

    app = web.Application()
    app.router.add_post("/inbox", receive)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server(ssl=server_context)
    try:
        url = f"https://127.0.0.1:{server.port}/inbox"
        response = await client(ssl_context=client_context).post(url, BODY, {})
        assert (response.status, response.body) == (202, f"tls True {len(BODY)}".encode())
        # The system's trust store does not know the certificate: refused.
        with pytest.raises(FetchError) as caught:
            await client().post(url, BODY, {})
        assert caught.value.reason == "network" and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    finally:
        await server.close()


async def test_an_answer_before_the_body_is_written_ends_the_connection(raw) -> None:  # type: ignore[no-untyped-def]
    connections = []

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        if len(connections) == 1:
            # Refuse on the headers alone and read no further, keeping the
            # connection open: the client is still writing the body.
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(5)
            return
        await read_request(reader)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    url = await raw(early)
    http = client()
    assert (await http.post(url, b"x" * 32_000_000, {})).status == 413
    assert (await http.post(url, BODY, {})).status == 202
    http.close()
    assert len(connections) == 2


async def test_close_ends_idle_connections_and_a_later_request_opens_new_ones(inbox) -> None:  # type: ignore[no-untyped-def]
    url, seen = inbox
    http = client()
    await http.post(url, BODY, {})
    http.close()
    await http.post(url, BODY, {})
    await http.post(url, BODY, {})
    http.close()
    ports = [hit["port"] for hit in seen]
    assert ports[0] != ports[1] and ports[1] == ports[2]  # pooled again after the reopen

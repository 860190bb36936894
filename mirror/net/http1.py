"""A lean HTTP/1.1 client for the delivery worker's POSTs.

The delivery worker is bound by the interpreter lock: signatures run on
threads outside it, and everything else a delivery costs (the request, the
queue's bookkeeping) must fit in the time of one signature. aiohttp's
client spends about 190 µs of CPU per POST on such a machine, this one
about 50 (measured against the benchmark's sink), so the worker's one hot
request path is asyncio's transports with httptools' parser (llhttp, the
parser Node.js and aiohttp use). Every other request (fetches, redirects,
signed GETs) stays on aiohttp.

What it does: keep-alive connections per origin, reused newest first and
closed after ``idle_s`` without use; the SSRF guard on every resolution
(the rule of :mod:`mirror.net.guard`); TLS with the system's trust store;
connect and total timeouts; the answer's status, headers and the first
``keep_bytes`` of its body (the rest is read and dropped, so that the
connection can be reused). What it does not: redirects, proxies,
compression, ``Expect: 100-continue``, HTTP/2. A request is never repeated
by the client: a connection the server closed under it is an error like
any other, and the queue decides about retries.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from mirror.net.client import FetchError
from mirror.net.guard import Allowance, Blocked, check_literal, public_only
from mirror.signatures.http import request_target

#: (scheme, host, port)
Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    #: The start of the body (at most the client's ``keep_bytes``).
    body: bytes


class Http1Client:
    def __init__(
        self,
        *,
        allowed: Allowance,
        user_agent: str,
        connect_timeout_s: float,
        total_timeout_s: float,
        idle_s: float = 15.0,
        dns_ttl_s: float = 300.0,
        keep_bytes: int = 4096,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allowed = allowed
        self._user_agent = user_agent
        self._connect_timeout = connect_timeout_s
        self._total_timeout = total_timeout_s
        # Shorter than common servers' keep-alive (nginx 75 s): we close an
        # idle connection before the server does, so a request rarely meets
        # a connection closing under it.
        self._idle_s = idle_s
        self._dns_ttl = dns_ttl_s
        self._keep = keep_bytes
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._addresses: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._swept = time.monotonic()
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` with ``headers`` (Host and Content-Length are the client's)."""
        origin, start = _target(url, self._user_agent)
        self._closed = False  # a worker may run again after a graceful stop
        fields = []
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"header {name!r} holds a line break")
            if name.lower() != "host":
                fields.append(f"{name}: {value}\r\n")
        data = b"".join(
            (start, "".join(fields).encode("latin-1"), b"Content-Length: %d\r\n\r\n" % len(body))
        )
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self._total_timeout):
                connection = self._reuse(origin) or await self._connect(origin)
                response = await connection.request(data + body)
        except TimeoutError:
            raise FetchError("timeout", f"{url}: timed out") from None
        except Blocked as exc:
            raise FetchError("blocked", f"{url}: {exc}") from None
        except (OSError, httptools.HttpParserError) as exc:
            raise FetchError("network", f"{url}: {type(exc).__name__}: {exc}") from None
        finally:
            if connection is not None:
                self._release(origin, connection)
        return response

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends.

        A later request opens connections again.
        """
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    # -- connections ------------------------------------------------------------

    def _reuse(self, origin: Origin) -> _Connection | None:
        now = time.monotonic()
        if now - self._swept > self._idle_s:
            self._sweep(now)
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable and now - connection.idle_since < self._idle_s:
                return connection
            connection.close()
        return None

    def _release(self, origin: Origin, connection: _Connection) -> None:
        if connection.usable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()

    def _sweep(self, now: float) -> None:
        self._swept = now
        for origin, connections in list(self._idle.items()):
            fresh = []
            for connection in connections:
                if connection.usable and now - connection.idle_since < self._idle_s:
                    fresh.append(connection)
                else:
                    connection.close()
            if fresh:
                self._idle[origin] = fresh
            else:
                del self._idle[origin]

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        failure: OSError | None = None
        for family, address in await self._resolve(host, port):
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self._keep),
                        address,
                        port,
                        family=family,
                        ssl=context,
                        server_hostname=host if context is not None else None,
                    )
                return connection
            except TimeoutError:
                failure = TimeoutError(f"connecting to {address} port {port} timed out")
            except OSError as exc:
                failure = exc
        assert failure is not None  # _resolve returns at least one address
        raise failure

    async def _resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        """Addresses to try, each checked by the guard; cached for ``dns_ttl_s``."""
        now = time.monotonic()
        cached = self._addresses.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        literal = host.strip("[]")
        if literal != host or _is_ip(literal):
            check_literal(literal, port, allowed=self._allowed)
            family = socket.AF_INET6 if ":" in literal else socket.AF_INET
            return [(family, literal)]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addresses = public_only(
            host,
            port,
            [(info[0], str(info[4][0])) for info in infos],
            lambda a: a[1],
            allowed=self._allowed,
        )
        if not addresses:
            raise OSError(f"{host} has no address")
        self._addresses[(host, port)] = (now + self._dns_ttl, addresses)
        return addresses


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, keep_bytes: int) -> None:
        self._keep = keep_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._body = bytearray()
        self._reusable = False
        self.closed = False
        self.idle_since = 0.0

    @property
    def usable(self) -> bool:
        return self._reusable and not self.closed

    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self._transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._headers, self._body = 0, [], bytearray()
        # Until the answer is complete, the connection is not to be reused
        # (a timeout or a cancellation leaves it in an unknown state).
        self._reusable = False
        self._transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._status >= 200 and not self._parser.should_keep_alive():
            # An answer without a length ends where the connection does.
            self._answer()
        else:
            self._fail(exc or ConnectionResetError("the server closed the connection"))

    # -- httptools callbacks ----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        room = self._keep - len(self._body)
        if room > 0:
            self._body += body[:room]

    def on_message_complete(self) -> None:
        if self._status < 200:
            # An interim answer (103 Early Hints): the real one follows.
            self._status, self._headers = 0, []
            return
        # An answer that came before the whole request was written (an early
        # 413, say) leaves the rest of the body in the way of the next one.
        written = self._transport is None or not self._transport.get_write_buffer_size()
        self._reusable = written and self._parser.should_keep_alive()
        self._answer()

    def _answer(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            headers = CIMultiDictProxy(CIMultiDict(self._headers))
            waiter.set_result(Response(self._status, headers, bytes(self._body)))

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


@lru_cache(maxsize=4096)
def _target(url: str, user_agent: str) -> tuple[Origin, bytes]:
    """The origin to connect to and the request's first lines, for each inbox URL once."""
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise FetchError("bad_url", f"{url}: only http(s) URLs are requested")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise FetchError("bad_url", f"{url}: the port is not a number") from None
    # Host and target exactly as the signature covers them.
    netloc, target = request_target(url)
    if not netloc.isascii():
        # No IDNA rewriting: the Host header must stay what was signed.
        raise FetchError("bad_url", f"{url}: the host name is not ASCII (use its IDNA form)")
    if any(c <= " " or c == "\x7f" for c in target) or not target.isascii():
        raise FetchError("bad_url", f"{url}: the path holds spaces or control characters")
    start = f"POST {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: {user_agent}\r\n"
    return (scheme, host, port), start.encode("ascii")

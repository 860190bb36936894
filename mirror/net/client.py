"""The one HTTP client: a guarded session, size-limited reads, signed requests.

Every request we make to another server goes through here: fetching actors
and keys (signed GETs, as Lemmy 1.0 and "authorized fetch" Mastodon expect)
and POSTing activities. Signing itself happens in mirror.signatures.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from mirror import __version__
from mirror.clock import Clock
from mirror.net.guard import Allowance, Blocked, GuardedResolver, check_literal
from mirror.signatures import sign_request
from mirror.vocab.context import ACTIVITY_JSON

#: What we ask for when fetching ActivityPub documents: exactly one type,
#: because Lemmy's reference nginx config routes a GET to the backend only
#: when Accept is exactly `application/activity+json` or exactly the ld+json
#: profile; a list of both gets lemmy-ui's HTML (lemmy docker/nginx.conf,
#: shared/docs/lemmy-receive-rules.md §3.1).
ACCEPT_ACTIVITY = ACTIVITY_JSON
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3
#: Bytes of an error response kept for the operator.
ERROR_EXCERPT = 500
DEFAULT_PORTS = {"http": 80, "https": 443}


def user_agent(base_url: str) -> str:
    return f"fedimirror/{__version__} (+{base_url})" if base_url else f"fedimirror/{__version__}"


@dataclass(frozen=True, slots=True)
class Signer:
    """An actor's key, ready to sign requests."""

    key_id: str
    private_key: rsa.RSAPrivateKey
    #: The same key as PKCS#8 PEM, for the delivery worker's signing processes.
    pem: bytes

    def __repr__(self) -> str:  # never print key material
        return f"Signer({self.key_id!r})"


class FetchError(Exception):
    """A remote fetch that failed; ``reason`` is a short code, ``status`` the HTTP status."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class PostResult:
    status: int
    headers: dict[str, str]
    #: The start of the response body (for errors and Lemmy's JSON error codes).
    body: str


def make_session(
    *,
    allowed: Allowance,
    timeout_s: float,
    base_url: str,
    limit_per_host: int = 0,
) -> aiohttp.ClientSession:
    """A client session whose connector only reaches public addresses (and those allowed)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allowed=allowed),
        # Made here, not aiohttp's context made at its import: OpenSSL reads
        # SSL_CERT_FILE / SSL_CERT_DIR when the context loads its default
        # paths, so a bundle named later (a test peer's own CA) is trusted too.
        ssl=ssl.create_default_context(),
        limit=256,
        limit_per_host=limit_per_host,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Servers talk to servers: a cookie one sets is never sent back.
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 10.0)),
        headers={"User-Agent": user_agent(base_url)},
    )


def check_url(url: str, *, allowed: Allowance) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("bad_url", f"{url}: only http(s) URLs are fetched")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise FetchError("bad_url", f"{url}: the port is not a number from 1 to 65535") from None
    try:
        check_literal(parts.hostname, port, allowed=allowed)
    except Blocked as exc:
        raise FetchError("blocked", f"{url}: {exc}") from None


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or FetchError when it is larger than ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit:
        raise FetchError("too_large", f"{response.url}: body over {limit} bytes", response.status)
    chunks = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise FetchError(
                "too_large", f"{response.url}: body over {limit} bytes", response.status
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    clock: Clock,
    allowed: Allowance,
    max_bytes: int,
    signer: Signer | None = None,
    accept: str = ACCEPT_ACTIVITY,
    max_redirects: int = MAX_REDIRECTS,
) -> tuple[str, Any]:
    """GET a JSON document (signed when a signer is given); returns (final URL, data).

    Redirects are followed by hand, at most ``max_redirects``, each target checked again.
    """
    for _ in range(max_redirects + 1):
        check_url(url, allowed=allowed)
        headers = {"Accept": accept}
        if signer is not None:
            headers.update(
                sign_request(
                    "GET",
                    url,
                    key_id=signer.key_id,
                    private_key=signer.private_key,
                    now=clock.now(),
                )
            )
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status in REDIRECTS and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status in (404, 410):
                    raise FetchError("gone", f"{url}: {response.status}", response.status)
                if not 200 <= response.status < 300:
                    raise FetchError("status", f"{url}: HTTP {response.status}", response.status)
                body = await read_limited(response, max_bytes)
        except FetchError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise failure(url, exc) from None
        try:
            return url, json.loads(body)
        except (ValueError, RecursionError):
            # RecursionError: a document of 100,000 nested arrays is not one we read.
            raise FetchError("not_json", f"{url}: the response is not JSON we read") from None
    raise FetchError("redirects", f"{url}: more than {max_redirects} redirects")


async def query_api(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allowed: Allowance,
    max_bytes: int,
) -> tuple[int, Any]:
    """GET a server's JSON API anonymously; returns (status, data), errors included.

    APIs answer their refusals as JSON with a 4xx (Lemmy's `{"error": ...}`,
    PieFed's `{"message": ...}`), and which refusal it is matters to the
    caller; data is None when the body is not JSON. Redirects are not followed.
    """
    check_url(url, allowed=allowed)
    try:
        async with session.get(
            url, headers={"Accept": "application/json"}, allow_redirects=False
        ) as response:
            body = await read_limited(response, max_bytes)
            status = response.status
    except FetchError:
        raise
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise failure(url, exc) from None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


async def post_activity(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    signer: Signer,
    clock: Clock,
    allowed: Allowance,
) -> PostResult:
    """POST a signed activity; network failures raise FetchError, HTTP errors are results."""
    check_url(url, allowed=allowed)
    headers = sign_request(
        "POST",
        url,
        key_id=signer.key_id,
        private_key=signer.private_key,
        now=clock.now(),
        body=body,
        content_type=ACTIVITY_JSON,
    )
    headers["Accept"] = ACCEPT_ACTIVITY
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            excerpt = (await response.content.read(ERROR_EXCERPT)).decode("utf-8", "replace")
            return PostResult(response.status, dict(response.headers), excerpt)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise failure(url, exc) from None


def failure(url: str, exc: BaseException) -> FetchError:
    """A network failure as a FetchError; the guard's refusal keeps its own reason."""
    cause = getattr(exc, "os_error", None) or exc.__cause__ or exc
    if isinstance(cause, Blocked):
        return FetchError("blocked", f"{url}: {cause}")
    if isinstance(exc, TimeoutError):
        return FetchError("timeout", f"{url}: timed out")
    return FetchError("network", f"{url}: {type(exc).__name__}: {exc}")

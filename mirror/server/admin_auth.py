"""The admin page's defences: sessions, Origin checks, throttling, response headers.

- A sign-in creates a session: a random secret in the cookie, a keyed digest
  of it in the database (``admin_session``), an expiry. Signing out deletes
  the row, so the cookie is dead even if it was copied; changing the admin
  token ends every session (the digest is keyed with it).
- Sign-in and sign-out POSTs must come from a page of ours: their
  ``Origin`` (or, without one, ``Referer``) must be the base URL's origin.
- Wrong tokens (form or bearer) are counted per client address; after a few,
  each further try waits longer, up to 15 minutes, and is answered 429
  without being compared.
- Every /admin response says: no framing, no sniffing, no caching, and a
  CSP that allows only our own inline styles (by nonce), no scripts at all.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Engine

from mirror.db.base import table_of
from mirror.db.models import AdminSession
from mirror.db.session import write_transaction

COOKIE = "mirror_admin"
#: A session lasts this long after sign-in, however active.
SESSION = timedelta(hours=12)
SESSIONS = table_of(AdminSession)


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def csp(nonce: str | None = None) -> str:
    """The admin page's CSP: nothing but our own inline styles (those carrying ``nonce``)."""
    style = f"style-src 'nonce-{nonce}'; " if nonce else ""
    return f"default-src 'none'; {style}form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


def styled(render: Callable[[str], web.Response]) -> web.Response:
    """A page rendered with a fresh style nonce, and the CSP that allows exactly it."""
    nonce = secrets.token_urlsafe(16)
    response = render(nonce)
    response.headers["Content-Security-Policy"] = csp(nonce)
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the admin page's headers, on every answer under /admin."""
    if not is_admin_path(request.path):
        return
    # Pages set their own (with their nonce); errors and redirects get the strictest.
    response.headers.setdefault("Content-Security-Policy", csp())
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    # For browsers without CSP frame-ancestors.
    response.headers["X-Frame-Options"] = "DENY"
    # Same-origin requests keep their Referer and Origin (the POST check needs
    # one); nothing leaks to other sites. "no-referrer" would make browsers
    # send `Origin: null` on our own form POSTs.
    response.headers["Referrer-Policy"] = "same-origin"


# -- Origin -----------------------------------------------------------------


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """scheme://host[:port] as browsers serialise it (lower case, no default port)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        return ""  # "null" (an opaque origin), or not a URL
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return ""
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def check_origin(request: web.Request, base_url: str) -> None:
    """Refuse a state-changing POST that a page of another site made (login CSRF, logout).

    Browsers send ``Origin`` on every POST; without it (an old browser), the
    ``Referer``'s origin counts. A request with neither is refused: only a
    browser signs in with the form, and scripts use the bearer token.
    """
    sent = request.headers.get("Origin")
    if sent is None and "Referer" in request.headers:
        sent = origin_of(request.headers["Referer"])
    if sent is None or not origin_of(sent) or origin_of(sent) != origin_of(base_url):
        raise web.HTTPForbidden(
            text=f"refused: this form must be sent from {origin_of(base_url)}/admin"
        )


# -- throttling ---------------------------------------------------------------


@dataclass(slots=True)
class _Failures:
    count: int
    last: datetime


class Throttle:
    """Wrong tokens per client: the first few are free, then each waits twice as long.

    In memory, per process (only `serve` answers /admin). Bounded: the
    clients whose last failure is oldest are forgotten first.
    """

    FREE = 5
    MAX_DELAY = timedelta(minutes=15)
    #: A client whose last failure is this old starts again from zero.
    FORGET = timedelta(hours=1)
    MAX_CLIENTS = 10_000

    def __init__(self) -> None:
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def wait(self, client: str, now: datetime) -> timedelta:
        """How long ``client`` must wait before its next token is compared (zero: go ahead)."""
        failures = self._clients.get(client)
        if failures is None or failures.count < self.FREE:
            return timedelta(0)
        delay = min(self.MAX_DELAY, timedelta(seconds=2 ** (failures.count - self.FREE + 1)))
        return max(timedelta(0), failures.last + delay - now)

    def failed(self, client: str, now: datetime) -> None:
        failures = self._clients.pop(client, None)
        if failures is None or now - failures.last > self.FORGET:
            failures = _Failures(0, now)
        failures.count += 1
        failures.last = now
        self._clients[client] = failures  # now the newest
        while len(self._clients) > self.MAX_CLIENTS:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


def throttle_key(address: str) -> str:
    """What a client is counted under: its address, or its /64 for IPv6.

    One IPv6 host usually holds a whole /64; counting single addresses would
    give it 2^64 fresh starts.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# -- sessions ---------------------------------------------------------------


def _digest(token: str, secret: str) -> str:
    """The stored form of a cookie's secret: a reader of the database cannot sign in with it."""
    return hmac.new(
        token.encode(), b"fedimirror admin session\0" + secret.encode(), hashlib.sha256
    ).hexdigest()


def create_session(engine: Engine, token: str, now: datetime) -> str:
    """A new session; returns the secret for the cookie. Expired sessions are removed."""
    secret = secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(SESSIONS).where(SESSIONS.c.expires_at <= now))
        conn.execute(
            sa.insert(SESSIONS).values(
                digest=_digest(token, secret), created_at=now, expires_at=now + SESSION
            )
        )
    return secret


def session_is_valid(engine: Engine, token: str, secret: str, now: datetime) -> bool:
    if not secret:
        return False
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(SESSIONS.c.id).where(
                SESSIONS.c.digest == _digest(token, secret), SESSIONS.c.expires_at > now
            )
        ).first()
    return found is not None


def end_session(engine: Engine, token: str, secret: str) -> None:
    if not secret:
        return
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(SESSIONS).where(SESSIONS.c.digest == _digest(token, secret)))

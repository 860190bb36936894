"""Who is asking: authorized fetch (signed GETs), and the client's address behind proxies."""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

from aiohttp import web

from mirror.config import Settings
from mirror.errors import ConfigError
from mirror.federation.inbox import verify_sender
from mirror.federation.remote import ActorUnavailable
from mirror.server.appkeys import FEDERATION
from mirror.signatures import SignatureError

log = logging.getLogger(__name__)


def public_url(request: web.Request) -> str:
    """The request URL as the signer saw it: behind our configured base URL."""
    return request.app[FEDERATION].urls.base + request.path_qs


async def require_signed_fetch(request: web.Request) -> None:
    federation = request.app[FEDERATION]
    if not federation.settings.federation.authorized_fetch:
        return
    try:
        # Any verified actor may read (Lemmy 1.0 signs with its instance
        # actor, type Application); there is no activity whose actor to match.
        await verify_sender(
            federation,
            None,
            method=request.method,
            target=request.path_qs,
            url=public_url(request),
            headers=request.headers,
            body=None,
        )
    except (SignatureError, ActorUnavailable) as exc:
        log.info("refused unsigned or badly signed GET %s: %s", request.path_qs, exc)
        raise web.HTTPUnauthorized(text="this server requires signed requests") from None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(settings: Settings) -> tuple[Network, ...]:
    """``[server].trusted_proxies`` as networks; ConfigError naming a bad entry."""
    return _parse_networks(tuple(settings.server.trusted_proxies))


@lru_cache(maxsize=8)
def _parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"[server].trusted_proxies: {entry!r} is not an IP address or network "
                '(e.g. "127.0.0.1", "10.0.0.0/8")'
            ) from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_address(request: web.Request) -> str:
    """The address of the client that sent ``request``.

    The peer's address, unless the peer is one of ``[server].trusted_proxies``:
    then ``X-Forwarded-For`` is read from the right (each proxy appends the
    address it received from), skipping our own proxies; the first address
    not among them is the client's. Anyone else's X-Forwarded-For is ignored,
    so a client cannot pick the address it is counted under.
    """
    peer = request.remote or ""
    trusted = trusted_networks(request.app[FEDERATION].settings)
    current = _address(peer)
    if not trusted or current is None or not _within(current, trusted):
        return str(current) if current is not None else peer or "unknown"
    hops = [
        hop for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")
    ]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            # Not an address: no proxy of ours wrote it. The last one of ours
            # that we trusted is what we know.
            break
        current = address
        if not _within(address, trusted):
            break
    return str(current)


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[Network, ...]
) -> bool:
    return any(address.version == n.version and address in n for n in networks)

"""The SSRF guard: remote fetches and deliveries never reach private networks.

A host name is resolved, and every address it resolves to must be public;
the connection then goes to one of those checked addresses, so a DNS answer
cannot change between the check and the connect. Operators running a local
sandbox (and the tests) turn this off with allow_private_networks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

T = TypeVar("T")


class Blocked(OSError):
    """A destination refused by the guard."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_literal(host: str, *, allow_private: bool) -> None:
    """Refuse an IP-literal host that is not public (names are checked when resolved)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not allow_private and not is_public(host.strip("[]")):
        raise Blocked(f"{host} is a private, loopback or link-local address")


def public_only(
    host: str, addresses: Sequence[T], address_of: Callable[[T], str], *, allow_private: bool
) -> list[T]:
    """The resolved ``addresses`` of ``host`` that are public; Blocked when none is."""
    if allow_private:
        return list(addresses)
    allowed = [a for a in addresses if is_public(address_of(a))]
    if not allowed:
        raise Blocked(f"{host} resolves only to private, loopback or link-local addresses")
    return allowed


class GuardedResolver(AbstractResolver):
    """Resolves through the system resolver and drops non-public addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        return public_only(host, results, lambda r: r["host"], allow_private=self._allow_private)

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return f"GuardedResolver(allow_private={self._allow_private})"

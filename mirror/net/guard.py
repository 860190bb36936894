"""The SSRF guard: remote fetches and deliveries never reach private networks.

"Public" is decided by explicit lists (the IANA special-purpose registries),
never by ``ipaddress.is_global``, whose answer differs by Python version.
Addresses that carry an IPv4 address inside an IPv6 one (IPv4-mapped, NAT64,
Teredo, 6to4) are judged by the IPv4 address they lead to.

A host name is resolved, and every address it resolves to must be public;
the connection then goes to one of those checked addresses, so a DNS answer
cannot change between the check and the connect.

What is refused anyway may be allowed (an :class:`Allowance`): an exact
HOST:PORT the operator listed in `[federation].allow_hosts` (a local
sandbox), or every address with `[network].allow_private_networks` (the
tests). A refusal says how to allow its destination.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

T = TypeVar("T")


class Blocked(OSError):
    """A destination refused by the guard."""


class Allowance(Protocol):
    def allows(self, host: str, port: int) -> bool:
        """Whether ``host``:``port`` may be reached although it is not public."""
        ...


@dataclass(frozen=True, slots=True)
class Allowed:
    """Every non-public address (``private_networks``), or these exact HOST:PORT entries.

    ``hosts`` holds :func:`host_port` forms.
    """

    private_networks: bool = False
    hosts: frozenset[str] = frozenset()

    def allows(self, host: str, port: int) -> bool:
        return self.private_networks or host_port(host, port) in self.hosts


#: The production default: public addresses only.
PUBLIC_ONLY = Allowed()
#: Every address (the tests, `mirror demo`).
ANYWHERE = Allowed(private_networks=True)


def host_port(host: str, port: int) -> str:
    """``host``:``port`` as allow_hosts entries are compared: lower case, IPv6 in brackets."""
    name = host.strip("[]").lower()
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def how_to_allow(host: str, port: int) -> str:
    entry = host_port(host, port)
    return (
        f"to reach it anyway, add {entry} to [federation].allow_hosts "
        f"(`mirror config allow-host {entry}`)"
    )


#: The IANA IPv4 Special-Purpose Address Registry, plus multicast and the
#: reserved 240/4 (broadcast included), each refused. Listed by hand because
#: ``ipaddress.is_global`` changed between Python versions (3.11 calls
#: 192.0.0.8 global); this list is the rule on every version.
REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space: carrier-grade NAT, cloud metadata"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local, cloud metadata"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation, TEST-NET-1"),
        ("192.88.99.0/24", "6to4 relay anycast, deprecated"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation, TEST-NET-2"),
        ("203.0.113.0/24", "documentation, TEST-NET-3"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved, broadcast included"),
    )
)

#: The IANA IPv6 Special-Purpose Address Registry, refused outright. The forms
#: that embed an IPv4 address are judged by that address instead (below).
REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)

#: Global unicast is allocated only from 2000::/3; anything else that is not
#: an embedded-IPv4 form (IPv4-compatible ::/96, site-local fec0::/10, the
#: unassigned space) has no public host behind it.
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")

MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: Local-use NAT64 (RFC 8215): its operator picks the prefix length, so where
#: the IPv4 address sits is known only for the /96 layout (bits 48-95 zero);
#: any other address in it is refused, since we cannot tell where it leads.
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
NAT64_LOCAL_96 = ipaddress.IPv6Network("64:ff9b:1::/96")
TEREDO = ipaddress.IPv6Network("2001::/32")
#: IETF protocol assignments; Teredo inside it is judged by its embedded IPv4.
IETF_PROTOCOL = ipaddress.IPv6Network("2001::/23")
SIXTOFOUR = ipaddress.IPv6Network("2002::/16")


def refusal(address: str) -> str | None:
    """Why ``address`` is refused as a destination ("in RANGE (what)"), or None if public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _refusal_v4(ip)
    return _refusal_v6(ip)


def is_public(address: str) -> bool:
    return refusal(address) is None


def _refusal_v4(ip: ipaddress.IPv4Address) -> str | None:
    for net, why in REFUSED_V4:
        if ip in net:
            return f"in {net} ({why})"
    return None


def _refusal_v6(ip: ipaddress.IPv6Address) -> str | None:
    embedded = _embedded_v4(ip)
    if embedded is not None:
        form, addresses = embedded
        for v4 in addresses:
            inner = _refusal_v4(v4)
            if inner is not None:
                return f"{form}, leading to {v4} {inner}"
        return None
    if ip in NAT64_LOCAL:
        return f"in {NAT64_LOCAL} (local-use NAT64 outside its /96 layout)"
    for net, why in REFUSED_V6:
        if ip in net:
            return f"in {net} ({why})"
    if ip in IETF_PROTOCOL:
        return f"in {IETF_PROTOCOL} (IETF protocol assignments)"
    if ip not in GLOBAL_UNICAST_V6:
        return "outside 2000::/3 (not global unicast)"
    return None


def _embedded_v4(
    ip: ipaddress.IPv6Address,
) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """The IPv4 addresses a packet to ``ip`` really goes to, for the forms that embed one."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in MAPPED:
        return "IPv4-mapped", (low32,)
    if ip in NAT64 or ip in NAT64_LOCAL_96:
        return "NAT64", (low32,)
    if ip in TEREDO:
        # Both ends matter: the Teredo server (bits 32-63) and the client's
        # public address (the last 32 bits, inverted).
        server, client = ip.teredo  # type: ignore[misc]
        return "Teredo", (server, client)
    if ip in SIXTOFOUR:
        sixtofour = ip.sixtofour
        assert sixtofour is not None
        return "6to4", (sixtofour,)
    return None


def check_literal(host: str, port: int, *, allowed: Allowance) -> None:
    """Refuse an IP-literal host that is not public (names are checked when resolved)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    why = refusal(host.strip("[]"))
    if why is not None and not allowed.allows(host, port):
        raise Blocked(f"{host} is not a public address: {why}; {how_to_allow(host, port)}")


def public_only(
    host: str,
    port: int,
    addresses: Sequence[T],
    address_of: Callable[[T], str],
    *,
    allowed: Allowance,
) -> list[T]:
    """The resolved ``addresses`` of ``host`` that may be reached; Blocked when none may."""
    public = [a for a in addresses if is_public(address_of(a))]
    # Asked only when an address is not public: an allowance may read a file.
    if (public and len(public) == len(addresses)) or allowed.allows(host, port):
        return list(addresses)
    if not public:
        first = address_of(addresses[0]) if addresses else ""
        why = f" ({first} {refusal(first)})" if first else ""
        raise Blocked(
            f"{host} resolves only to addresses that are not public{why}; "
            f"{how_to_allow(host, port)}"
        )
    return public


class GuardedResolver(AbstractResolver):
    """Resolves through the system resolver and drops the addresses the guard refuses."""

    def __init__(self, *, allowed: Allowance) -> None:
        self._inner = ThreadedResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        return public_only(host, port, results, lambda r: r["host"], allowed=self._allowed)

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return f"GuardedResolver(allowed={self._allowed!r})"

"""The SSRF guard's ranges: every IANA special-purpose range refused, by explicit list.

One case per range of the registries (issue 19, item 5), on the refusal
itself and through both HTTP clients (fetches: aiohttp; deliveries: the
worker's HTTP/1.1 client). None of these connects anywhere: the guard
refuses before a socket is opened.
"""

from __future__ import annotations

import pytest

from mirror.clock import SystemClock
from mirror.net.client import FetchError, fetch_json, make_session
from mirror.net.guard import (
    ANYWHERE,
    PUBLIC_ONLY,
    Allowed,
    Blocked,
    check_literal,
    public_only,
    refusal,
)
from mirror.net.http1 import Http1Client

#: (an address inside the range, the range the refusal must name)
REFUSED = [
    # IPv4 special-purpose registry, multicast and reserved
    ("0.1.2.3", "0.0.0.0/8"),
    ("10.255.0.1", "10.0.0.0/8"),
    ("100.64.0.1", "100.64.0.0/10"),
    ("100.100.100.200", "100.64.0.0/10"),  # Alibaba Cloud's metadata service
    ("100.127.255.254", "100.64.0.0/10"),
    ("127.0.0.2", "127.0.0.0/8"),
    ("169.254.169.254", "169.254.0.0/16"),
    ("172.16.0.1", "172.16.0.0/12"),
    ("172.31.255.254", "172.16.0.0/12"),
    ("192.0.0.8", "192.0.0.0/24"),  # "global" to Python 3.11's is_global
    ("192.0.0.170", "192.0.0.0/24"),
    ("192.0.2.1", "192.0.2.0/24"),
    ("192.88.99.1", "192.88.99.0/24"),
    ("192.168.1.1", "192.168.0.0/16"),
    ("198.18.0.1", "198.18.0.0/15"),
    ("198.19.255.254", "198.18.0.0/15"),
    ("198.51.100.7", "198.51.100.0/24"),
    ("203.0.113.9", "203.0.113.0/24"),
    ("224.0.0.1", "224.0.0.0/4"),
    ("239.255.255.250", "224.0.0.0/4"),
    ("240.0.0.1", "240.0.0.0/4"),
    ("255.255.255.255", "240.0.0.0/4"),
    # IPv6 special-purpose registry
    ("::", "::/128"),
    ("::1", "::1/128"),
    ("100::1", "100::/64"),
    ("2001:2::1", "2001::/23"),  # benchmarking, inside the IETF block
    ("2001:1ff:ffff::1", "2001::/23"),
    ("2001:db8::1", "2001:db8::/32"),
    ("3fff::1", "3fff::/20"),
    ("fc00::1", "fc00::/7"),
    ("fd12:3456::1", "fc00::/7"),
    ("fe80::1", "fe80::/10"),
    ("fe80::1%eth0", "fe80::/10"),
    ("ff02::1", "ff00::/8"),
    # Outside global unicast: IPv4-compatible, site-local, unassigned
    ("::7f00:1", "2000::/3"),
    ("fec0::1", "2000::/3"),
    ("4000::1", "2000::/3"),
    # IPv4 inside IPv6, judged by the IPv4 address
    ("::ffff:127.0.0.1", "127.0.0.0/8"),
    ("::ffff:100.100.100.200", "100.64.0.0/10"),  # "global" to Python 3.11
    ("::ffff:169.254.169.254", "169.254.0.0/16"),
    ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"),  # NAT64 well-known prefix
    ("64:ff9b::7f00:1", "127.0.0.0/8"),
    ("64:ff9b:1::a00:1", "10.0.0.0/8"),  # local-use NAT64; "global" to 3.11
    ("64:ff9b:1:ab::808:808", "64:ff9b:1::/48"),  # not the /96 layout: unknowable
    ("2002:a9fe:a9fe::1", "169.254.0.0/16"),  # 6to4
    ("2002:6464:64c8::1", "100.64.0.0/10"),
    ("2002:c0a8:101::1", "192.168.0.0/16"),
    # Teredo: server 65.54.227.120, client 192.0.2.45 (obfuscated, RFC 4380's example)
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.0/24"),
    # Teredo with a private server and a public client
    ("2001:0:a00:1:0:0:f7f7:f7f7", "10.0.0.0/8"),
]

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "100.63.255.255",  # just below 100.64.0.0/10
    "100.128.0.0",  # just above it
    "172.32.0.1",
    "192.0.1.255",
    "198.20.0.1",
    "223.255.255.255",
    "2606:4700::1111",
    "2a00:1450:4001::200e",
    "2001:200::1",  # just above 2001::/23
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "64:ff9b:1::808:808",
    "2002:808:808::1",
    "2001:0:808:808:0:0:f7f7:f7f7",  # Teredo: server and client both 8.8.8.8
]


@pytest.mark.parametrize(("address", "network"), REFUSED)
def test_every_special_purpose_range_is_refused(address: str, network: str) -> None:
    why = refusal(address)
    assert why is not None and network in why
    with pytest.raises(Blocked, match="not a public address"):
        check_literal(address, 443, allowed=PUBLIC_ONLY)
    check_literal(address, 443, allowed=ANYWHERE)  # the tests' switch still opens everything


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None
    check_literal(address, 443, allowed=PUBLIC_ONLY)


def test_a_name_resolving_only_to_refused_addresses_is_refused() -> None:
    addresses = ["100.100.100.200", "::ffff:10.0.0.1"]
    with pytest.raises(Blocked) as info:
        public_only("metadata.example", 80, addresses, str, allowed=PUBLIC_ONLY)
    assert "100.64.0.0/10" in str(info.value)
    # A public address among them is the one connected to.
    assert public_only("x.example", 80, [*addresses, "8.8.8.8"], str, allowed=PUBLIC_ONLY) == [
        "8.8.8.8"
    ]
    assert public_only("x.example", 80, addresses, str, allowed=ANYWHERE) == addresses


def test_an_allowed_host_port_passes_and_every_refusal_says_how_to_allow_it() -> None:
    allowed = Allowed(hosts=frozenset({"127.0.0.1:8790", "[::1]:8790", "sandbox.test:8790"}))
    check_literal("127.0.0.1", 8790, allowed=allowed)
    check_literal("[::1]", 8790, allowed=allowed)
    assert public_only("Sandbox.TEST", 8790, ["127.0.0.1"], str, allowed=allowed) == ["127.0.0.1"]
    # Exactly that host and port: another port, or another loopback address, stays refused.
    with pytest.raises(Blocked) as info:
        check_literal("127.0.0.1", 8791, allowed=allowed)
    assert str(info.value) == (
        "127.0.0.1 is not a public address: in 127.0.0.0/8 (loopback); to reach it anyway, "
        "add 127.0.0.1:8791 to [federation].allow_hosts (`mirror config allow-host 127.0.0.1:8791`)"
    )
    with pytest.raises(Blocked, match=r"add 127\.0\.0\.2:8790 to \[federation\]\.allow_hosts"):
        check_literal("127.0.0.2", 8790, allowed=allowed)
    with pytest.raises(Blocked, match=r"add \[::1\]:80 to \[federation\]\.allow_hosts"):
        check_literal("::1", 80, allowed=allowed)
    with pytest.raises(Blocked, match=r"add other.test:8790 to \[federation\]\.allow_hosts"):
        public_only("other.test", 8790, ["127.0.0.1"], str, allowed=allowed)


@pytest.mark.parametrize(
    "host",
    ["100.100.100.200", "[::ffff:100.100.100.200]", "[2002:a9fe:a9fe::1]", "[64:ff9b:1::a00:1]"],
)
async def test_fetches_and_deliveries_refuse_them(host: str) -> None:
    url = f"http://{host}/u/someone"
    async with make_session(allowed=PUBLIC_ONLY, timeout_s=2, base_url="https://bot.example") as s:
        with pytest.raises(FetchError) as info:
            await fetch_json(s, url, clock=SystemClock(), allowed=PUBLIC_ONLY, max_bytes=1000)
    assert info.value.reason == "blocked"
    client = Http1Client(
        allowed=PUBLIC_ONLY, user_agent="t", connect_timeout_s=2, total_timeout_s=2
    )
    with pytest.raises(FetchError) as info:
        await client.post(url, b"{}", {"Content-Type": "application/activity+json"})
    assert info.value.reason == "blocked"
    client.close()

"""Listen addresses: HOST:PORT, checked before anything binds, and loopback hosts."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_listen(text: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT``; ValueError naming what is wrong with it."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"listen address {text!r} must be HOST:PORT")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"listen address {text!r}: port {number} is not between 1 and 65535")
    return host.strip("[]"), number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def local_listen(base_url: str) -> str | None:
    """Where to listen for a base URL on this machine (a loopback host), else None.

    Such a URL is reached directly, with no proxy in front: the service must
    listen on its very host and port.
    """
    parts = urlsplit(base_url)
    if not parts.hostname or not is_loopback(parts.hostname):
        return None
    host = parts.netloc.rpartition("@")[2]
    if parts.port is None:
        host = f"{host}:{DEFAULT_PORTS[parts.scheme]}"
    return host

"""What the settings allow the guard to reach, kept current with the config file.

`mirror config allow-host` edits the config while `mirror serve` or
`mirror worker` may be running: they would refuse the new entry until
restarted, and the sandbox's printed steps would fail. So the allowance
reads `[federation].allow_hosts` again when the file has changed, which it
looks at only when a destination is not public (the rare path).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from mirror.config import Settings, load_settings, parse_host_port
from mirror.errors import ConfigError
from mirror.net.guard import Allowance, Allowed, host_port

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int] | None
#: No file has it: the first look reads the file (it may have changed since
#: the settings were read, before this allowance was made).
UNREAD: Stamp = (-1, -1, -1)


def allowed_hosts(entries: list[str]) -> frozenset[str]:
    """The entries of `[federation].allow_hosts`, as the guard compares them."""
    return frozenset(host_port(*parse_host_port(entry)) for entry in entries)


def allowance_for(settings: Settings) -> Allowance:
    """The settings' allowance; one that follows its config file when there is one."""
    hosts = allowed_hosts(settings.federation.allow_hosts)
    if settings.network.allow_private_networks or settings.source is None:
        return Allowed(settings.network.allow_private_networks, hosts)
    return FollowedAllowance(settings.source, hosts)


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # The inode too: an edit replaces the file (mirror.config_edit).
    return st.st_ino, st.st_mtime_ns, st.st_size


class FollowedAllowance:
    """`[federation].allow_hosts` of a config file, read again when the file changes.

    The environment still overrides the file (MIRROR_FEDERATION__ALLOW_HOSTS);
    a file that no longer loads keeps the entries read before, with a warning.
    """

    def __init__(self, path: Path, hosts: frozenset[str]) -> None:
        self._path = path
        self._hosts = hosts
        self._stamp = UNREAD
        self._lock = threading.Lock()

    def allows(self, host: str, port: int) -> bool:
        self._refresh()
        return host_port(host, port) in self._hosts

    def _refresh(self) -> None:
        stamp = _stamp(self._path)
        with self._lock:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                hosts = allowed_hosts(load_settings(self._path).federation.allow_hosts)
            except ConfigError as exc:
                log.warning("keeping [federation].allow_hosts as it was: %s", exc)
                return
            if hosts != self._hosts:
                log.info("[federation].allow_hosts from %s: %s", self._path, sorted(hosts))
            self._hosts = hosts

    def __repr__(self) -> str:
        return f"FollowedAllowance({str(self._path)!r}, {sorted(self._hosts)})"

"""User and community handles as pages print them (``name@host``, ``c/name@host``)."""

from __future__ import annotations

import re

_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST = rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})+"
_HOST_RE = re.compile(rf"^{HOST}$")
_NAME = r"[A-Za-z0-9_]{1,64}"
_HANDLE_RE = re.compile(rf"^@?(?P<name>{_NAME})@(?P<host>{HOST})$")
_COMMUNITY_RE = re.compile(rf"^(?:/?[cm]/|!)?(?P<name>{_NAME})@(?P<host>{HOST})$")
_PRONOUNS_RE = re.compile(r"^(?P<name>.*?)\s*\[(?P<pronouns>[^\[\]]{1,40})\]$")
_USERNAME_RE = re.compile(rf"^{_NAME}$")

# Top-level domains seen on the fediverse, used only to split text that a
# page glued together without spaces ("hexbear.nettoSocialism@lemmy.mlA ...").
COMMON_TLDS = frozenset(
    [
        "ml",
        "net",
        "org",
        "com",
        "social",
        "world",
        "zip",
        "ca",
        "de",
        "uk",
        "io",
        "xyz",
        "one",
        "online",
        "site",
        "space",
        "dev",
        "club",
        "blog",
        "me",
        "info",
        "eu",
        "fr",
        "nl",
        "be",
        "ch",
        "at",
        "au",
        "nz",
        "us",
        "ee",
        "fi",
        "se",
        "no",
        "dk",
        "pl",
        "cz",
        "it",
        "es",
        "pt",
        "ru",
        "jp",
        "kr",
        "cn",
        "in",
        "br",
        "ar",
        "mx",
        "party",
        "town",
        "cafe",
        "chat",
        "zone",
        "community",
        "tech",
        "network",
        "cloud",
        "link",
        "page",
        "fun",
        "art",
        "games",
        "lgbt",
        "wtf",
        "lol",
        "cat",
        "sh",
        "gg",
        "tv",
        "fm",
        "am",
        "im",
        "is",
        "ai",
        "app",
        "example",
        "test",
        "invalid",
        "localhost",
    ]
)


def is_host(text: str) -> bool:
    return bool(_HOST_RE.match(text))


def is_username(text: str) -> bool:
    return bool(_USERNAME_RE.match(text))


def parse_handle(text: str) -> tuple[str, str] | None:
    """``name@host`` (optionally with a leading @) -> (name, host)."""
    match = _HANDLE_RE.match(text.strip())
    if not match:
        return None
    return match["name"], match["host"].lower()


def parse_community_handle(text: str) -> tuple[str, str] | None:
    """``c/name@host``, ``!name@host`` or ``name@host`` -> (name, host)."""
    match = _COMMUNITY_RE.match(text.strip())
    if not match:
        return None
    return match["name"], match["host"].lower()


def split_pronouns(display: str) -> tuple[str, str | None]:
    """``happybadger [he/him]`` -> (``happybadger``, ``he/him``)."""
    match = _PRONOUNS_RE.match(display.strip())
    if not match or not match["name"]:
        return display.strip(), None
    return match["name"].strip(), match["pronouns"].strip()


def split_host_prefix(text: str) -> list[tuple[str, str]]:
    """Ways to read ``text`` as a host glued to what follows it.

    Returns (host, rest) pairs, most plausible first: the host must end in a
    known top-level domain when possible, and what follows should not start
    with a lower-case letter (a glued title usually starts with a capital).
    """
    candidates: list[tuple[int, str, str]] = []
    match = re.match(r"[a-z0-9.-]+", text)
    if not match:
        return []
    run = match.group(0)
    for end in range(len(run), 0, -1):
        host, rest = run[:end], text[end:]
        if not is_host(host):
            continue
        tld = host.rsplit(".", 1)[-1]
        score = 0
        if tld in COMMON_TLDS:
            score += 2
        if not rest or not rest[0].islower():
            score += 1
        candidates.append((score, host, rest))
    candidates.sort(key=lambda item: -item[0])
    return [(host, rest) for _, host, rest in candidates]

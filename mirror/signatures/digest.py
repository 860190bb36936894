"""Body digests: the draft-cavage `Digest` header and RFC 9530 `Content-Digest`."""

from __future__ import annotations

import base64
import hashlib
import hmac

_HASHES = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digest_header(body: bytes) -> str:
    # Lemmy checks every part of the header against SHA-256: send only that.
    return "SHA-256=" + _b64(hashlib.sha256(body).digest())


def verify_digest_header(value: str, body: bytes) -> bool:
    """True when the header has a SHA-256 (or SHA-512) part and every such part matches."""
    found = False
    for part in value.split(","):
        name, sep, encoded = part.strip().partition("=")
        hasher = _HASHES.get(name.strip().lower())
        if not sep or hasher is None:
            continue
        found = True
        if not hmac.compare_digest(encoded.strip(), _b64(hasher(body).digest())):
            return False
    return found


def content_digest_header(body: bytes) -> str:
    return f"sha-256=:{_b64(hashlib.sha256(body).digest())}:"


def verify_content_digest(value: str, body: bytes) -> bool:
    """RFC 9530: a dictionary of algorithm=:base64:; the known ones present must match."""
    found = False
    for part in value.split(","):
        name, sep, item = part.strip().partition("=")
        hasher = _HASHES.get(name.strip().lower())
        item = item.strip()
        if not sep or hasher is None or not (item.startswith(":") and item.endswith(":")):
            continue
        found = True
        if not hmac.compare_digest(item[1:-1], _b64(hasher(body).digest())):
            return False
    return found

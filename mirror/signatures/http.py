"""HTTP Signatures as Mastodon and Lemmy use them (draft-cavage-http-signatures-12).

``sign_request`` is the only place a Signature header is made. It signs
``(request-target) host date digest content-type`` with RSASSA-PKCS1-v1_5
SHA-256 and says ``rsa-sha256`` (Lemmy ignores the algorithm, httpsig and
older Mastodons know rsa-sha256 but not hs2019). ``verify_request`` accepts
rsa-sha256 and hs2019, and RFC 9421 signatures via :mod:`.rfc9421`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mirror.signatures.digest import digest_header, verify_digest_header

ALGORITHMS = frozenset({"rsa-sha256", "hs2019"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')


class SignatureError(Exception):
    """A request whose signature we do not accept; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    scheme: str  # "cavage" or "rfc9421"
    key_id: str
    algorithm: str | None
    #: Lower-case header names / component identifiers, in signed order.
    covered: tuple[str, ...]
    signature: bytes
    created: int | None = None
    expires: int | None = None
    #: RFC 9421: the label and the serialised signature parameters.
    label: str | None = None
    params_raw: str | None = None


class _Headers:
    """Case-insensitive view of request headers; repeated fields keep every value."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        values: dict[str, list[str]] = {}
        items: Any = headers.items()
        for name, value in items:
            values.setdefault(name.lower(), []).append(value)
        self._values = values

    def get(self, name: str) -> str | None:
        found = self._values.get(name)
        return ", ".join(v.strip() for v in found) if found else None

    def all(self, name: str) -> list[str]:
        return self._values.get(name, [])


def http_date(now: datetime) -> str:
    """RFC 7231 IMF-fixdate, e.g. ``Tue, 24 Nov 2026 12:00:00 GMT``."""
    global _last_date
    second = int(now.timestamp())
    cached = _last_date
    if cached[0] != second:
        # Formatting costs more than the rest of a signature's Python work,
        # and a worker signs hundreds of requests within the same second.
        cached = _last_date = (second, format_datetime(now.astimezone(UTC), usegmt=True))
    return cached[1]


_last_date: tuple[int, str] = (-1, "")


def sign_request(
    method: str,
    url: str,
    *,
    key_id: str,
    private_key: rsa.RSAPrivateKey,
    now: datetime,
    body: bytes | None = None,
    content_type: str | None = None,
) -> dict[str, str]:
    """The headers that make a signed request: Host, Date, (Digest, Content-Type,) Signature."""
    host, target = request_target(url)
    headers = {"Host": host, "Date": http_date(now)}
    lines = [
        f"(request-target): {method.lower()} {target}",
        f"host: {host}",
        f"date: {headers['Date']}",
    ]
    covered = "(request-target) host date"
    if body is not None:
        headers["Digest"] = digest_header(body)
        lines.append(f"digest: {headers['Digest']}")
        covered += " digest"
        if content_type is not None:
            headers["Content-Type"] = content_type
            lines.append(f"content-type: {content_type}")
            covered += " content-type"
    signature = private_key.sign("\n".join(lines).encode(), _PKCS1, _SHA256)
    headers["Signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{covered}",'
        f'signature="{base64.b64encode(signature).decode()}"'
    )
    return headers


_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


@lru_cache(maxsize=4096)
def request_target(url: str) -> tuple[str, str]:
    """The Host header and the request target of ``url``, as signed and as sent."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.netloc, target


def parse_signature(headers: Mapping[str, str]) -> ParsedSignature:
    """The signature a request carries (cavage, or RFC 9421 when Signature-Input is present)."""
    view = _Headers(headers)
    if view.get("signature-input") is not None:
        from mirror.signatures import rfc9421

        return rfc9421.parse(view.get("signature-input") or "", view.get("signature") or "")
    value = view.get("signature")
    if value is None:
        authorization = view.get("authorization") or ""
        if authorization[:10].lower() == "signature ":
            value = authorization[10:]
    if not value:
        raise SignatureError("missing_signature", "the request carries no HTTP signature")
    params = _parse_params(value)
    key_id = params.get("keyid")
    raw_signature = params.get("signature")
    if not key_id or not raw_signature:
        raise SignatureError("malformed_signature", "the Signature header lacks keyId or signature")
    try:
        signature = base64.b64decode(raw_signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed_signature", "the signature is not base64") from None
    # Without headers= the draft means "(created)" alone, which we never accept.
    covered = tuple(params.get("headers", "(created)").lower().split())
    return ParsedSignature(
        scheme="cavage",
        key_id=key_id,
        algorithm=params.get("algorithm"),
        covered=covered,
        signature=signature,
        created=_int_param(params, "created"),
        expires=_int_param(params, "expires"),
    )


def _parse_params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    position = 0
    while position < len(value):
        match = _PARAM.match(value, position)
        if match is None or match.end() == position:
            raise SignatureError("malformed_signature", "the Signature header does not parse")
        raw = match.group(2).strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
        position = match.end()
    return params


def _int_param(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        return int(params[name])
    except ValueError:
        raise SignatureError("malformed_signature", f"({name}) is not an integer") from None


def verify_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None,
    public_key: rsa.RSAPublicKey,
    *,
    now: datetime,
    window_s: int = 3600,
    require_digest: bool | None = None,
    parsed: ParsedSignature | None = None,
    url: str | None = None,
) -> ParsedSignature:
    """Check a received request's signature; returns it, or raises SignatureError."""
    view = _Headers(headers)
    parsed = parsed or parse_signature(headers)
    if require_digest is None:
        require_digest = method.upper() in BODY_METHODS or bool(body)
    if parsed.scheme == "rfc9421":
        from mirror.signatures import rfc9421

        if url is None:
            url = f"https://{view.get('host') or ''}{target}"
        return rfc9421.verify(
            method,
            url,
            headers,
            body,
            public_key,
            now=now,
            window_s=window_s,
            require_digest=require_digest,
            parsed=parsed,
        )

    algorithm = (parsed.algorithm or "hs2019").lower()
    if algorithm not in ALGORITHMS:
        raise SignatureError(
            "unsupported_algorithm", f"algorithm {parsed.algorithm!r} is not supported"
        )
    covered = parsed.covered
    for needed in ("(request-target)", "host"):
        if needed not in covered:
            raise SignatureError("missing_header", f"{needed} is not signed")
    if "date" not in covered and "(created)" not in covered:
        raise SignatureError("missing_header", "neither date nor (created) is signed")
    if require_digest:
        if "digest" not in covered:
            raise SignatureError("missing_digest", "the body's Digest is not signed")
        digest = view.get("digest")
        if digest is None:
            raise SignatureError("missing_digest", "no Digest header")
        if body is None or not verify_digest_header(digest, body):
            raise SignatureError("digest_mismatch", "the Digest does not match the body")
    _check_times(parsed, view, covered, now, window_s)

    lines = []
    for name in covered:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        elif name == "(created)":
            lines.append(f"(created): {parsed.created}")
        elif name == "(expires)":
            lines.append(f"(expires): {parsed.expires}")
        else:
            values = view.all(name)
            if not values:
                raise SignatureError("missing_header", f"the signed header {name} is absent")
            lines.append(f"{name}: {', '.join(v.strip() for v in values)}")
    try:
        public_key.verify(
            parsed.signature, "\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise SignatureError(
            "bad_signature", "the signature does not verify with the key"
        ) from None
    return parsed


def _check_times(
    parsed: ParsedSignature, view: _Headers, covered: tuple[str, ...], now: datetime, window_s: int
) -> None:
    stamp = now.timestamp()
    if "date" in covered:
        raw = view.get("date")
        if raw is None:
            raise SignatureError("missing_date", "no Date header")
        try:
            when = parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError):
            raise SignatureError(
                "missing_date", f"the Date header {raw!r} does not parse"
            ) from None
        if abs(stamp - when) > window_s:
            raise SignatureError("stale_date", f"Date {raw} is more than {window_s} s from now")
    if "(created)" in covered:
        if parsed.created is None:
            raise SignatureError("malformed_signature", "(created) is signed but not given")
        if abs(stamp - parsed.created) > window_s:
            raise SignatureError("stale_date", f"(created) is more than {window_s} s from now")
    if parsed.expires is not None and parsed.expires < stamp:
        raise SignatureError("expired", "the signature has expired")

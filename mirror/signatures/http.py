"""HTTP Signatures as Mastodon and Lemmy use them (draft-cavage-http-signatures-12).

``sign_request`` is the only place a Signature header is made. It signs
``(request-target) host date digest content-type`` with RSASSA-PKCS1-v1_5
SHA-256 and says ``rsa-sha256`` (Lemmy ignores the algorithm, httpsig and
older Mastodons know rsa-sha256 but not hs2019). ``verify_request`` accepts
rsa-sha256 and hs2019, and RFC 9421 signatures via :mod:`.rfc9421`.

Verification is two steps, so that a receiver can refuse a request before
it fetches anyone's key: ``check_request`` does everything that needs no
key (sizes, the signed headers' presence, the signed host, Date or
``(created)``, Digest), ``verify_signature`` then checks the signature
itself. ``verify_request`` does both.
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
#: Sizes beyond which a signature is not one we could verify: a keyId is a
#: URL (our URL columns hold 2,048 characters), an RSA-8192 signature is
#: 1,024 bytes, and no sender signs more than a handful of headers.
MAX_KEY_ID = 2048
MAX_SIGNATURE_BYTES = 1024
MAX_COVERED = 32
#: ``(created)`` and ``(expires)`` are Unix times: more digits than this is
#: not a time (and 400 digits overflow a float when compared with now).
_TIME = re.compile(r"-?[0-9]{1,12}")
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
    check_key_id(key_id)
    signature = decode_signature(raw_signature)
    # Without headers= the draft means "(created)" alone, which we never accept.
    covered = tuple(params.get("headers", "(created)").lower().split())
    if len(covered) > MAX_COVERED:
        raise SignatureError("malformed_signature", f"more than {MAX_COVERED} signed headers")
    return ParsedSignature(
        scheme="cavage",
        key_id=key_id,
        algorithm=params.get("algorithm"),
        covered=covered,
        signature=signature,
        created=_int_param(params, "created"),
        expires=_int_param(params, "expires"),
    )


def check_key_id(key_id: str) -> None:
    """A keyId that could be a URL: short, with no space or control character.

    (Which URLs we fetch keys from is the receiver's business, not this module's.)
    """
    if len(key_id) > MAX_KEY_ID or not key_id.isprintable() or any(c.isspace() for c in key_id):
        raise SignatureError("malformed_signature", f"the keyId {_excerpt(key_id)} is not a URL")


def decode_signature(raw: str) -> bytes:
    if len(raw) > MAX_SIGNATURE_BYTES * 4 // 3 + 4:
        raise SignatureError("malformed_signature", "the signature is too long for any key")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed_signature", "the signature is not base64") from None


def _excerpt(value: str, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    return parse_time(params[name], name)


def parse_time(value: str, name: str) -> int:
    """A ``created``/``expires`` parameter: a Unix time of at most 12 digits."""
    if not _TIME.fullmatch(value.strip()):
        raise SignatureError("malformed_signature", f"({name}) is not a Unix time")
    return int(value)


def signed_host_matches(value: str, hosts: frozenset[str]) -> bool:
    """Whether a Host value names us (``hosts`` from :func:`our_hosts`)."""
    return value.strip().lower() in hosts


def our_hosts(base_url: str) -> frozenset[str]:
    """The Host values a request to ``base_url`` may carry: with and without its port.

    PieFed signs and sends the bare host name, dropping any port
    (app/activitypub/signature.py, signed_request: `"Host":
    uri_parts.hostname`); a signature for our host name on another port of
    it is still one for us.
    """
    parts = urlsplit(base_url)
    netloc = parts.netloc.lower()
    hosts = {netloc}
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is None and default is not None:
        hosts.add(f"{netloc}:{default}")
    elif parts.hostname:
        hosts.add(netloc.rsplit(":", 1)[0])
    return frozenset(hosts)


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
    hosts: frozenset[str] | None = None,
) -> ParsedSignature:
    """Check a received request's signature; returns it, or raises SignatureError."""
    parsed = check_request(
        method,
        target,
        headers,
        body,
        now=now,
        window_s=window_s,
        require_digest=require_digest,
        parsed=parsed,
        url=url,
        hosts=hosts,
    )
    verify_signature(method, target, headers, parsed, public_key, url=url)
    return parsed


def check_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    now: datetime,
    window_s: int = 3600,
    require_digest: bool | None = None,
    parsed: ParsedSignature | None = None,
    url: str | None = None,
    hosts: frozenset[str] | None = None,
) -> ParsedSignature:
    """Every check of a signed request that needs no key; returns the parsed signature.

    ``hosts``, when given, are the Host values that name us (:func:`our_hosts`):
    a request signed for another server is refused, since its signature
    could be replayed from there to here.
    """
    view = _Headers(headers)
    parsed = parsed or parse_signature(headers)
    if require_digest is None:
        require_digest = method.upper() in BODY_METHODS or bool(body)
    if parsed.scheme == "rfc9421":
        from mirror.signatures import rfc9421

        return rfc9421.check(
            method,
            _rfc9421_url(url, view, target),
            headers,
            body,
            now=now,
            window_s=window_s,
            require_digest=require_digest,
            parsed=parsed,
        )

    algorithm = (parsed.algorithm or "hs2019").lower()
    if algorithm not in ALGORITHMS:
        name = _excerpt(parsed.algorithm or "")
        raise SignatureError("unsupported_algorithm", f"algorithm {name} is not supported")
    covered = parsed.covered
    for needed in ("(request-target)", "host"):
        if needed not in covered:
            raise SignatureError("missing_header", f"{needed} is not signed")
    if "date" not in covered and "(created)" not in covered:
        raise SignatureError("missing_header", "neither date nor (created) is signed")
    if hosts is not None:
        host = view.get("host")
        if host is None:
            raise SignatureError("missing_header", "the signed header host is absent")
        if not signed_host_matches(host, hosts):
            raise SignatureError(
                "wrong_host", f"signed for host {_excerpt(host)}, not {' or '.join(sorted(hosts))}"
            )
    _check_times(parsed, view, covered, now, window_s)
    if require_digest:
        if "digest" not in covered:
            raise SignatureError("missing_digest", "the body's Digest is not signed")
        digest = view.get("digest")
        if digest is None:
            raise SignatureError("missing_digest", "no Digest header")
        if body is None or not verify_digest_header(digest, body):
            raise SignatureError("digest_mismatch", "the Digest does not match the body")
    for name in covered:
        if not name.startswith("(") and not view.all(name):
            raise SignatureError("missing_header", f"the signed header {_excerpt(name)} is absent")
    return parsed


def verify_signature(
    method: str,
    target: str,
    headers: Mapping[str, str],
    parsed: ParsedSignature,
    public_key: rsa.RSAPublicKey,
    *,
    url: str | None = None,
) -> None:
    """The signature check itself, after :func:`check_request` passed."""
    view = _Headers(headers)
    if parsed.scheme == "rfc9421":
        from mirror.signatures import rfc9421

        rfc9421.verify_signature(_rfc9421_url(url, view, target), method, view, parsed, public_key)
        return
    lines = []
    for name in parsed.covered:
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
        public_key.verify(parsed.signature, "\n".join(lines).encode(), _PKCS1, _SHA256)
    except InvalidSignature:
        raise SignatureError(
            "bad_signature", "the signature does not verify with the key"
        ) from None


def _rfc9421_url(url: str | None, view: _Headers, target: str) -> str:
    return url if url is not None else f"https://{view.get('host') or ''}{target}"


def _check_times(
    parsed: ParsedSignature, view: _Headers, covered: tuple[str, ...], now: datetime, window_s: int
) -> None:
    stamp = now.timestamp()
    if "date" in covered:
        raw = view.get("date")
        if raw is None:
            raise SignatureError("missing_date", "no Date header")
        try:
            # A year of 20 digits overflows a C long inside the parser.
            when = parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            raise SignatureError(
                "missing_date", f"the Date header {_excerpt(raw)} does not parse"
            ) from None
        if abs(stamp - when) > window_s:
            raise SignatureError(
                "stale_date", f"Date {_excerpt(raw)} is more than {window_s} s from now"
            )
    if "(created)" in covered:
        if parsed.created is None:
            raise SignatureError("malformed_signature", "(created) is signed but not given")
        if abs(stamp - parsed.created) > window_s:
            raise SignatureError("stale_date", f"(created) is more than {window_s} s from now")
    if parsed.expires is not None and parsed.expires < stamp:
        raise SignatureError("expired", "the signature has expired")

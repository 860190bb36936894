"""RFC 9421 HTTP Message Signatures, verify only (recent Mastodon and Fedify send them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mirror.signatures.digest import verify_content_digest
from mirror.signatures.http import (
    MAX_COVERED,
    ParsedSignature,
    SignatureError,
    _excerpt,
    _Headers,
    check_key_id,
    decode_signature,
    parse_time,
)

_MEMBER = re.compile(
    r'\s*([a-z*][a-z0-9_.*-]*)=(\((?:[^()"]|"(?:[^"\\]|\\.)*")*\)(?:;[^,]*)?)\s*(?:,|$)'
)
_ITEM = re.compile(
    r'"((?:[^"\\]|\\.)*)"((?:;[a-z][a-z0-9_.*-]*(?:=(?:"(?:[^"\\]|\\.)*"|[^;\s)]+))?)*)'
)
_PARAM = re.compile(r';([a-z][a-z0-9_.*-]*)(?:=("(?:[^"\\]|\\.)*"|[^;\s]+))?')
_SIGNATURE = re.compile(r"\s*([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/=]*):\s*(?:,|$)")


def parse(signature_input: str, signature: str) -> ParsedSignature:
    """The first signature of a request's Signature-Input / Signature pair."""
    member = _MEMBER.match(signature_input)
    if member is None:
        raise SignatureError("malformed_signature", "Signature-Input does not parse")
    label, raw = member.group(1), member.group(2)
    inner_end = raw.index(")") if '"' not in raw else _inner_end(raw)
    items = tuple((name.lower() + params) for name, params in _ITEM.findall(raw[: inner_end + 1]))
    if len(items) > MAX_COVERED:
        raise SignatureError("malformed_signature", f"more than {MAX_COVERED} signed components")
    params = {name: value for name, value in _PARAM.findall(raw[inner_end + 1 :])}
    signatures = {m.group(1): m.group(2) for m in _SIGNATURE.finditer(signature)}
    if label not in signatures:
        raise SignatureError("malformed_signature", f"no Signature for label {_excerpt(label)}")
    value = decode_signature(signatures[label])
    key_id = _unquote(params.get("keyid", ""))
    if not key_id:
        raise SignatureError("malformed_signature", "Signature-Input lacks keyid")
    check_key_id(key_id)
    return ParsedSignature(
        scheme="rfc9421",
        key_id=key_id,
        algorithm=_unquote(params["alg"]) if "alg" in params else None,
        covered=items,
        signature=value,
        created=_int(params.get("created")),
        expires=_int(params.get("expires")),
        label=label,
        params_raw=raw,
    )


def _inner_end(raw: str) -> int:
    quoted = False
    for index, char in enumerate(raw):
        if char == '"' and (index == 0 or raw[index - 1] != "\\"):
            quoted = not quoted
        elif char == ")" and not quoted:
            return index
    raise SignatureError("malformed_signature", "Signature-Input inner list is not closed")


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value


def _int(value: str | None) -> int | None:
    return None if value is None else parse_time(value, "created or expires")


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    public_key: rsa.RSAPublicKey,
    *,
    now: datetime,
    window_s: int,
    require_digest: bool | None,
    parsed: ParsedSignature | None = None,
) -> ParsedSignature:
    """:func:`check`, then :func:`verify_signature`."""
    parsed = check(
        method,
        url,
        headers,
        body,
        now=now,
        window_s=window_s,
        require_digest=require_digest,
        parsed=parsed,
    )
    verify_signature(url, method, _Headers(headers), parsed, public_key)
    return parsed


def check(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    now: datetime,
    window_s: int,
    require_digest: bool | None,
    parsed: ParsedSignature | None = None,
) -> ParsedSignature:
    """Everything that needs no key: the signed components, created, Content-Digest.

    The authority signed is the one of ``url``, our own base URL's, so a
    request signed for another server does not verify here.
    """
    view = _Headers(headers)
    if parsed is None:
        parsed = parse(view.get("signature-input") or "", view.get("signature") or "")
    covered = [item.split(";", 1)[0] for item in parsed.covered]
    if "@method" not in covered:
        raise SignatureError("missing_header", "@method is not signed")
    if "@target-uri" not in covered and not {"@authority", "@path"} <= set(covered):
        raise SignatureError(
            "missing_header", "neither @target-uri nor @authority and @path are signed"
        )
    for name in covered:
        if not name.startswith("@") and view.get(name) is None:
            raise SignatureError("missing_header", f"the signed header {_excerpt(name)} is absent")
    stamp = now.timestamp()
    if parsed.created is None or abs(stamp - parsed.created) > window_s:
        raise SignatureError("stale_date", f"created is missing or more than {window_s} s from now")
    if parsed.expires is not None and parsed.expires < stamp:
        raise SignatureError("expired", "the signature has expired")
    if require_digest is None:
        require_digest = bool(body)
    if require_digest:
        if "content-digest" not in covered:
            raise SignatureError("missing_digest", "content-digest is not signed")
        digest = view.get("content-digest")
        if digest is None or body is None or not verify_content_digest(digest, body):
            raise SignatureError("digest_mismatch", "the Content-Digest does not match the body")
    return parsed


def verify_signature(
    url: str, method: str, view: _Headers, parsed: ParsedSignature, public_key: rsa.RSAPublicKey
) -> None:
    """The signature itself, over the components :func:`check` found present."""
    covered = [item.split(";", 1)[0] for item in parsed.covered]
    lines = [f'"{item}": {_component(item, method, url, view)}' for item in covered]
    lines.append(f'"@signature-params": {parsed.params_raw}')
    base = "\n".join(lines).encode()
    algorithm = (parsed.algorithm or "rsa-v1_5-sha256").lower()
    try:
        if algorithm == "rsa-v1_5-sha256":
            public_key.verify(parsed.signature, base, padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == "rsa-pss-sha512":
            public_key.verify(
                parsed.signature,
                base,
                padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64),
                hashes.SHA512(),
            )
        else:
            raise SignatureError(
                "unsupported_algorithm", f"alg {_excerpt(parsed.algorithm or '')} is not supported"
            )
    except InvalidSignature:
        raise SignatureError(
            "bad_signature", "the signature does not verify with the key"
        ) from None


def _component(name: str, method: str, url: str, view: _Headers) -> str:
    parts = urlsplit(url)
    if name == "@method":
        return method.upper()
    if name == "@target-uri":
        return url
    if name == "@authority":
        return parts.netloc.lower()
    if name == "@scheme":
        return parts.scheme.lower()
    if name == "@path":
        return parts.path or "/"
    if name == "@query":
        return "?" + parts.query
    if name == "@request-target":
        return (parts.path or "/") + (("?" + parts.query) if parts.query else "")
    if name.startswith("@"):
        raise SignatureError("malformed_signature", f"component {name} is not supported")
    value = view.get(name)
    if value is None:
        raise SignatureError("missing_header", f"the signed header {name} is absent")
    return value

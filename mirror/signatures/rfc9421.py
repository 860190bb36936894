"""RFC 9421 HTTP Message Signatures, verify only (recent Mastodon and Fedify send them)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mirror.signatures.digest import verify_content_digest
from mirror.signatures.http import ParsedSignature, SignatureError, _Headers

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
    params = {name: value for name, value in _PARAM.findall(raw[inner_end + 1 :])}
    signatures = {m.group(1): m.group(2) for m in _SIGNATURE.finditer(signature)}
    if label not in signatures:
        raise SignatureError("malformed_signature", f"no Signature for label {label}")
    try:
        value = base64.b64decode(signatures[label], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed_signature", "the signature is not base64") from None
    key_id = _unquote(params.get("keyid", ""))
    if not key_id:
        raise SignatureError("malformed_signature", "Signature-Input lacks keyid")
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
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise SignatureError("malformed_signature", f"{value!r} is not an integer") from None


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
    if require_digest is None:
        require_digest = bool(body)
    if require_digest:
        if "content-digest" not in covered:
            raise SignatureError("missing_digest", "content-digest is not signed")
        digest = view.get("content-digest")
        if digest is None or body is None or not verify_content_digest(digest, body):
            raise SignatureError("digest_mismatch", "the Content-Digest does not match the body")
    stamp = now.timestamp()
    if parsed.created is None or abs(stamp - parsed.created) > window_s:
        raise SignatureError("stale_date", f"created is missing or more than {window_s} s from now")
    if parsed.expires is not None and parsed.expires < stamp:
        raise SignatureError("expired", "the signature has expired")

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
                "unsupported_algorithm", f"alg {parsed.algorithm!r} is not supported"
            )
    except InvalidSignature:
        raise SignatureError(
            "bad_signature", "the signature does not verify with the key"
        ) from None
    return parsed


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

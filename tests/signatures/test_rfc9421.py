"""RFC 9421 signatures, produced by a signer written here from the RFC (test-only)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mirror.signatures import (
    SignatureError,
    generate_private_key,
    load_public_key,
    public_key_pem,
    verify_request,
)
from mirror.signatures.digest import content_digest_header

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = generate_private_key()
PUBLIC = load_public_key(public_key_pem(KEY))
URL = "https://bot.example/inbox"
BODY = b'{"type":"Follow"}'


def rfc9421_sign(
    *,
    body: bytes | None = BODY,
    components: tuple[str, ...] = ("@method", "@target-uri", "content-digest"),
    created: int | None = None,
    alg: str = "rsa-v1_5-sha256",
) -> dict[str, str]:
    headers = {"Host": "bot.example", "Content-Type": "application/activity+json"}
    if body is not None:
        headers["Content-Digest"] = content_digest_header(body)
    created = int(NOW.timestamp()) if created is None else created
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")"
    params = f'{inner};created={created};keyid="https://remote.example/users/a#key";alg="{alg}"'
    values = {
        "@method": "POST",
        "@target-uri": URL,
        "@authority": "bot.example",
        "@path": "/inbox",
    }
    lines = [f'"{c}": {values.get(c) or headers[c.title()]}' for c in components]
    lines.append(f'"@signature-params": {params}')
    base = "\n".join(lines).encode()
    if alg == "rsa-pss-sha512":
        signature = KEY.sign(base, padding.PSS(padding.MGF1(hashes.SHA512()), 64), hashes.SHA512())
    else:
        signature = KEY.sign(base, padding.PKCS1v15(), hashes.SHA256())
    headers["Signature-Input"] = f"sig1={params}"
    headers["Signature"] = f"sig1=:{base64.b64encode(signature).decode()}:"
    return headers


@pytest.mark.parametrize("alg", ["rsa-v1_5-sha256", "rsa-pss-sha512"])
def test_rfc9421_round_trip(alg: str) -> None:
    parsed = verify_request("POST", "/inbox", rfc9421_sign(alg=alg), BODY, PUBLIC, now=NOW, url=URL)
    assert parsed.scheme == "rfc9421"
    assert parsed.key_id == "https://remote.example/users/a#key"


def test_authority_and_path_instead_of_target_uri() -> None:
    headers = rfc9421_sign(components=("@method", "@authority", "@path", "content-digest"))
    verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW, url=URL)


def _reason(headers: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(SignatureError) as info:
        verify_request("POST", "/inbox", headers, body, PUBLIC, now=NOW, url=URL)
    return info.value.reason


def test_tampered_body() -> None:
    assert _reason(rfc9421_sign(), BODY + b" ") == "digest_mismatch"


def test_content_digest_not_covered() -> None:
    assert _reason(rfc9421_sign(components=("@method", "@target-uri"))) == "missing_digest"


def test_old_signature() -> None:
    assert _reason(rfc9421_sign(created=int(NOW.timestamp()) - 7200)) == "stale_date"


def test_wrong_url_fails() -> None:
    with pytest.raises(SignatureError) as info:
        verify_request(
            "POST",
            "/inbox",
            rfc9421_sign(),
            BODY,
            PUBLIC,
            now=NOW,
            url="https://other.example/inbox",
        )
    assert info.value.reason == "bad_signature"

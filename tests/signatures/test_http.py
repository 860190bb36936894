"""HTTP signatures: our signer and verifier, cross-checked with httpsig (pycryptodome)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from httpsig import HeaderSigner
from httpsig.verify import HeaderVerifier
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.signatures import (
    SignatureError,
    check_request,
    digest_header,
    generate_private_key,
    load_public_key,
    our_hosts,
    parse_signature,
    private_key_to_pem,
    public_key_pem,
    sign_request,
    verify_request,
    verify_signature,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = generate_private_key()
PUBLIC = load_public_key(public_key_pem(KEY))
OTHER = generate_private_key()
URL = "https://lemmy.example/inbox"
BODY = json.dumps({"type": "Create", "id": "https://bot.example/activities/1"}).encode()
FIVE = ["(request-target)", "host", "date", "digest", "content-type"]


def signed(body: bytes = BODY, *, now: datetime = NOW, url: str = URL) -> dict[str, str]:
    return sign_request(
        "POST",
        url,
        key_id="https://bot.example/u/mirror#main-key",
        private_key=KEY,
        now=now,
        body=body,
        content_type="application/activity+json",
    )


def test_round_trip_post() -> None:
    headers = signed()
    parsed = verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW)
    assert parsed.key_id == "https://bot.example/u/mirror#main-key"
    assert parsed.covered == tuple(FIVE)
    assert headers["Host"] == "lemmy.example"
    assert headers["Date"] == "Sun, 01 Mar 2026 12:00:00 GMT"
    assert headers["Digest"] == digest_header(BODY)
    assert 'algorithm="rsa-sha256"' in headers["Signature"]


def test_round_trip_get_with_port_and_query() -> None:
    url = "http://127.0.0.1:8123/u/alice?page=2"
    headers = sign_request("GET", url, key_id="k#main-key", private_key=KEY, now=NOW)
    assert headers["Host"] == "127.0.0.1:8123"
    assert "Digest" not in headers
    verify_request("GET", "/u/alice?page=2", headers, None, PUBLIC, now=NOW)


def test_httpsig_verifies_what_we_sign() -> None:
    # An independent implementation (pycryptodome) accepts our signatures.
    headers = signed()
    verifier = HeaderVerifier(
        headers=headers,
        secret=public_key_pem(KEY).encode(),
        required_headers=FIVE,
        method="POST",
        path="/inbox",
        host="lemmy.example",
        sign_header="Signature",
    )
    assert verifier.verify()


def test_we_verify_what_httpsig_signs() -> None:
    signer = HeaderSigner(
        "https://remote.example/users/alice#main-key",
        private_key_to_pem(KEY).encode(),
        algorithm="rsa-sha256",
        headers=FIVE,
        sign_header="Signature",
    )
    base = {
        "Host": "bot.example",
        "Date": "Sun, 01 Mar 2026 12:00:00 GMT",
        "Digest": digest_header(BODY),
        "Content-Type": "application/activity+json",
    }
    headers = signer.sign(base, host="bot.example", method="POST", path="/inbox")
    parsed = verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW)
    assert parsed.key_id == "https://remote.example/users/alice#main-key"


def test_hs2019_is_accepted() -> None:
    headers = signed()
    headers["Signature"] = headers["Signature"].replace("rsa-sha256", "hs2019")
    verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW)


def test_headers_are_case_insensitive_and_multiple_values_join() -> None:
    headers = {k.lower(): v for k, v in signed().items()}
    verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW)


def _reason(headers: dict[str, str], body: bytes = BODY, *, now: datetime = NOW, key=PUBLIC) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SignatureError) as info:
        verify_request("POST", "/inbox", headers, body, key, now=now)
    assert "\n" not in str(info.value)
    return info.value.reason


def test_missing_signature() -> None:
    headers = signed()
    del headers["Signature"]
    assert _reason(headers) == "missing_signature"


def test_altered_body() -> None:
    assert _reason(signed(), BODY + b" ") == "digest_mismatch"


def test_missing_digest() -> None:
    headers = signed()
    del headers["Digest"]
    assert _reason(headers) == "missing_digest"


def test_digest_not_signed() -> None:
    headers = sign_request(
        "POST", URL, key_id="k", private_key=KEY, now=NOW
    )  # signed as if no body
    headers["Digest"] = digest_header(BODY)
    assert _reason(headers) == "missing_digest"


@pytest.mark.parametrize("offset", [timedelta(hours=-2), timedelta(hours=2)])
def test_date_outside_the_window(offset: timedelta) -> None:
    assert _reason(signed(now=NOW + offset)) == "stale_date"


def test_forged_signature() -> None:
    headers = signed()
    forged = sign_request(
        "POST",
        URL,
        key_id="k",
        private_key=OTHER,
        now=NOW,
        body=BODY,
        content_type="application/activity+json",
    )
    headers["Signature"] = forged["Signature"].replace(
        'keyId="k"', 'keyId="https://bot.example/u/mirror#main-key"'
    )
    assert _reason(headers) == "bad_signature"


def test_tampered_signature_bytes() -> None:
    headers = signed()
    value = parse_signature(headers).signature
    tampered = base64.b64encode(bytes([value[0] ^ 1]) + value[1:]).decode()
    headers["Signature"] = (
        headers["Signature"].rsplit('signature="', 1)[0] + f'signature="{tampered}"'
    )
    assert _reason(headers) == "bad_signature"


def test_unsupported_algorithm() -> None:
    headers = signed()
    headers["Signature"] = headers["Signature"].replace("rsa-sha256", "hmac-sha256")
    assert _reason(headers) == "unsupported_algorithm"


def test_headers_parameter_missing() -> None:
    headers = signed()
    headers["Signature"] = headers["Signature"].replace(
        'headers="(request-target) host date digest content-type",', ""
    )
    assert _reason(headers) == "missing_header"


def test_host_not_signed() -> None:
    headers = signed()
    headers["Signature"] = headers["Signature"].replace(" host ", " ")
    assert _reason(headers) == "missing_header"


def test_different_target_fails() -> None:
    with pytest.raises(SignatureError) as info:
        verify_request("POST", "/u/mirror/inbox", signed(), BODY, PUBLIC, now=NOW)
    assert info.value.reason == "bad_signature"


WEIRD = [
    "",
    "garbage",
    'keyId="a"',
    'signature="@@@"',
    'keyId="a",signature="not base64!"',
    'keyId="a",signature="AAAA",created=x',
    'keyId="a",,signature="AAAA"',
    'keyId="a,signature="AAAA"',
]


@pytest.mark.parametrize("value", WEIRD)
def test_garbage_is_refused_cleanly(value: str) -> None:
    headers = signed()
    headers["Signature"] = value
    with pytest.raises(SignatureError):
        verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_signature_headers_raise_only_signature_errors(value: str) -> None:
    headers = signed()
    headers["Signature"] = value
    with pytest.raises(SignatureError):
        verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW)


def test_host_header_matches_the_url() -> None:
    for url in ("https://a.example/x", "http://127.0.0.1:9/y?z=1"):
        assert signed(url=url)["Host"] == urlsplit(url).netloc


# -- issue 19: absurd values are SignatureErrors (not OverflowError), the host is ours ----


@pytest.mark.parametrize(
    "date",
    [
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
        "Mon, 01 Jan 10000 00:00:00 GMT",
        "Mon, 99 Jan 2026 00:00:00 GMT",
        "x" * 5000,
    ],
)
def test_absurd_dates_are_refused(date: str) -> None:
    headers = signed()
    headers["Date"] = date
    assert _reason(headers) in ("missing_date", "stale_date")


@pytest.mark.parametrize("created", ["9" * 400, "-" + "9" * 400, "1e9", "0x10"])
def test_absurd_created_is_refused(created: str) -> None:
    headers = signed()
    headers["Signature"] = headers["Signature"].replace(
        'headers="(request-target) host date',
        f'created={created},headers="(request-target) host (created)',
    )
    assert _reason(headers) == "malformed_signature"


def test_oversized_parts_are_refused_before_any_key() -> None:
    headers = signed()
    for value in (
        f'keyId="https://a.example/{"k" * 3000}",signature="AAAA"',
        'keyId="https://a.example/k x",signature="AAAA"',
        'keyId="https://a.example/k\x01",signature="AAAA"',
        f'keyId="https://a.example/k",signature="{"A" * 4000}"',
        f'keyId="https://a.example/k",headers="{" date" * 40}",signature="AAAA"',
    ):
        headers["Signature"] = value
        with pytest.raises(SignatureError) as info:
            parse_signature(headers)
        assert info.value.reason == "malformed_signature"


def test_the_signed_host_must_be_ours() -> None:
    headers = signed()  # for https://lemmy.example/inbox
    ours = our_hosts("https://lemmy.example")
    assert ours == {"lemmy.example", "lemmy.example:443"}
    verify_request("POST", "/inbox", headers, BODY, PUBLIC, now=NOW, hosts=ours)
    with pytest.raises(SignatureError) as info:
        verify_request(
            "POST", "/inbox", headers, BODY, PUBLIC, now=NOW, hosts=our_hosts("https://bot.example")
        )
    assert info.value.reason == "wrong_host"
    # PieFed signs the host name without the port (signed_request).
    assert our_hosts("http://127.0.0.1:8080") == {"127.0.0.1:8080", "127.0.0.1"}
    assert our_hosts("https://a.example:443") == {"a.example:443", "a.example"}


def test_checks_without_a_key_come_first() -> None:
    # A stale Date is found by check_request alone: no key is needed to refuse it.
    with pytest.raises(SignatureError) as info:
        check_request("POST", "/inbox", signed(now=NOW - timedelta(days=1)), BODY, now=NOW)
    assert info.value.reason == "stale_date"
    parsed = check_request("POST", "/inbox", signed(), BODY, now=NOW)
    with pytest.raises(SignatureError) as info:
        verify_signature("POST", "/inbox", signed(), parsed, load_public_key(public_key_pem(OTHER)))
    assert info.value.reason == "bad_signature"

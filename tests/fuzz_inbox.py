"""A seeded fuzzer of the inbox, as a hostile peer would probe it (issue 19's "Tests").

``run_fuzz`` sends ``count`` requests built from ``random.Random(seed)`` to a
running service and reports what came back; the same seed makes the same
requests. Its peers are real servers on 127.0.0.x (``FuzzWorld``): actors
with real keys, and key documents that are broken in every way the probe
found (nested 100,000 deep, NUL bytes, over-long type, username and ids, not
JSON, 404/410, redirects, too large). The requests are valid activities
signed properly, the same with one thing changed after signing, junk bodies,
junk signatures, key ids pointing at the broken documents, RFC 9421
variants, bytes that are not HTTP, and GETs of odd paths.

Used by tests/server/test_inbox_fuzz.py (a bounded run in CI) and by
benchmarks/inbox_fuzz.py (a longer run that reports the server's memory).
The key host answers no 5xx and never stalls, and requests are sent at most
PER_HOST at once, so that any 5xx is a defect (stalls and the 503 they get
are tests/server/test_inbox_hardening.py's).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import quote as _quote
from urllib.parse import urlsplit

import aiohttp

from mirror.federation.remote import PER_HOST
from mirror.signatures import (
    content_digest_header,
    digest_header,
    generate_private_key,
    public_key_pem,
)
from tests.hostile import ACTIVITY_JSON, KeyHost, free_port, http_date, signed

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def quote(text: str, safe: str = "/") -> str:
    # A lone surrogate is percent-encoded as the bytes it would be: invalid UTF-8 on purpose.
    return _quote(text, safe=safe, errors="surrogatepass")


@lru_cache(maxsize=1)
def keys() -> tuple[Any, ...]:
    """A few RSA keys, made once per process (making one takes tens of ms)."""
    return tuple(generate_private_key() for _ in range(4))


@dataclass
class Redirect:
    location: str
    status: int = 302


class FuzzHost(KeyHost):
    """A KeyHost that can also redirect."""

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        found = self.documents.get(request.path)
        if request.method == "GET" and isinstance(found, Redirect):
            self.requests.append(request.path)
            raise (
                web.HTTPFound(found.location)
                if found.status == 302
                else web.HTTPMovedPermanently(found.location)
            )
        return await super()._handle(request)


@dataclass
class FuzzWorld:
    """The fuzz's peers: valid actors and broken key documents, on 127.0.0.3."""

    target: str
    host: FuzzHost = field(default_factory=lambda: FuzzHost(host="127.0.0.3"))
    actors: list[tuple[str, Any]] = field(default_factory=list)
    #: keyId -> the key a request naming it is signed with (real, so that
    #: only the document's defect can refuse it).
    odd_keys: dict[str, Any] = field(default_factory=dict)

    async def start(self) -> None:
        await self.host.start()
        base = self.host.base
        key_list = keys()
        for number, key in enumerate(key_list[:3]):
            path = f"/users/actor{number}"
            self.host.actor(path, key, endpoints={"sharedInbox": f"{base}/inbox"})
            self.actors.append((base + path, key))
        key = key_list[3]
        pem = public_key_pem(key)
        long = "x" * 2100

        def odd(name: str, document: Any, signing_key: Any = key) -> None:
            self.host.documents[f"/odd/{name}"] = document
            self.odd_keys[f"{base}/odd/{name}#main-key"] = signing_key

        def actor(name: str, **fields: Any) -> dict[str, Any]:
            actor_id = f"{base}/odd/{name}"
            document = {
                "id": actor_id,
                "type": "Person",
                "preferredUsername": name,
                "inbox": actor_id + "/inbox",
                "publicKey": {"id": actor_id + "#main-key", "owner": actor_id, "publicKeyPem": pem},
            }
            document.update(fields)
            odd(name, document)
            return document

        odd("deep", b"[" * 100000 + b"]" * 100000)
        odd("deep-object", json.dumps(_nested(900)).encode())
        odd("not-json", b"<html><body>hello</body></html>")
        odd("empty", b"")
        odd("number", b"42")
        odd("bad-utf8", b'{"id": "\xff\xfe"}')
        odd("huge", b'{"id": "' + b"h" * (1024 * 1024 + 10) + b'"}')
        odd("gone", 410)
        odd("forbidden", 403)
        odd("unauthorized", 401)
        odd("teapot", 418)
        odd("loop", Redirect(f"{base}/odd/loop"))
        odd("redirect-away", Redirect(f"{self.target}/nothing-here", 301))
        actor("nul-name", preferredUsername="a\u0000b")
        actor("long-name", preferredUsername="n" * 300)
        actor("long-type", type="T" * 100)
        actor("nul-type", type="Per\u0000son")
        actor("type-list", type=["Person", "Service"])
        actor("type-object", type={"x": 1})
        actor("long-inbox", inbox=f"{base}/{long}")
        actor("nul-inbox", inbox=f"{base}/inbox\u0000")
        actor("inbox-number", inbox=12)
        actor("shared-odd", endpoints={"sharedInbox": "ftp://x\n"})
        actor("endpoints-list", endpoints=["x"])
        actor("nul-pem", publicKey={"id": f"{base}/odd/nul-pem#main-key", "publicKeyPem": "\u0000"})
        actor(
            "garbage-pem",
            publicKey={"id": f"{base}/odd/garbage-pem#main-key", "publicKeyPem": "no"},
        )
        actor("pem-list", publicKey=[{"id": f"{base}/odd/pem-list#main-key", "publicKeyPem": pem}])
        actor("key-string", publicKey="a string")
        actor("no-key", publicKey=None)
        actor("other-host-id", id="http://127.0.0.9/odd/other-host-id")
        actor("long-id", id=f"{base}/odd/{long}")
        actor("nul-id", id=f"{base}/odd/nul-id\u0000")
        actor("surrogate-name", preferredUsername="\ud800")
        actor(
            "owner-elsewhere",
            publicKey={
                "id": f"{base}/odd/owner-elsewhere#main-key",
                "owner": f"{base}/odd/nul-name",
                "publicKeyPem": pem,
            },
        )
        actor(
            "long-key-id",
            publicKey={
                "id": f"{base}/odd/{long}#k",
                "owner": f"{base}/odd/long-key-id",
                "publicKeyPem": pem,
            },
        )
        # A bare key document naming an owner whose document is broken.
        odd(
            "bare-key",
            {"id": f"{base}/odd/bare-key", "owner": f"{base}/odd/deep", "publicKeyPem": pem},
        )
        # A valid document whose key is not the one the request is signed with.
        actor("wrong-key")
        self.odd_keys[f"{base}/odd/wrong-key#main-key"] = key_list[0]

    async def close(self) -> None:
        await self.host.close()


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass
class Request:
    """One request to send: what it is (for a report), and its parts."""

    kind: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    #: Bytes sent as they are on a socket, instead of an HTTP request.
    raw: bytes | None = None


@dataclass
class Report:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    #: Requests the HTTP client refused to send (a header it cannot write).
    unsendable: int = 0
    #: (kind, status, body excerpt) of every 5xx.
    server_errors: list[tuple[str, int, str]] = field(default_factory=list)
    #: (kind, exception) of requests that got no answer.
    no_answer: list[tuple[str, str]] = field(default_factory=list)
    healthz_checks: int = 0
    healthz_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.sent} requests in {self.seconds:.1f} s ({statuses}); "
            f"{self.unsendable} unsendable, {len(self.no_answer)} unanswered, "
            f"{len(self.server_errors)} 5xx; /healthz {self.healthz_checks} checks, "
            f"{len(self.healthz_failures)} failed"
        )


# -- the generator ----------------------------------------------------------------------


JUNK_STRINGS = [
    "",
    " ",
    "\u0000",
    "a\u0000b",
    "\n",
    "line\nINFO mirror.federation.inbox: forged",
    "\r\n\r\n",
    "\x1b[2J",
    "\u2028",
    "\ud800",
    "\udfff\ud800",
    "é" * 10,
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "‮reversed",
    "x" * 70,
    "y" * 300,
    "z" * 2100,
    "%00",
    "../../etc/passwd",
    "http://",
    "http://127.0.0.1:9/",
    "https://[::1]/",
    "http://a b/",
    "javascript:alert(1)",
    "acct:mirror@127.0.0.1",
    "9" * 400,
    "-1",
    "1e309",
    "NaN",
]

#: keyIds that are not fetchable URLs. None names a host that does not
#: answer: a key that cannot be fetched *for now* is answered 503 by design
#: (the sender retries), which this fuzz, asserting no 5xx, leaves to
#: tests/server/test_inbox_hardening.py.
KEY_JUNK = [
    "",
    "x",
    "\u0000",
    "acct:mirror@127.0.0.1",
    "javascript:alert(1)",
    "http://",
    "http://a b/",
    "ftp://127.0.0.1/key",
    "//127.0.0.3/key",
    "x" * 3000,
    "http://127.0.0.3:" + "9" * 10 + "/key",
]

ABSURD_DATES = [
    "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Mon, 01 Jan 10000 00:00:00 GMT",
    "Mon, 99 Jan 2026 00:00:00 GMT",
    "Sun, 31 Feb 2026 25:61:61 GMT",
    "yesterday",
    "",
    "Mon, 01 Jan 2026 00:00:00 +99999999999999",
    "9" * 400,
    "Tue, 15 Nov 1994 08:12:31",
    "x" * 4000,
]


class Generator:
    """Requests for a target, drawn from a seeded Random."""

    def __init__(self, world: FuzzWorld, seed: int) -> None:
        self.world = world
        self.rng = random.Random(seed)
        self.seed = seed
        self.target = world.target
        self.sent_valid: list[Request] = []
        self.number = 0
        self._kinds: list[tuple[Callable[[], Request], int]] = [
            (self.valid, 20),
            (self.mutated, 30),
            (self.junk_body, 12),
            (self.junk_signature, 10),
            (self.odd_key, 12),
            (self.rfc9421, 5),
            (self.replay, 3),
            (self.raw, 4),
            (self.odd_get, 4),
        ]

    def next(self) -> Request:
        makers, weights = zip(*self._kinds, strict=True)
        return self.rng.choices(makers, weights)[0]()

    # -- pieces -------------------------------------------------------------------------

    def _id(self, actor: str) -> str:
        self.number += 1
        style = self.rng.random()
        if style < 0.8:
            return f"{actor}/activities/{self.seed}-{self.number}"
        if style < 0.9:
            return f"{actor}/activities/{self.number}/" + "p" * self.rng.randint(100, 2000)
        return f"{actor}/activities/{self.number}/{quote(self.rng.choice(JUNK_STRINGS))}"

    def _junk_value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth > 4 or roll < 0.35:
            return self.rng.choice(JUNK_STRINGS)
        if roll < 0.45:
            return self.rng.choice([None, True, False, 0, -1, 10**30, 1.5e308, -0.0])
        if roll < 0.7:
            return [self._junk_value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {
            self.rng.choice(["id", "type", "actor", "object", "to", "cc", "@context", "x", ""]): (
                self._junk_value(depth + 1)
            )
            for _ in range(self.rng.randint(0, 5))
        }

    def _activity(self, actor: str) -> dict[str, Any]:
        kind = self.rng.choice(
            [
                "Follow",
                "Follow",
                "Undo",
                "Like",
                "Create",
                "Announce",
                "Delete",
                "Update",
                "Block",
                "Flag",
                "Accept",
                "Reject",
                "Add",
                "Move",
                "Emoji" + "x" * 10,
            ]
        )
        bot = f"{self.target}/u/mirror"
        activity: dict[str, Any] = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": self._id(actor),
            "type": kind,
            "actor": actor,
            "to": [PUBLIC],
        }
        if kind == "Follow":
            activity["object"] = self.rng.choice(
                [bot, bot, f"{self.target}/u/nobody", f"{self.target}/u/", "http://x.example/u/y"]
            )
        elif kind == "Undo":
            activity["object"] = {
                "id": f"{actor}/activities/{self.rng.randint(1, max(1, self.number))}",
                "type": "Follow",
                "actor": self.rng.choice([actor, actor, "http://x.example/u/other"]),
                "object": self.rng.choice([bot, self._junk_value(2)]),
            }
        elif kind == "Delete":
            activity["object"] = self.rng.choice(
                [actor, f"{self.target}/objects/1", self._junk_value()]
            )
        elif kind == "Create":
            activity["object"] = {
                "id": f"{actor}/notes/{self.number}",
                "type": "Note",
                "content": self.rng.choice(JUNK_STRINGS) * self.rng.randint(1, 20),
                "attributedTo": actor,
                "tag": [self._junk_value(2) for _ in range(self.rng.randint(0, 3))],
            }
        else:
            activity["object"] = self.rng.choice([f"{self.target}/objects/1", self._junk_value()])
        if self.rng.random() < 0.2:
            activity[self.rng.choice(["summary", "padding", "x", "endpoints"])] = self._junk_value()
        if self.rng.random() < 0.05:
            activity["padding"] = "p" * self.rng.randint(10_000, 200_000)
        return activity

    def _path(self) -> str:
        roll = self.rng.random()
        if roll < 0.75:
            return "/inbox"
        if roll < 0.9:
            return "/u/mirror/inbox"
        return f"/u/{quote(self.rng.choice(JUNK_STRINGS), safe='')}/inbox"

    def _signed(self, activity: dict[str, Any], actor: str, key: Any, path: str) -> Request:
        body = json.dumps(activity).encode()
        headers = signed(self.target + path, body, key=key, key_id=f"{actor}#main-key")
        return Request("valid", "POST", path, headers, body)

    # -- kinds --------------------------------------------------------------------------

    def valid(self) -> Request:
        actor, key = self.rng.choice(self.world.actors)
        path = "/inbox" if self.rng.random() < 0.8 else "/u/mirror/inbox"
        request = self._signed(self._activity(actor), actor, key, path)
        self.sent_valid.append(request)
        if len(self.sent_valid) > 50:
            self.sent_valid.pop(0)
        return request

    def replay(self) -> Request:
        if not self.sent_valid:
            return self.valid()
        previous = self.rng.choice(self.sent_valid)
        return Request(
            "replay", previous.method, previous.path, dict(previous.headers), previous.body
        )

    def mutated(self) -> Request:
        request = self.valid()
        request.kind = "mutated"
        headers = request.headers
        name = self.rng.choice(
            [
                "drop",
                "date",
                "digest",
                "signature",
                "host",
                "body",
                "content-type",
                "method",
                "path",
                "duplicate",
            ]
        )
        request.kind = f"mutated-{name}"
        if name == "drop":
            headers.pop(self.rng.choice(list(headers)), None)
        elif name == "date":
            headers["Date"] = self.rng.choice(
                [*ABSURD_DATES, http_date(datetime.now(UTC) - timedelta(hours=2))]
            )
        elif name == "digest":
            headers["Digest"] = self.rng.choice(
                [
                    "SHA-256=AAAA",
                    "sha-512=",
                    "MD5=abc",
                    "",
                    digest_header(b"other"),
                    "SHA-256=" + "A" * 5000,
                    headers["Digest"] + "," + digest_header(b"x"),
                ]
            )
        elif name == "signature":
            headers["Signature"] = self._mutate_signature(headers["Signature"])
        elif name == "host":
            headers["Host"] = self.rng.choice(
                ["other.example", "127.0.0.1", "", "x" * 300, "127.0.0.1:1"]
            )
        elif name == "body":
            body = bytearray(request.body)
            if body and self.rng.random() < 0.5:
                index = self.rng.randrange(len(body))
                body[index] ^= 1 << self.rng.randrange(8)
            else:
                body += self.rng.choice([b" ", b"\x00", b"}", b"\xff"])
            request.body = bytes(body)
        elif name == "content-type":
            headers["Content-Type"] = self.rng.choice(
                [
                    "text/plain",
                    "application/json",
                    'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
                    "application/activity+json; charset=latin-1",
                    "multipart/form-data; boundary=x",
                    ";;;",
                    "a" * 500,
                ]
            )
        elif name == "method":
            request.method = self.rng.choice(["PUT", "GET", "DELETE", "PATCH", "OPTIONS"])
        elif name == "path":
            request.path = self.rng.choice(
                ["/inbox?x=1", "/inbox/", "//inbox", "/u/mirror/inbox?" + "q" * 1000]
            )
        elif name == "duplicate":
            headers["signature"] = (
                headers.pop("Signature")
                + ", "
                + self._mutate_signature('keyId="x",signature="AAAA"')
            )
        return request

    def _mutate_signature(self, value: str) -> str:
        choice = self.rng.randrange(9)
        if choice == 0:
            return value.replace(
                'algorithm="rsa-sha256"', f'algorithm="{self.rng.choice(JUNK_STRINGS)}"'
            )
        if choice == 1:
            return value.replace(
                'headers="',
                f'created="{self.rng.choice(["9" * 400, "-5", "x", "1" * 12])}",headers="',
            )
        if choice == 2:
            return value.replace(
                'headers="', f'expires="{self.rng.choice(["9" * 400, "0", "x"])}",headers="'
            )
        if choice == 3:
            return (
                value.rsplit('signature="', 1)[0]
                + f'signature="{self.rng.choice(["", "@@", "A" * 5000, "AAAA"])}"'
            )
        if choice == 4:
            return value.replace(
                'headers="(request-target) host date', 'headers="(request-target) (created) date'
            )
        if choice == 5:
            return value + "," + self.rng.choice(['keyId="x"', "garbage", 'x="', "=" * 100])
        if choice == 6:
            # Junk in the keyId's path (its host stays one that answers: see KEY_JUNK).
            return value.replace("#main-key", quote(self.rng.choice(JUNK_STRINGS)) + "#main-key")
        if choice == 7:
            return self.rng.choice(JUNK_STRINGS)
        return value.replace('headers="', 'headers="' + " date" * self.rng.randint(1, 60) + " ")

    def junk_body(self) -> Request:
        actor, key = self.rng.choice(self.world.actors)
        roll = self.rng.random()
        if roll < 0.15:
            depth = self.rng.choice([50, 900, 2000, 10000, 50000])
            body = b"[" * depth + b"]" * depth
        elif roll < 0.25:
            body = json.dumps(_nested(self.rng.choice([33, 200, 900]))).encode()
        elif roll < 0.35:
            body = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 300)))
        elif roll < 0.45:
            body = self.rng.choice(
                [
                    b"",
                    b"null",
                    b"[]",
                    b'"x"',
                    b"1" * 5000,
                    b"NaN",
                    b'{"a":1,"a":2}',
                    b"\xef\xbb\xbf{}",
                    b'{"id": "\\ud800"}',
                    b'{"type": "\\u0000"}',
                ]
            )
        else:
            activity = self._activity(actor)
            for _ in range(self.rng.randint(1, 3)):
                activity[self.rng.choice(["id", "type", "actor", "object"])] = self._junk_value()
            body = json.dumps(activity).encode()
        # Signed properly, so that the body is the only thing wrong with it.
        headers = signed(self.target + "/inbox", body, key=key, key_id=f"{actor}#main-key")
        return Request("junk-body", "POST", self._path(), headers, body)

    def junk_signature(self) -> Request:
        actor, _ = self.rng.choice(self.world.actors)
        body = json.dumps(self._activity(actor)).encode()
        headers = {
            "Host": urlsplit(self.target).netloc,
            "Date": http_date(),
            "Digest": digest_header(body),
            "Content-Type": ACTIVITY_JSON,
        }
        key_id = self.rng.choice(
            [
                f"{actor}#main-key",
                f"{self.world.host.base}/nothing#k",
                f"{self.target}/u/mirror#main-key",
                f"{self.target}/nothing",
                self.rng.choice(KEY_JUNK),
            ]
        )
        signature = base64.b64encode(
            self.rng.randbytes(self.rng.choice([0, 16, 256, 512]))
        ).decode()
        covered = self.rng.choice(
            [
                "(request-target) host date digest",
                "(request-target) host (created) digest",
                "date",
                "",
                "(request-target) host date digest x-missing",
            ]
        )
        header = f'keyId="{key_id}",algorithm="hs2019",headers="{covered}",signature="{signature}"'
        if "(created)" in covered:
            header += f",created={self.rng.choice([str(int(time.time())), '9' * 400, '-1'])}"
        if self.rng.random() < 0.3:
            headers["Authorization"] = "Signature " + header
        else:
            headers["Signature"] = header
        return Request("junk-signature", "POST", self._path(), headers, body)

    def odd_key(self) -> Request:
        key_id = self.rng.choice(list(self.world.odd_keys))
        key = self.world.odd_keys[key_id]
        actor = key_id.split("#", 1)[0]
        activity = self._activity(actor)
        if self.rng.random() < 0.3:
            activity = {"id": f"{actor}#delete", "type": "Delete", "actor": actor, "object": actor}
        body = json.dumps(activity).encode()
        headers = signed(self.target + "/inbox", body, key=key, key_id=key_id)
        return Request("odd-key", "POST", "/inbox", headers, body)

    def rfc9421(self) -> Request:
        actor, key = self.rng.choice(self.world.actors)
        body = json.dumps(self._activity(actor)).encode()
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        created = self.rng.choice([str(int(time.time()))] * 3 + ["9" * 400, "-1", "x"])
        digest = content_digest_header(body)
        url = self.target + "/inbox"
        params = (
            f'("@method" "@target-uri" "content-digest");created={created};keyid="{actor}#main-key"'
        )
        params += self.rng.choice([';alg="rsa-v1_5-sha256"', "", ';alg="ed25519"', ';alg="x"'])
        base = "\n".join(
            [
                '"@method": POST',
                f'"@target-uri": {url}',
                f'"content-digest": {digest}',
                f'"@signature-params": {params}',
            ]
        ).encode()
        signature = base64.b64encode(key.sign(base, padding.PKCS1v15(), hashes.SHA256())).decode()
        headers = {
            "Content-Type": ACTIVITY_JSON,
            "Content-Digest": digest,
            "Signature-Input": f"sig1={params}",
            "Signature": f"sig1=:{signature}:",
        }
        mutation = self.rng.randrange(6)
        if mutation == 1:
            headers["Signature-Input"] = self.rng.choice(
                [*JUNK_STRINGS, 'sig1=("@method"', "sig1=()", 'sig1=("' + "x" * 3000 + '")']
            )
        elif mutation == 2:
            headers["Signature"] = self.rng.choice(["sig2=:AAAA:", "sig1=::", "sig1=:@@:", "x"])
        elif mutation == 3:
            headers["Content-Digest"] = self.rng.choice(["sha-256=:AAAA:", "sha-512=x", ""])
        elif mutation == 4:
            body = body + b" "
        return Request("rfc9421", "POST", "/inbox", headers, body)

    def raw(self) -> Request:
        post = b"POST /inbox HTTP/1.1\r\nHost: x\r\n"
        host = urlsplit(self.target).netloc
        payload = self.rng.choice(
            [
                b"GARBAGE\r\n\r\n",
                b"POST /inbox HTTP/1.1\r\nHost: " + host.encode() + b"\r\nBad header line\r\n\r\n",
                post + b"Content-Length: -5\r\n\r\n",
                post + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
                post + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
                b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 10000 + b"\r\n\r\n",
                b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
                post + b"Content-Type: application/activity+json\r\n"
                b"Content-Length: 10\r\n\r\n{",  # a body that never completes
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS to an HTTP port
                b"GET / HTTP/1.1\r\nHost: x\r\nX\x01Y: z\r\n\r\n",
                b"GET / HTTP/1.1\nHost: x\n\n",
            ]
        )
        return Request("raw", "RAW", "", {}, raw=payload)

    def odd_get(self) -> Request:
        junk = quote(self.rng.choice(JUNK_STRINGS), safe="")
        path = self.rng.choice(
            [
                f"/u/{junk}",
                f"/u/{junk}/outbox",
                f"/u/mirror/followers?page={junk}",
                f"/objects/{junk}",
                f"/activities/{junk}",
                f"/.well-known/webfinger?resource={junk}",
                f"/.well-known/webfinger?resource=acct:{junk}@x",
                "/nodeinfo/2.1",
                "/u/mirror",
                "/",
            ]
        )
        accept = self.rng.choice([ACTIVITY_JSON, "text/html", "*/*", "", "application/json;q=x"])
        return Request("get", "GET", path, {"Accept": accept} if accept else {})


# -- the runner -------------------------------------------------------------------------


async def _send(
    session: aiohttp.ClientSession, base: str, request: Request, report: Report
) -> None:
    report.kinds[request.kind] += 1
    if request.raw is not None:
        await _send_raw(base, request, report)
        return
    try:
        async with session.request(
            request.method,
            base + request.path,
            data=request.body if request.method != "GET" else None,
            headers=request.headers,
            skip_auto_headers=("Content-Type",),
            allow_redirects=False,
        ) as response:
            text = (await response.read())[:300].decode("utf-8", "replace")
            status = response.status
    except (ValueError, UnicodeEncodeError, aiohttp.InvalidURL):
        report.unsendable += 1  # the client would not write it (e.g. a newline in a header)
        return
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        report.no_answer.append((request.kind, f"{type(exc).__name__}: {exc}"))
        return
    report.sent += 1
    report.statuses[status] += 1
    if status >= 500:
        report.server_errors.append((request.kind, status, text))


async def _send_raw(base: str, request: Request, report: Report) -> None:
    parts = urlsplit(base)
    assert request.raw is not None
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except OSError as exc:
        report.no_answer.append(("raw", str(exc)))
        return
    try:
        writer.write(request.raw)
        await writer.drain()
        async with asyncio.timeout(1):
            answer = await reader.read(4096)
    except (TimeoutError, OSError):
        answer = b""  # an incomplete request may get no answer; the server must live on
    finally:
        writer.close()
    report.sent += 1
    line = answer.split(b"\r\n", 1)[0].split()
    status = int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0
    report.statuses[status] += 1
    if status >= 500:
        report.server_errors.append(("raw", status, answer[:300].decode("latin-1")))


async def _watch_health(base: str, report: Report, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while not stop.is_set():
            report.healthz_checks += 1
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status != 200:
                        report.healthz_failures.append(f"status {response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                report.healthz_failures.append(f"{type(exc).__name__}: {exc}")
            try:
                async with asyncio.timeout(0.25):
                    await stop.wait()
            except TimeoutError:
                pass


async def run_fuzz(
    base: str,
    world: FuzzWorld,
    *,
    count: int,
    seed: int = 19,
    concurrency: int = PER_HOST,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Send ``count`` requests from ``Generator(world, seed)``, ``concurrency`` at once.

    At most PER_HOST at once by default: a fifth key fetch from the world's
    one host would be refused with 503 by design, not by a defect.
    """
    generator = Generator(world, seed)
    report = Report()
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_health(base, report, stop))
    queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=concurrency * 4)
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def sender() -> None:
            while (request := await queue.get()) is not None:
                await _send(session, base, request, report)

        senders = [asyncio.create_task(sender()) for _ in range(concurrency)]
        try:
            for number in range(count):
                await queue.put(generator.next())
                if progress is not None and number % 100 == 0:
                    progress(number)
            for _ in senders:
                await queue.put(None)
            await asyncio.gather(*senders)
        finally:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
    report.seconds = time.monotonic() - started
    stop.set()
    await watcher
    return report


# -- a real `mirror serve` ---------------------------------------------------------------


@dataclass
class Served:
    """A `mirror serve` process on 127.0.0.1, its log in a file."""

    base: str
    process: subprocess.Popen[bytes]
    log_path: Any

    def stop(self) -> str:
        """SIGTERM, wait, and the whole log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log_path.read_text(errors="replace")


async def start_serve(
    directory: Any, *, database_url: str = "", log_format: str = "text"
) -> Served:
    """`mirror init` then `mirror serve` in ``directory`` (a pathlib.Path), as an operator would."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = directory / "mirror.toml"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MIRROR_") or key == "MIRROR_TEST_PG_URL"
    }
    env.update(
        MIRROR_DATA_DIR=str(directory / "data"),
        MIRROR_ALLOW_PRIVATE_NETWORKS="true",
        MIRROR_CONFIG=str(config),
    )
    if database_url:
        env["MIRROR_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "mirror"]
    init = await asyncio.to_thread(
        subprocess.run,
        [*command, "init", "--base-url", base, "--config", str(config)],
        env=env,
        capture_output=True,
    )
    assert init.returncode == 0, init.stderr.decode()
    log_path = directory / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--log-format", log_format, "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=log,
            stderr=log,
        )
    served = Served(base, process, log_path)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        for _ in range(200):
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        return served
            except (aiohttp.ClientError, TimeoutError):
                pass
            if process.poll() is not None:
                break
            await asyncio.sleep(0.05)
    raise AssertionError("mirror serve did not come up: " + served.stop())

"""The sandbox signs what it sends with httpsig, not fedimirror's signer.

Two implementations on the two sides of every test: a bug in ours cannot
pass because the same code both signed and verified.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpsig import HeaderSigner

ACTIVITY_JSON = "application/activity+json"


def signed_post_headers(
    url: str,
    body: bytes,
    *,
    key: rsa.RSAPrivateKey,
    key_id: str,
    now: datetime,
    host_without_port: bool = False,
) -> dict[str, str]:
    """Headers of a POST of ``body`` to ``url``, with Digest and a draft-cavage Signature.

    ``host_without_port``: Host is the bare host name, as PieFed sends it.
    """
    parts = urlsplit(url)
    headers = {
        "Host": (parts.hostname or "") if host_without_port else parts.netloc,
        "Date": format_datetime(now, usegmt=True),
        "Digest": "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode(),
        "Content-Type": ACTIVITY_JSON,
    }
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = HeaderSigner(
        key_id=key_id,
        secret=pem,
        algorithm="rsa-sha256",
        headers=["(request-target)", "host", "date", "digest", "content-type"],
        sign_header="Signature",
    )
    return signer.sign(headers, method="POST", path=parts.path or "/")

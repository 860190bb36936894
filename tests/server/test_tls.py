"""`mirror serve` speaking https itself ([server].tls_cert/tls_key), and our client trusting
SSL_CERT_FILE, over loopback with a certificate made here."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mirror.clock import SystemClock
from mirror.config import load_settings
from mirror.db import migrate
from mirror.db.session import make_engine, write_transaction
from mirror.errors import ConfigError
from mirror.federation.actors import BOT, create_actor
from mirror.federation.communities import host
from mirror.federation.service import Federation
from mirror.net.client import FetchError, fetch_json, make_session
from mirror.net.guard import ANYWHERE
from mirror.server.app import serve
from mirror.server.tls import server_ssl_context
from mirror.signatures import MasterKey
from tests.peer import free_port
from tests.server.conftest import make_settings, wait_for


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_serve_speaks_https_and_our_client_trusts_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox_factory: Any
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    settings = make_settings(tmp_path, port, server={"tls_cert": str(cert), "tls_key": str(key)})
    base = f"https://127.0.0.1:{port}"
    settings = replace(settings, instance=replace(settings.instance, base_url=base))
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    master_key, clock = MasterKey.generate(), SystemClock()
    federation = Federation(settings=settings, engine=engine, clock=clock, master_key=master_key)
    with write_transaction(engine) as conn:
        create_actor(conn, username="mirror", kind=BOT, master_key=master_key, now=clock.now())
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve(federation, host="127.0.0.1", port=port, ready=ready, stop=stop)
    )
    try:
        async with asyncio.timeout(20):
            await asyncio.wait(
                {asyncio.create_task(ready.wait()), task}, return_when="FIRST_COMPLETED"
            )
        assert ready.is_set(), task.exception()

        trusting = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz", ssl=trusting) as response:
                assert response.status == 200
            # Plain http on the same port gets no answer from the application.
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    await response.read()

        def client() -> aiohttp.ClientSession:
            return make_session(allowed=ANYWHERE, timeout_s=10, base_url=base)

        # Without the certificate trusted, our client refuses the peer...
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "elsewhere.pem"))
        async with client() as session:
            with pytest.raises((FetchError, aiohttp.ClientError)) as refused:
                await fetch_json(
                    session, f"{base}/u/mirror", clock=clock, allowed=ANYWHERE, max_bytes=1 << 20
                )
        assert "certificate" in str(refused.value).lower()
        # ...and trusts it once SSL_CERT_FILE names it, set after aiohttp was imported.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        async with client() as session:
            url, actor = await fetch_json(
                session, f"{base}/u/mirror", clock=clock, allowed=ANYWHERE, max_bytes=1 << 20
            )
        assert url == f"{base}/u/mirror"
        assert actor["id"] == f"{base}/u/mirror" and actor["inbox"].startswith(base)

        # A Lemmy-like peer that looks communities up over https (as PieFed
        # does) follows a hosted Group; the Accept comes back through the queue.
        with write_transaction(engine) as conn:
            host(
                conn,
                source="unknown",
                name="archive",
                master_key=master_key,
                now=clock.now(),
                bot_username="mirror",
            )
        sandbox = await sandbox_factory()
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{sandbox.base}/api/sandbox/subscribe?scheme=https",
                json={"community": f"archive@127.0.0.1:{port}"},
            ) as response:
                answer = await response.json(content_type=None)
        assert answer.get("group") == f"{base}/c/archive", answer
        await wait_for(lambda: sandbox.subscriptions[f"{base}/c/archive"].accepted)
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task
        engine.dispose()


def _config(tmp_path: Path, server: str, base_url: str = "https://mirror.example") -> Path:
    path = tmp_path / "mirror.toml"
    path.write_text(f'[instance]\nbase_url = "{base_url}"\n[server]\n{server}\n')
    return path


def test_tls_files_are_both_or_neither(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"\[server\]\.tls_cert is set but \[server\]\.tls_key"):
        load_settings(_config(tmp_path, f'tls_cert = "{cert}"'))


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    missing = tmp_path / "nokey.pem"
    config = _config(tmp_path, f'tls_cert = "{cert}"\ntls_key = "{missing}"')
    with pytest.raises(ConfigError, match=rf"\[server\]\.tls_key: {missing}: No such file"):
        load_settings(config)


def test_tls_with_an_http_base_url_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = _config(tmp_path, f'tls_cert = "{cert}"\ntls_key = "{key}"', "http://mirror.example")
    with pytest.raises(
        ConfigError, match=re.escape("base_url is 'http://mirror.example': make it https://")
    ):
        load_settings(config)


def test_an_unloadable_pair_is_refused_before_serving(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_key = self_signed(other)
    good = load_settings(_config(tmp_path, f'tls_cert = "{cert}"\ntls_key = "{key}"'))
    assert server_ssl_context(good) is not None
    mismatched = load_settings(_config(tmp_path, f'tls_cert = "{cert}"\ntls_key = "{wrong_key}"'))
    with pytest.raises(ConfigError, match=rf"\[server\]\.tls_cert {cert} with tls_key {wrong_key}"):
        server_ssl_context(mismatched)
    assert server_ssl_context(load_settings(_config(tmp_path, ""))) is None

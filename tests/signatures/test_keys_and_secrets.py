"""Keys (SPKI PEM, cached loading) and the master key that encrypts them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mirror.signatures import (
    InvalidKey,
    MasterKey,
    MasterKeyError,
    create_master_key_file,
    digest_header,
    generate_private_key,
    load_master_key,
    load_private_key,
    load_public_key,
    private_key_to_pem,
    public_key_pem,
    verify_content_digest,
    verify_digest_header,
)
from mirror.signatures.digest import content_digest_header


def test_key_round_trip_and_spki() -> None:
    key = generate_private_key()
    assert key.key_size == 2048
    pem = private_key_to_pem(key)
    assert load_private_key(pem).private_numbers() == key.private_numbers()
    assert load_private_key(pem) is load_private_key(pem)  # parsed once
    public = public_key_pem(key)
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    pkcs1 = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        .decode()
    )
    assert load_public_key(pkcs1).public_numbers() == load_public_key(public).public_numbers()


def test_non_rsa_and_garbage_keys_are_refused() -> None:
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    ed_pem = ed.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidKey):
        load_public_key(ed_pem.decode())
    with pytest.raises(InvalidKey):
        load_public_key("not a key")
    with pytest.raises(InvalidKey):
        load_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")


def test_master_key_round_trip_and_wrong_key() -> None:
    key = MasterKey.generate()
    token = key.encrypt(b"secret pem")
    assert key.decrypt(token) == b"secret pem"
    assert MasterKey.from_text(key.to_text()).decrypt(token) == b"secret pem"
    with pytest.raises(MasterKeyError, match="wrong master key"):
        MasterKey.generate().decrypt(token)
    assert key.to_text() not in repr(key)
    with pytest.raises(MasterKeyError):
        MasterKey.from_text("short")


def test_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    created = create_master_key_file(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(MasterKeyError, match="never overwritten"):
        create_master_key_file(path)
    loaded = load_master_key({}, path)
    assert loaded.to_text() == created.to_text()
    os.chmod(path, 0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key({}, path)
    other = MasterKey.generate()
    assert (
        load_master_key({"MIRROR_MASTER_KEY": other.to_text()}, path).to_text() == other.to_text()
    )
    with pytest.raises(MasterKeyError, match="mirror init"):
        load_master_key({}, tmp_path / "missing.key")


def test_digests() -> None:
    assert digest_header(b"") == "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert verify_digest_header(digest_header(b"x"), b"x")
    assert not verify_digest_header(digest_header(b"x"), b"y")
    assert not verify_digest_header("MD5=abc", b"x")
    assert verify_content_digest(content_digest_header(b"x"), b"x")
    assert not verify_content_digest(content_digest_header(b"x"), b"y")

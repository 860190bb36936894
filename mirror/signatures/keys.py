"""RSA keys: generating, serialising (SPKI, as Lemmy requires) and loading, cached."""

from __future__ import annotations

from functools import lru_cache

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class InvalidKey(ValueError):
    """A key that cannot be used: unparseable, or not RSA."""


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_to_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SPKI ("BEGIN PUBLIC KEY"): Lemmy cannot read PKCS#1 public keys."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


# Parsing a private key with its consistency checks costs tens of
# milliseconds; every signature needs one, so parsed keys are kept.
@lru_cache(maxsize=4096)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidKey("not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidKey(f"not an RSA key ({type(key).__name__})")
    return key


@lru_cache(maxsize=4096)
def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """An RSA public key from SPKI or PKCS#1 ("BEGIN RSA PUBLIC KEY") PEM."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidKey("not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidKey(f"not an RSA key ({type(key).__name__})")
    return key

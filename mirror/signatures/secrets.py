"""The master key: encrypts the private keys stored in the database.

Workers on several machines share the database, so keys live there, and
the master key that opens them lives outside it: in the environment
(MIRROR_MASTER_KEY) or a 0600 file created by `mirror init`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

ENV = "MIRROR_MASTER_KEY"


class MasterKeyError(Exception):
    """The master key is missing, unreadable, too open, or does not fit."""


class MasterKey:
    """A Fernet key (AES-128-CBC + HMAC-SHA256), never shown in reprs or errors."""

    __slots__ = ("_fernet", "_text")

    def __init__(self, text: str) -> None:
        try:
            self._fernet = Fernet(text.strip().encode())
        except (ValueError, TypeError):
            raise MasterKeyError(
                "the master key is not a valid key (32 url-safe base64 bytes)"
            ) from None
        self._text = text.strip()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(Fernet.generate_key().decode())

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        return cls(text)

    def to_text(self) -> str:
        return self._text

    def encrypt(self, data: bytes) -> str:
        return self._fernet.encrypt(data).decode()

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except (InvalidToken, ValueError):
            raise MasterKeyError("cannot decrypt a stored private key: wrong master key?") from None

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"


def load_master_key(env: Mapping[str, str], path: Path) -> MasterKey:
    """From $MIRROR_MASTER_KEY, else from ``path`` (which must not be readable by others)."""
    if env.get(ENV):
        return MasterKey(env[ENV])
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MasterKeyError(f"{path}: no master key; run `mirror init` or set {ENV}") from None
    if mode & 0o077:
        raise MasterKeyError(
            f"{path}: mode {stat.filemode(mode)} lets others read the master key; chmod 600 it"
        )
    try:
        return MasterKey(path.read_text())
    except OSError as exc:
        raise MasterKeyError(f"{path}: cannot read the master key ({exc.strerror})") from None


def create_master_key_file(path: Path) -> MasterKey:
    """A new master key in a new 0600 file; never overwrites one."""
    key = MasterKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise MasterKeyError(f"{path} exists; it is never overwritten") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(key.to_text() + "\n")
    return key

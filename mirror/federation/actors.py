"""Our local actors: creating them (with their keys) and describing them."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.config import Settings
from mirror.db.base import table_of
from mirror.db.models import LocalActor
from mirror.net.client import Signer
from mirror.signatures import (
    MasterKey,
    generate_private_key,
    load_private_key,
    private_key_to_pem,
    public_key_pem,
)
from mirror.vocab.actor import build_service_actor, build_summary
from mirror.vocab.ids import Urls

BOT = "bot"
PUPPET = "puppet"
#: A hosted community's Group (mirror.federation.communities).
GROUP = "group"
_NOT_NAME = re.compile(r"[^a-z0-9_]+")


def puppet_username(handle: str, *, taken: bool = False) -> str:
    """A stable local username for an author: milo@wheels.example -> milo_wheels_example.

    ``taken``: the plain name belongs to a hosted community or the bot (one
    namespace); the puppet then carries a hash of its handle instead.
    """
    name = _NOT_NAME.sub("_", handle.lower().replace("@", "_")).strip("_")
    if len(name) > 48 or taken:
        name = name[:39] + "_" + hashlib.sha256(handle.encode()).hexdigest()[:8]
    return name or "unknown"


def get_actor(connection: sa.Connection, username: str) -> LocalActor | None:
    row = connection.execute(
        sa.select(table_of(LocalActor)).where(LocalActor.username == username)
    ).first()
    return LocalActor(**row._mapping) if row else None


def create_actor(
    connection: sa.Connection,
    *,
    username: str,
    kind: str,
    master_key: MasterKey,
    now: datetime,
    source_handle: str | None = None,
) -> LocalActor:
    """A new actor with a fresh RSA-2048 key; the private half is stored encrypted."""
    key = generate_private_key()
    actor = LocalActor(
        username=username,
        kind=kind,
        source_handle=source_handle,
        public_key_pem=public_key_pem(key),
        private_key=master_key.encrypt(private_key_to_pem(key).encode()),
        profile_hash=None,
        created_at=now,
        updated_at=now,
    )
    table = table_of(LocalActor)
    values = {c.key: getattr(actor, c.key) for c in table.columns}
    connection.execute(sa.insert(table), [values])
    return actor


class KeyStore:
    """Signers for our actors: private keys decrypted once per process, then cached."""

    def __init__(self, master_key: MasterKey, urls: Urls) -> None:
        self._master_key = master_key
        self._urls = urls

    def signer(self, actor: LocalActor) -> Signer:
        pem = _decrypt(self._master_key, actor.private_key)
        return Signer(
            key_id=actor_key_id(self._urls, actor),
            private_key=load_private_key(pem),
            pem=pem.encode(),
        )


def actor_url(urls: Urls, actor: LocalActor) -> str:
    """Where an actor is served: /c/NAME for a Group, /u/NAME for the others."""
    return urls.community(actor.username).id if actor.kind == GROUP else urls.actor(actor.username)


def actor_key_id(urls: Urls, actor: LocalActor) -> str:
    return f"{actor_url(urls, actor)}#main-key"


@lru_cache(maxsize=1024)
def _decrypt(master_key: MasterKey, token: str) -> str:
    return master_key.decrypt(token).decode()


def actor_document(settings: Settings, urls: Urls, actor: LocalActor) -> dict[str, Any]:
    """The actor as served (and as sent in an Update)."""
    instance = settings.instance
    if actor.kind == BOT:
        name = instance.display_name
        source = None
    else:
        name = actor.source_handle or actor.username
        source = actor.source_handle
    return build_service_actor(
        urls,
        username=actor.username,
        name=name,
        summary_html=build_summary(
            operator=instance.operator,
            extra=instance.summary if actor.kind == BOT else "",
            source=source,
        ),
        public_key_pem=actor.public_key_pem,
        published=actor.created_at,
        icon_url=instance.icon_url if actor.kind == BOT else "",
    )


def profile_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class Signers:
    """username -> Signer, loaded from the database once per actor (thread-safe).

    A first lookup reads the database: call it on a thread, not the event loop.
    """

    def __init__(self, engine: Engine, keys: KeyStore) -> None:
        self._engine = engine
        self._keys = keys
        self._cache: dict[str, Signer] = {}
        self._lock = threading.Lock()

    def __call__(self, username: str) -> Signer:
        signer = self._cache.get(username)
        if signer is not None:
            return signer
        with self._lock:
            if username not in self._cache:
                with self._engine.connect() as conn:
                    actor = get_actor(conn, username)
                if actor is None:
                    raise LookupError(f"no local actor {username!r} to sign with")
                self._cache[username] = self._keys.signer(actor)
            return self._cache[username]

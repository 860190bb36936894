"""Every URL we publish is minted here, from the configured base URL.

Receivers deduplicate on ids and Lemmy stores them in 255-character
columns, so ids are short, stable and never built anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mirror.errors import ConfigError

#: Lemmy keeps ids in varchar(255) columns.
MAX_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Urls:
    """The URL scheme of one instance: https://host[:port] plus fixed paths."""

    base: str

    @classmethod
    def from_base_url(cls, base_url: str) -> Urls:
        """Validate a configured base URL: http(s), a host, no path, query or fragment."""
        text = base_url.strip().rstrip("/")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"[instance].base_url {base_url!r} must be http(s)://host[:port], e.g. "
                "https://mirror.example.org"
            )
        if parts.path or parts.query or parts.fragment or parts.username:
            raise ConfigError(
                f"[instance].base_url {base_url!r} must not have a path, query or user part"
            )
        try:
            port = parts.port
        except ValueError:  # not a number, or past 65535
            port = -1
        if port is not None and not 0 < port < 65536:
            raise ConfigError(
                f"[instance].base_url {base_url!r}: the port must be a number from 1 to 65535"
            )
        return cls(f"{parts.scheme}://{parts.netloc.lower()}")

    @property
    def host(self) -> str:
        """host[:port] as written in the base URL (WebFinger's acct host)."""
        return urlsplit(self.base).netloc

    @property
    def hostname(self) -> str:
        return urlsplit(self.base).hostname or ""

    def actor(self, username: str) -> str:
        return f"{self.base}/u/{username}"

    def key_id(self, username: str) -> str:
        return f"{self.actor(username)}#main-key"

    def inbox(self, username: str) -> str:
        return f"{self.actor(username)}/inbox"

    def outbox(self, username: str) -> str:
        return f"{self.actor(username)}/outbox"

    def followers(self, username: str) -> str:
        return f"{self.actor(username)}/followers"

    def following(self, username: str) -> str:
        return f"{self.actor(username)}/following"

    @property
    def shared_inbox(self) -> str:
        return f"{self.base}/inbox"

    def object(self, object_id: str) -> str:
        return f"{self.base}/objects/{object_id}"

    def replies(self, object_id: str) -> str:
        """A hosted post's comments, as a collection (PieFed follows `replies`)."""
        return f"{self.object(object_id)}/replies"

    def activity(self, activity_id: str) -> str:
        return f"{self.base}/activities/{activity_id}"

    def community(self, name: str) -> CommunityUrls:
        """A hosted community's URLs, under /c/ as Lemmy's (one namespace with /u/)."""
        return CommunityUrls(f"{self.base}/c/{name}")

    def acct(self, username: str) -> str:
        return f"acct:{username}@{self.host}"

    @property
    def nodeinfo(self) -> str:
        return f"{self.base}/nodeinfo/2.1"

    def is_local(self, url: str) -> bool:
        return (
            url == self.base or url.startswith(self.base + "/") or url.startswith(self.base + "#")
        )

    def username_of(self, actor_url: str) -> str | None:
        """The username in one of our actor URLs, or None."""
        prefix = f"{self.base}/u/"
        if not actor_url.startswith(prefix):
            return None
        rest = actor_url[len(prefix) :]
        return rest if rest and "/" not in rest and "#" not in rest else None

    def community_of(self, url: str) -> str | None:
        """The name in one of our community (Group) URLs, or None."""
        prefix = f"{self.base}/c/"
        if not url.startswith(prefix):
            return None
        rest = url[len(prefix) :]
        return rest if rest and "/" not in rest and "#" not in rest else None


@dataclass(frozen=True, slots=True)
class CommunityUrls:
    """The URLs of one hosted community (a Group), named as Lemmy names its own."""

    id: str

    @property
    def key_id(self) -> str:
        return f"{self.id}#main-key"

    @property
    def inbox(self) -> str:
        return f"{self.id}/inbox"

    @property
    def outbox(self) -> str:
        return f"{self.id}/outbox"

    @property
    def followers(self) -> str:
        return f"{self.id}/followers"

    @property
    def moderators(self) -> str:
        return f"{self.id}/moderators"

    @property
    def featured(self) -> str:
        return f"{self.id}/featured"


def check_id(url: str) -> str:
    """Refuse an id Lemmy could not store."""
    if len(url) > MAX_ID_LENGTH:
        raise ValueError(f"id longer than {MAX_ID_LENGTH} characters: {url[:80]}...")
    return url

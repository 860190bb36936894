"""Resolve a target community (`!name@host`, `name@host` or its URL) to its Group actor.

WebFinger finds the actor; the actor says where to deliver (Lemmy 1.0 has
only the shared `/inbox`, so `endpoints.sharedInbox` is preferred) and
whether only moderators may post; NodeInfo says which software it runs,
which decides whether a post may be a Note (shared/docs/lemmy-receive-rules.md
§3.1, §3.4), and whether it is fedimirror's own sandbox (`metadata.sandbox`),
which a run need not pace.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from mirror.errors import MirrorError
from mirror.federation.server_software import nodeinfo
from mirror.net.client import FetchError, fetch_json
from mirror.net.guard import Allowance

HANDLE = re.compile(r"^!?([A-Za-z0-9_.\-]+)@([A-Za-z0-9.\-]+(?::\d+)?)$")


class TargetError(MirrorError):
    """The target community cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    name: str
    inbox: str
    followers: str | None
    posting_restricted_to_mods: bool
    software: str | None
    version: str | None
    #: Its NodeInfo says `metadata.sandbox: true` (`mirror sandbox`): runs default to unpaced.
    sandbox: bool = False
    #: The name of one of our own hosted communities, when the target is that Group.
    hosted: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.id).netloc

    def post_type(self, setting: str) -> str:
        """Page, or Note where the software takes a top-level Note as a post.

        Lemmy 0.19 and PieFed parse a Note without inReplyTo as a post;
        Lemmy 1.0 refuses it (rules §3.4), as may anything unknown.
        """
        if self.hosted:
            # Read by every kind of server: Lemmy 1.0 refuses a top-level Note.
            return "Page"
        if setting in ("Note", "Page"):
            return setting
        software = (self.software or "").lower()
        if software == "piefed" or (software == "lemmy" and (self.version or "").startswith("0.")):
            return "Note"
        return "Page"


def _is_local(host: str) -> bool:
    name = (
        host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1:].split("]")[0]
    )
    if name == "localhost":
        return True
    try:
        return not ipaddress.ip_address(name).is_global
    except ValueError:
        return False


def schemes_for(host: str, *, allowed: Allowance) -> tuple[str, ...]:
    """https first; plain http too for a private host the guard allows.

    A real server (PieFed on loopback with TLS, say) takes https; a local
    sandbox may speak http only.
    """
    parts = urlsplit(f"http://{host}")
    try:
        port = parts.port or 80
    except ValueError:
        return ("https",)
    local = _is_local(host) and allowed.allows(parts.hostname or host, port)
    return ("https", "http") if local else ("https",)


async def resolve(federation: Any, spec: str) -> Target:
    """Find and check the community ``spec`` names; raises TargetError with the reason."""
    allowed = federation.allowed
    signer = await federation.bot_signer()
    settings = federation.settings.federation

    async def get(url: str, accept: str | None = None) -> Any:
        kwargs: dict[str, Any] = {"accept": accept} if accept else {}
        try:
            _, data = await fetch_json(
                federation.session,
                url,
                clock=federation.clock,
                allowed=allowed,
                max_bytes=settings.fetch_max_bytes,
                signer=signer,
                **kwargs,
            )
        except FetchError as exc:
            raise TargetError(f"cannot reach {spec}: {exc}") from None
        return data

    text = spec.strip()
    if text.startswith(("http://", "https://")):
        actor_url = text
    else:
        match = HANDLE.match(text)
        if not match:
            raise TargetError(
                f"{spec!r} is not a community: use !name@host, name@host or the community's URL"
            )
        name, host = match.groups()
        resource = quote(f"acct:{name}@{host}", safe=":@")
        schemes = schemes_for(host, allowed=allowed)
        errors: list[TargetError] = []
        for scheme in schemes:
            try:
                jrd = await get(
                    f"{scheme}://{host}/.well-known/webfinger?resource={resource}",
                    accept="application/jrd+json",
                )
                break
            except TargetError as exc:
                errors.append(exc)
        else:
            raise errors[0]  # what https said is what the operator needs to read
        links = jrd.get("links") if isinstance(jrd, dict) else None
        hrefs = [
            link.get("href")
            for link in links or []
            if isinstance(link, dict)
            and link.get("rel") == "self"
            and "activity+json" in str(link.get("type", ""))
        ]
        if not hrefs or not isinstance(hrefs[0], str):
            raise TargetError(f"{spec}: WebFinger names no ActivityPub actor")
        actor_url = hrefs[0]

    actor = await get(actor_url)
    if not isinstance(actor, dict) or actor.get("type") != "Group":
        kind = actor.get("type") if isinstance(actor, dict) else type(actor).__name__
        raise TargetError(f"{spec} is a {kind}, not a community (a Group)")
    endpoints = actor.get("endpoints") if isinstance(actor.get("endpoints"), dict) else {}
    inbox = endpoints.get("sharedInbox") or actor.get("inbox")
    if not isinstance(inbox, str) or not isinstance(actor.get("id"), str):
        raise TargetError(f"{spec}: the community's actor has no inbox")
    software, version, sandbox = await _software(get, actor["id"])
    refusal = await _instance_refusal(get, actor["id"], federation.urls.hostname)
    if refusal:
        raise TargetError(f"{spec}: {refusal}; every delivery would be refused")
    return Target(
        id=actor["id"],
        name=str(actor.get("preferredUsername") or actor.get("name") or actor["id"]),
        inbox=inbox,
        followers=actor.get("followers") if isinstance(actor.get("followers"), str) else None,
        posting_restricted_to_mods=bool(actor.get("postingRestrictedToMods")),
        software=software,
        version=version,
        sandbox=sandbox,
    )


async def _software(get: Any, actor_id: str) -> tuple[str | None, str | None, bool]:
    """(software, version, whether it is a sandbox) from the server's NodeInfo."""
    try:
        info = await nodeinfo(lambda url: get(url, "application/json"), actor_id)
        if info is None:
            return None, None, False
        software = info.get("software", {})
        metadata = info.get("metadata")
        sandbox = isinstance(metadata, dict) and metadata.get("sandbox") is True
        return software.get("name"), software.get("version"), sandbox
    except (TargetError, AttributeError):
        # No NodeInfo: unknown software, so posts go as Page (what everyone takes).
        return None, None, False


async def _instance_refusal(get: Any, actor_id: str, our_domain: str) -> str | None:
    """Whether the target's instance defederated from ours (Lemmy and PieFed publish it).

    `GET /api/v3/federated_instances` lists linked, allowed and blocked
    instances by domain; a block, or an allowlist without us, refuses all we
    send. An instance without that API tells us nothing: go on.
    """
    parts = urlsplit(actor_id)
    try:
        data = await get(
            f"{parts.scheme}://{parts.netloc}/api/v3/federated_instances", "application/json"
        )
    except TargetError:
        return None
    listing = data.get("federated_instances") if isinstance(data, dict) else None
    if not isinstance(listing, dict):
        return None

    def domains(key: str) -> set[str]:
        return {
            str(entry.get("domain", "")).lower()
            for entry in listing.get(key) or []
            if isinstance(entry, dict)
        }

    if our_domain.lower() in domains("blocked"):
        return f"{parts.hostname} blocks our instance ({our_domain})"
    allowed = domains("allowed")
    if allowed and our_domain.lower() not in allowed:
        return f"{parts.hostname} federates only with an allowlist that does not hold {our_domain}"
    return None

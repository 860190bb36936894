"""`mirror doctor`: checks an operator would make by hand, as pass/fail lines.

Each check returns (ok, what it found); nothing is changed. Remote checks
go through the same guarded client as everything else.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import sqlalchemy as sa

from mirror.config import Settings
from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.net.allowance import allowance_for

#: More than this between our clock and a server's, and signatures fail (Lemmy: 1 hour window,
#: but Mastodon refuses at 12 hours and many proxies at a few minutes).
CLOCK_TOLERANCE_S = 60


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'pass' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def local_checks(settings: Settings) -> list[Check]:
    checks = [Check("config", True, str(settings.source or "defaults (no config file)"))]
    try:
        settings.backfill.check()
    except Exception as exc:
        checks.append(Check("config values", False, str(exc)))
    if not settings.instance.base_url:
        checks.append(Check("base URL", False, "[instance].base_url is empty: run `mirror init`"))
    else:
        checks.append(Check("base URL", True, settings.instance.base_url))
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        current, head = migrate.current_revision(engine), migrate.head_revision()
        checks.append(Check("database", True, engine.url.render_as_string(hide_password=True)))
        checks.append(
            Check(
                "schema",
                current == head,
                f"at {current}"
                if current == head
                else f"at {current}, head is {head}: run `mirror db upgrade`",
            )
        )
    except Exception as exc:
        checks.append(Check("database", False, str(exc).strip().splitlines()[0]))
    finally:
        engine.dispose()
    if os.environ.get("MIRROR_MASTER_KEY"):
        checks.append(Check("master key", True, "from MIRROR_MASTER_KEY"))
    else:
        path = settings.master_key_path
        if not path.exists():
            checks.append(Check("master key", False, f"{path} does not exist: run `mirror init`"))
        else:
            mode = stat.S_IMODE(path.stat().st_mode)
            checks.append(
                Check(
                    "master key",
                    mode & 0o077 == 0,
                    f"{path} mode {mode:04o}"
                    + ("" if mode & 0o077 == 0 else ": readable by others, chmod 600 it"),
                )
            )
    return checks


async def remote_checks(settings: Settings, targets: list[str]) -> list[Check]:
    checks: list[Check] = []
    base = settings.instance.base_url
    timeout = aiohttp.ClientTimeout(total=settings.federation.fetch_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if base:
            checks.extend(await _public_url(session, settings, base))
        for target in targets:
            checks.append(await _target(session, settings, target))
    return checks


async def _public_url(session: aiohttp.ClientSession, settings: Settings, base: str) -> list[Check]:
    from mirror.net.client import FetchError, check_url
    from mirror.vocab.ids import Urls

    urls = Urls.from_base_url(base)
    username = settings.instance.username
    url = f"{urls.base}/.well-known/webfinger?resource=acct:{username}@{urls.host}"
    try:
        check_url(url, allowed=allowance_for(settings))
        async with session.get(url, allow_redirects=False) as response:
            data: Any = await response.json(content_type=None) if response.status == 200 else None
            date = response.headers.get("Date")
    except (FetchError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return [Check("public URL", False, str(exc) if url in str(exc) else f"{url}: {exc}")]
    href = next(
        (link.get("href") for link in (data or {}).get("links", []) if link.get("rel") == "self"),
        None,
    )
    found = [
        Check(
            "public URL",
            href == urls.actor(username),
            f"WebFinger answers with {href}"
            if href == urls.actor(username)
            else f"WebFinger at {url} did not name {urls.actor(username)} "
            "(is the proxy passing Host through?)",
        )
    ]
    if date:
        skew = abs((datetime.now(UTC) - parsedate_to_datetime(date)).total_seconds())
        found.append(
            Check(
                "clock",
                skew <= CLOCK_TOLERANCE_S,
                f"{skew:.0f} s from the server's Date header"
                + ("" if skew <= CLOCK_TOLERANCE_S else ": fix NTP, signatures will fail"),
            )
        )
    return found


async def _target(session: aiohttp.ClientSession, settings: Settings, target: str) -> Check:
    from mirror.net.client import FetchError, check_url

    try:
        check_url(target, allowed=allowance_for(settings))
        async with session.get(
            target, headers={"Accept": "application/activity+json"}, allow_redirects=False
        ) as response:
            ok = response.status == 200
            detail = f"{target}: HTTP {response.status}"
    except (FetchError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        ok, detail = False, str(exc) if target in str(exc) else f"{target}: {exc}"
    return Check("target community", ok, detail)


def targets_of_runs(settings: Settings) -> list[str]:
    """The targets of the runs still under way: a cancelled or finished one's may be gone."""
    from mirror.publish.runs import list_runs

    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            runs = list_runs(conn, datetime.now(UTC))
        return sorted({run["target"] for run in runs if run["state"] in ("active", "paused")})
    except Exception:
        return []
    finally:
        engine.dispose()


def run_doctor(settings: Settings) -> list[Check]:
    checks = local_checks(settings)
    checks.extend(asyncio.run(remote_checks(settings, targets_of_runs(settings))))
    return checks

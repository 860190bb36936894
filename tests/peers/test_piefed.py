"""Against a real PieFed (opt-in: `PIEFED_ROOT=... pytest -m piefed`; never in CI).

PieFed is set up by `../shared/peers/piefed/piefed.sh setup GITDIR ROOT` from
a fetched copy of its source and started here, unpatched, on
https://localhost:PORT with a fresh database. fedimirror runs as an
operator runs it (`mirror init`, `ingest`, `serve`, `backfill`, `runs`,
`retry`), trusting PieFed's certificate through SSL_CERT_FILE. What the run
reports is checked against what PieFed's own database holds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mirror.db.session import make_engine
from tests.conftest import PG_ADMIN_URL, SEEDS, SHARED
from tests.peer import free_port

pytestmark = pytest.mark.piefed

SCRIPT = SHARED / "peers" / "piefed" / "piefed.sh"
ROOT = Path(os.environ["PIEFED_ROOT"]) if os.environ.get("PIEFED_ROOT") else None


def _skip_reason() -> str | None:
    if ROOT is None:
        return "PIEFED_ROOT is not set (a PieFed set up by ../shared/peers/piefed/piefed.sh)"
    if not (ROOT / "src" / "venv" / "bin" / "flask").exists():
        return f"{ROOT} holds no set-up PieFed (run piefed.sh setup GITDIR {ROOT})"
    if not SCRIPT.exists() or not SEEDS.is_dir():
        return "../shared (piefed.sh and the seeds) is not here"
    return None


@dataclass
class PieFed:
    base: str
    port: int
    database: str
    pid: int
    engine: sa.Engine
    #: The admin's login (pfadmin), for PieFed's own API.
    jwt: str

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """PieFed's alpha API as its admin: the JSON answer, or an AssertionError saying why."""
        assert ROOT is not None
        request = urllib.request.Request(
            f"{self.base}/api/alpha{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.jwt}", "Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(ROOT / "tls" / "cert.pem"))
        try:
            with urllib.request.urlopen(request, context=context, timeout=120) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def age_account(self, actor: str) -> None:
        """A remote account two days older in PieFed's own database (its new-account limit)."""
        with self.engine.begin() as conn:
            aged = conn.execute(
                sa.text(
                    "UPDATE \"user\" SET created = created - interval '2 days' "
                    "WHERE ap_profile_id = :actor"
                ),
                {"actor": actor},
            ).rowcount
        assert aged == 1, f"PieFed knows no account {actor}"

    def log(self) -> str:
        assert ROOT is not None
        return (ROOT / f"{self.database}-server.log").read_text(errors="replace")


@pytest.fixture
def piefed() -> Iterator[PieFed]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    assert ROOT is not None
    port, database = free_port(), f"piefed_test_{uuid.uuid4().hex[:8]}"
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", str(ROOT), str(port), database],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    pid, jwt = started.stdout.split()[-2:]
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=database)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        yield PieFed(f"https://localhost:{port}", port, database, int(pid), engine, jwt)
    finally:
        engine.dispose()
        os.killpg(os.getpgid(int(pid)), signal.SIGTERM)
        time.sleep(1)
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                ),
                {"d": database},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
        admin.dispose()


class Mirror:
    """fedimirror's CLI in processes of its own, as an operator runs it.

    `serve` speaks https itself with PieFed's own localhost certificate,
    which PieFed already trusts: PieFed builds https:// URLs for the hosts
    it looks up (WebFinger, actors), whatever scheme our ids have.
    """

    def __init__(self, tmp_path: Path, port: int) -> None:
        assert ROOT is not None
        self.base = f"https://localhost:{port}"
        self.host = f"localhost:{port}"
        self.port = port
        self.env = {
            **os.environ,
            "MIRROR_CONFIG": str(tmp_path / "mirror.toml"),
            "MIRROR_DATA_DIR": str(tmp_path / "data"),
            "MIRROR_ALLOW_PRIVATE_NETWORKS": "true",
            "MIRROR_SERVER__TLS_CERT": str(ROOT / "tls" / "cert.pem"),
            "MIRROR_SERVER__TLS_KEY": str(ROOT / "tls" / "key.pem"),
            "SSL_CERT_FILE": str(ROOT / "tls" / "bundle.pem"),
        }
        self.database = tmp_path / "data" / "mirror.db"
        self.server: subprocess.Popen[bytes] | None = None
        # A file, not a pipe nobody reads: a full pipe blocks the service's logging.
        self.log = tmp_path / "serve.log"

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mirror", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def serve(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mirror", "serve", "--listen", f"127.0.0.1:{self.port}"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=60)

    def run_report(self, run: int) -> dict[str, Any]:
        (found,) = [r for r in json.loads(self.run("runs", "--json")) if r["id"] == run]
        return found

    def wait(self, run: int, *, until: str, timeout: float = 600) -> dict[str, Any]:
        """Poll `mirror runs --json` until the run is `done`, or `settled` (only waits left)."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.run_report(run)
            items = report["publications"]
            if until == "done" and report["state"] == "done":
                return report
            if (
                until == "settled"
                and items["queued"] == items["sent"] == 0
                and (report["by_state"]["pending"] + report["by_state"]["retrying"] == 0)
            ):
                return report
            if time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").splitlines()[-20:]
                raise AssertionError(f"{report}\nserve's log ends:\n" + "\n".join(tail))
            time.sleep(2)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """One statement on the mirror's database, committed; its rows."""
        engine = make_engine(f"sqlite:///{self.database}")
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), params)
                return result.all() if result.returns_rows else []
        finally:
            engine.dispose()

    def published(self) -> dict[str, dict[str, Any]]:
        """Our publications by object URL: state, kind, and the parent's object URL."""
        engine = make_engine(f"sqlite:///{self.database}")
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT p.id, p.kind, p.state, p.reason, o.json FROM publication p "
                        "JOIN ap_object o ON o.id = p.id WHERE p.target != 'followers'"
                    )
                ).all()
        finally:
            engine.dispose()
        out = {}
        for row in rows:
            document = json.loads(row.json) if isinstance(row.json, str) else row.json
            out[document["id"]] = {
                "kind": row.kind,
                "state": row.state,
                "reason": row.reason,
                "parent": document.get("inReplyTo"),
                "source": document["source"]["content"],
            }
        return out


def stored(piefed: PieFed) -> dict[str, dict[str, Any]]:
    """What PieFed holds: ap_id -> its parent's ap_id (None for a post) and rendered HTML."""
    with piefed.engine.connect() as conn:
        posts = {
            r.ap_id: {"parent": None, "html": r.body_html}
            for r in conn.execute(sa.text("SELECT ap_id, body_html FROM post WHERE NOT deleted"))
        }
        replies = conn.execute(
            sa.text(
                "SELECT r.ap_id, r.body_html, parent.ap_id AS parent, post.ap_id AS post "
                "FROM post_reply r JOIN post ON post.id = r.post_id "
                "LEFT JOIN post_reply parent ON parent.id = r.parent_id WHERE NOT r.deleted"
            )
        ).all()
    return {
        **posts,
        **{r.ap_id: {"parent": r.parent or r.post, "html": r.body_html} for r in replies},
    }


#: A backslash before punctuation that PieFed's page would show.
STRAY_ESCAPE = re.compile(r"\\[!-/:-@\[-`{-~]")


def test_a_fresh_mirror_into_piefed(tmp_path: Path, piefed: PieFed) -> None:
    mirror = Mirror(tmp_path, free_port())
    mirror.run("init", "--base-url", mirror.base)
    mirror.run("ingest", str(SEEDS))
    mirror.serve()
    try:
        out = mirror.run("backfill", "--to", f"!mirror_a@localhost:{piefed.port}", "--rate", "0")
        run = int(re.search(r"^run (\d+):", out, re.M).group(1))  # type: ignore[union-attr]

        # The first day: what the run calls confirmed is exactly what PieFed holds.
        first = mirror.wait(run, until="settled")
        ours = mirror.published()
        held = stored(piefed)
        confirmed = {url for url, p in ours.items() if p["state"] == "confirmed"}
        assert confirmed == set(held) and len(held) >= 3, first
        rest = {url: p for url, p in ours.items() if url not in confirmed}
        assert rest and all(p["state"] == "waiting" and p["reason"] for p in rest.values())

        # A day later (PieFed's account aged in its own database), everything goes.
        piefed.age_account(f"{mirror.base}/u/mirror")
        mirror.run("retry", "--unconfirmed")
        done = mirror.wait(run, until="done")
        ours = mirror.published()
        held = stored(piefed)
        assert all(p["state"] == "confirmed" for p in ours.values()), done
        assert set(held) == set(ours)
        for url, p in ours.items():
            assert held[url]["parent"] == p["parent"], url
            # No escape of ours shows: a backslash on the page is one the dump had.
            shown = STRAY_ESCAPE.findall(held[url]["html"] or "")
            assert len(shown) <= p["source"].count("\\\\"), (url, shown)

        assert '" 500 -' not in piefed.log()
        again = mirror.run("backfill", "--to", f"!mirror_a@localhost:{piefed.port}")
        assert "nothing new" in again and "no run was made" in again
    finally:
        mirror.stop()


def _root(ours: dict[str, dict[str, Any]], url: str) -> str:
    while ours[url]["parent"] is not None:
        url = ours[url]["parent"]
    return url


def _refusals(piefed: PieFed) -> list[tuple[str, str]]:
    """What PieFed logged as refused (activity_pub_log), as (type, reason).

    Not its "Create processed after Update": the Create of a post it holds
    already (taken from our outbox when it first saw the community), a duplicate.
    """
    with piefed.engine.connect() as conn:
        return [
            (r.activity_type, r.exception_message)
            for r in conn.execute(
                sa.text(
                    "SELECT activity_type, exception_message FROM activity_pub_log "
                    "WHERE direction = 'in' AND result = 'failure' "
                    "AND exception_message != 'Create processed after Update'"
                )
            )
        ]


def _wait_until(check: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(3)


def test_a_piefed_user_subscribes_to_a_hosted_community(tmp_path: Path, piefed: PieFed) -> None:
    """The issue's "done when": from a fresh install, host a seed community; a PieFed
    user subscribes through PieFed's API and PieFed ends up holding every post and
    comment of it, threads intact: the young bot's first three posts (with their
    comments) at once, the rest a day later, as PieFed's new-account limit allows."""
    mirror = Mirror(tmp_path, free_port())
    mirror.run("init", "--base-url", mirror.base)
    mirror.run("ingest", str(SEEDS))
    (source,) = mirror.sql(
        "SELECT c.name || '@' || c.instance FROM community c JOIN post p ON p.community_id = c.id "
        "GROUP BY c.id ORDER BY count(*) DESC LIMIT 1"
    )
    hosted = mirror.run("communities", "host", source[0], "--name", "archive")
    assert "archive" in hosted
    mirror.env["MIRROR_HOSTED_DEFAULTS__BACKLOG_RATE"] = "0"
    mirror.serve()
    try:
        # Published into our own Group before anyone follows: the backlog carries it all.
        out = mirror.run("backfill", "--to", f"!archive@{mirror.host}")
        run = int(re.search(r"^run (\d+):", out, re.M).group(1))  # type: ignore[union-attr]
        mirror.wait(run, until="done")
        ours = mirror.published()
        posts = sum(1 for p in ours.values() if p["kind"] == "post")
        assert posts >= 4 and len(ours) > posts, "needs more posts than a young account's 3"

        found = piefed.api("GET", f"/resolve_object?q=!archive@{mirror.host}")
        community = found["community"]["community"]  # a CommunityView
        assert community["actor_id"] == f"{mirror.base}/c/archive", community
        piefed.api("POST", "/community/follow", {"community_id": community["id"], "follow": True})

        # The first day: what is not held for tomorrow is delivered (the comments of
        # held posts are due too, but wait behind them): nothing more moves.
        delivered: list[int] = []

        def first_day_sent() -> bool:
            (row,) = mirror.sql("SELECT count(*) FROM delivery WHERE state = 'delivered'")
            delivered.append(row[0])
            return len(delivered) > 3 and len(set(delivered[-4:])) == 1 and row[0] >= 4

        _wait_until(first_day_sent)
        held = stored(piefed)
        held_posts = {u for u, p in held.items() if p["parent"] is None}
        # Whole threads: every comment of each post PieFed holds, none of the others.
        assert set(held) == {u for u in ours if _root(ours, u) in held_posts}
        # The young bot's first three posts, and what PieFed took from our outbox on
        # its first sight of the community (2 newest posts in FLASK_DEBUG, 50
        # otherwise: app/community/util.py retrieve_mods_and_backfill).
        assert 3 <= len(held_posts) < posts, len(held_posts)
        assert _refusals(piefed) == [], _refusals(piefed)
        status = json.loads(mirror.run("communities", "status", "archive", "--json"))
        (server,) = [s for c in status for s in c["servers"] if s["host"] == piefed.base[8:]]
        assert server["followers"] == 1, server
        assert server["backlog"]["pending"] > 0 and server["backlog"]["last_due_at"], server

        # A day later on both sides: PieFed's record of the bot a day older, and
        # what waited for it due now.
        piefed.age_account(f"{mirror.base}/u/mirror")
        mirror.sql(
            "UPDATE delivery SET next_attempt_at = datetime('now') WHERE state = 'pending'"
        )
        _wait_until(lambda: set(stored(piefed)) == set(ours))
        held = stored(piefed)
        missing = sorted(set(ours) - set(held))
        assert not missing, (f"{len(missing)} of {len(ours)} not in PieFed", missing[:5])
        for url, p in ours.items():
            assert held[url]["parent"] == p["parent"], url
        with piefed.engine.connect() as conn:
            joined = conn.execute(
                sa.text(
                    "SELECT m.is_banned FROM community_member m "
                    "JOIN community c ON c.id = m.community_id JOIN \"user\" u ON u.id = m.user_id "
                    "WHERE u.user_name = 'pfadmin' AND c.ap_profile_id = :group"
                ),
                {"group": f"{mirror.base}/c/archive"},
            ).all()
            in_group = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM post JOIN community c ON c.id = post.community_id "
                    "WHERE c.ap_profile_id = :group"
                ),
                {"group": f"{mirror.base}/c/archive"},
            )
        assert len(joined) == 1 and not joined[0].is_banned, joined
        assert in_group == posts
        assert _refusals(piefed) == []
        # Our lookups at PieFed (resolve_object) found every copy: a 2xx is not proof.
        def server_status() -> dict[str, Any]:
            status = json.loads(mirror.run("communities", "status", "archive", "--json"))
            (found,) = [s for c in status for s in c["servers"] if s["host"] == piefed.base[8:]]
            return found

        _wait_until(lambda: server_status()["copies"]["confirmed"] == len(ours), timeout=120)
        server = server_status()
        assert server["copies"]["confirmed"] == len(ours), server
        assert server["copies"]["unverifiable"] is None, server
        assert server["backlog"]["pending"] == server["backlog"]["failed"] == 0, server
        assert '" 500 -' not in piefed.log()
    finally:
        mirror.stop()

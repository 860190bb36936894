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
import subprocess
import sys
import time
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
    pid = int(started.stdout.split()[-2])
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=database)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        yield PieFed(f"https://localhost:{port}", port, database, pid, engine)
    finally:
        engine.dispose()
        os.killpg(os.getpgid(pid), signal.SIGTERM)
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
    """fedimirror's CLI in processes of its own, as an operator runs it."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        assert ROOT is not None
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.env = {
            **os.environ,
            "MIRROR_CONFIG": str(tmp_path / "mirror.toml"),
            "MIRROR_DATA_DIR": str(tmp_path / "data"),
            "MIRROR_ALLOW_PRIVATE_NETWORKS": "true",
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
        with piefed.engine.begin() as conn:
            aged = conn.execute(
                sa.text(
                    "UPDATE \"user\" SET created = created - interval '2 days' "
                    "WHERE ap_profile_id = :actor"
                ),
                {"actor": f"{mirror.base}/u/mirror"},
            ).rowcount
        assert aged == 1
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

        log = (ROOT / f"{piefed.database}-server.log").read_text()  # type: ignore[operator]
        assert '" 500 -' not in log
        again = mirror.run("backfill", "--to", f"!mirror_a@localhost:{piefed.port}")
        assert "nothing new" in again and "no run was made" in again
    finally:
        mirror.stop()

"""Delivery commands: `worker` (a real process), `status`, `retry`, `cancel`, `hosts`, `prune`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mirror.cli import main
from mirror.config import load_settings
from mirror.db.session import make_engine, write_transaction
from mirror.vocab.ids import Urls
from tests.helpers import publish_notes
from tests.peer import free_port

#: A receiving server in its own process: 202 to every POST.
SINK = """
import sys
from aiohttp import web
async def inbox(request):
    await request.read()
    return web.Response(status=202)
app = web.Application()
app.router.add_post("/inbox", inbox)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Path:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MIRROR_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("MIRROR_DELIVERY__POLL_INTERVAL_S", "0.05")
    monkeypatch.setenv("MIRROR_DELIVERY__BACKOFF_BASE_S", "60")
    path = tmp_path / "mirror.toml"
    assert main(["init", "--base-url", "http://127.0.0.1:8787", "--config", str(path)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("MIRROR_CONFIG", str(path))
    return path


@pytest.fixture
def sink() -> str:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    time.sleep(0.8)
    yield f"http://127.0.0.1:{port}/inbox"
    process.terminate()
    process.wait()


def publish(config: Path, inboxes: list[str], count: int) -> None:
    settings = load_settings(config)
    engine = make_engine(settings.database_url)
    urls = Urls.from_base_url(settings.instance.base_url)
    with write_transaction(engine) as conn:
        publish_notes(conn, urls, inboxes, count, datetime.now(UTC))
    engine.dispose()


def status(capsys) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert main(["status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def worker() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mirror", "worker"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_worker_delivers_and_the_commands_manage_what_is_left(capsys, config: Path, sink: str):  # type: ignore[no-untyped-def]
    down = f"http://127.0.0.1:{free_port()}/inbox"  # nothing listens: connection refused
    publish(config, [sink, down], 3)
    report = status(capsys)
    assert report["deliveries"]["by_state"]["pending"] == 6
    assert report["deliveries"]["outstanding"] == 6 and report["followers"] == 0

    first = worker()
    try:
        wait_for(lambda: status(capsys)["deliveries"]["by_state"]["delivered"] == 3)
        # One process claims on SQLite: a second worker says so and exits.
        second = worker()
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert b"already delivering from this SQLite database" in err
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err.decode()

    report = status(capsys)
    states = report["deliveries"]["by_state"]
    assert states["delivered"] == 3 and states["retrying"] == 3
    hosts = {h["host"]: h for h in report["hosts"]}
    down_host = down.split("/")[2]
    assert hosts[down_host]["outstanding"] == 3
    assert "connect" in hosts[down_host]["last_error"].lower()
    assert hosts[sink.split("/")[2]]["last_success_at"] is not None

    assert main(["cancel", "--host", down_host]) == 0
    assert "3 deliveries cancelled" in capsys.readouterr().out
    assert status(capsys)["deliveries"]["by_state"]["cancelled"] == 3
    assert main(["retry", "--failed", "--host", down_host]) == 0
    assert "3 deliveries queued again" in capsys.readouterr().out
    assert status(capsys)["deliveries"]["outstanding"] == 3
    assert main(["cancel", "--all"]) == 0
    capsys.readouterr()
    assert status(capsys)["deliveries"]["outstanding"] == 0

    assert main(["hosts", "revive", down_host]) == 0
    assert "revived" in capsys.readouterr().out
    assert main(["hosts", "revive", "nowhere.example"]) == 1
    assert "no deliveries were ever made to nowhere.example" in capsys.readouterr().err

    assert main(["prune", "--older-than", "0"]) == 0
    assert "pruned 3 delivered rows" in capsys.readouterr().out
    assert status(capsys)["deliveries"]["by_state"]["delivered"] == 0


def test_status_text_and_usage_errors(capsys, config: Path) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "deliveries: pending 0, in_flight 0, retrying 0" in out and "followers: 0" in out
    assert main(["cancel"]) == 2
    assert "cancel needs --host HOST, --activity ID or --all" in capsys.readouterr().err

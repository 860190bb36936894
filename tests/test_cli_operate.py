"""`mirror config check` and `mirror doctor`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mirror.cli import main
from tests.peer import free_port


def wait_healthy(port: int) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on port {port}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[Path, int]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    port = free_port()
    config = tmp_path / "mirror.toml"
    assert main(["init", "--base-url", f"http://127.0.0.1:{port}", "--config", str(config)]) == 0
    monkeypatch.setenv("MIRROR_CONFIG", str(config))
    capsys.readouterr()
    return tmp_path, port


def test_config_check_prints_effective_values_with_secrets_masked(
    capsys, home: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MIRROR_ADMIN_TOKEN", "very-secret-token")
    monkeypatch.setenv("MIRROR_DATABASE_URL", "postgresql://mirror:hunter2@db.example/mirror")
    monkeypatch.setenv("MIRROR_DELIVERY__CONCURRENCY", "7")
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "concurrency = 7" in out and "[backfill]" in out
    assert 'token = "********"' in out
    assert "very-secret-token" not in out and "hunter2" not in out
    assert "postgresql://mirror:***@db.example/mirror" in out


def test_config_check_refuses_a_bad_value_in_one_line(
    capsys, home: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MIRROR_BACKFILL__ATTRIBUTION", "everyone")
    assert main(["config", "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "mirror: error: [backfill].attribution must be one of bot, puppets, got 'everyone'"
    )


def test_doctor_passes_against_a_running_service_and_names_what_fails(
    capsys, home: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    tmp_path, port = home
    monkeypatch.setenv("MIRROR_ALLOW_PRIVATE_NETWORKS", "true")
    service = subprocess.Popen(
        [sys.executable, "-m", "mirror", "serve", "--listen", f"127.0.0.1:{port}"],
        env=dict(os.environ),
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(port)
        assert main(["doctor"]) == 0
        out = capsys.readouterr().out
        assert "pass  public URL: WebFinger answers with" in out
        assert "pass  clock:" in out and "pass  schema:" in out and "0 failed" in out
    finally:
        service.send_signal(signal.SIGTERM)
        service.communicate(timeout=30)

    (tmp_path / "data" / "master.key").chmod(0o644)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  master key:" in out and "chmod 600" in out
    assert "FAIL  public URL:" in out


def test_serve_with_json_logs_and_metrics_on_their_own_port(
    home: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import tomllib

    _, port = home
    metrics_port = free_port()
    env = {**os.environ, "MIRROR_METRICS__LISTEN": f"127.0.0.1:{metrics_port}"}
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mirror",
            "--log-format",
            "json",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(port)
        scrape = f"http://127.0.0.1:{metrics_port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(scrape)
        assert refused.value.code == 401  # init wrote a token: that listener needs it too
        token = tomllib.loads(Path(os.environ["MIRROR_CONFIG"]).read_text())["metrics"]["token"]
        request = urllib.request.Request(scrape, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request) as response:
            assert b"mirror_queue_depth" in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics")
        assert missing.value.code == 404
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=30)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert any(line["msg"].startswith("serving http://127.0.0.1") for line in lines)
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)


def test_serve_refuses_an_open_metrics_listener_without_a_token(home: tuple[Path, int]) -> None:
    _, port = home
    env = {
        **os.environ,
        "MIRROR_METRICS__LISTEN": f"0.0.0.0:{free_port()}",
        "MIRROR_METRICS_TOKEN": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("mirror: error")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert "is not a loopback address: set [metrics].token" in errors[0]

"""`mirror init`, `mirror serve` (a real process, stopped with SIGTERM) and `mirror followers`."""

from __future__ import annotations

import json
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


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MIRROR_ALLOW_PRIVATE_NETWORKS", "true")
    return tmp_path


def run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_writes_config_key_and_bot(capsys, home: Path) -> None:
    config = home / "conf" / "mirror.toml"
    code, out, err = run(
        capsys, "init", "--base-url", "http://127.0.0.1:8787", "--config", str(config)
    )
    assert code == 0, err
    assert 'base_url = "http://127.0.0.1:8787"' in config.read_text()
    key = home / "data" / "master.key"
    assert key.exists() and os.stat(key).st_mode & 0o777 == 0o600
    assert "permanent" in out and "https on the default port" in out and "back up" in out
    assert "created with a new RSA-2048 key" in out


def test_second_init_refuses_and_force_keeps_the_key(capsys, home: Path) -> None:
    config = str(home / "mirror.toml")
    run(capsys, "init", "--base-url", "https://mirror.example.org", "--config", config)
    code, _, err = run(
        capsys, "init", "--base-url", "https://mirror.example.org", "--config", config
    )
    assert code == 2 and "--force" in err
    from mirror.config import load_settings
    from mirror.db.session import make_engine
    from mirror.federation.actors import get_actor

    engine = make_engine(load_settings(config).database_url)
    with engine.connect() as conn:
        before = get_actor(conn, "mirror").public_key_pem  # type: ignore[union-attr]
    code, out, _ = run(
        capsys, "init", "--base-url", "https://mirror.example.org", "--config", config, "--force"
    )
    assert code == 0 and "its key was kept" in out
    with engine.connect() as conn:
        assert get_actor(conn, "mirror").public_key_pem == before  # type: ignore[union-attr]


def test_bad_base_url_is_a_usage_error(capsys, home: Path) -> None:
    code, _, err = run(
        capsys, "init", "--base-url", "ftp://x.example/path", "--config", str(home / "m.toml")
    )
    assert code == 2 and "base_url" in err


def test_commands_needing_the_actor_say_to_run_init(capsys, home: Path) -> None:
    code, _, err = run(capsys, "serve")
    assert code == 2 and "mirror init" in err
    code, _, err = run(capsys, "followers", "list")
    assert code == 2 and "mirror init" in err


def test_serve_runs_and_stops_cleanly_on_sigterm(capsys, home: Path) -> None:
    port = free_port()
    config = home / "mirror.toml"
    assert (
        run(capsys, "init", "--base-url", f"http://127.0.0.1:{port}", "--config", str(config))[0]
        == 0
    )
    env = {**os.environ, "MIRROR_CONFIG": str(config)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mirror", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/.well-known/webfinger?resource=acct:mirror@127.0.0.1:{port}"
        for _ in range(100):
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    document = json.loads(response.read())
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the service did not come up: " + process.stderr.read1().decode())
        assert document["links"][0]["href"] == f"http://127.0.0.1:{port}/u/mirror"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err.decode()
    assert b"shutting down" in err


def test_followers_list_on_a_fresh_bot(capsys, home: Path) -> None:
    config = str(home / "mirror.toml")
    run(capsys, "init", "--base-url", "https://mirror.example.org", "--config", config)
    code, out, _ = run(capsys, "--config", config, "followers", "list")
    assert code == 0 and "followers of @mirror" in out
    code, _, err = run(capsys, "--config", config, "followers", "remove", "https://x.example/u/a")
    assert code == 1 and "does not follow" in err

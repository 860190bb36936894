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
    # A loopback base URL is served directly: the config listens right there.
    assert 'listen = "127.0.0.1:8787"' in config.read_text()
    assert f"config: wrote {config} " in out and "database: sqlite:///" in out
    assert f"next: `mirror --config {config} ingest DUMPS/`" in out


def test_init_behind_a_proxy_keeps_the_default_listen_and_says_what_is_next(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    monkeypatch.chdir(home)
    code, out, err = run(capsys, "init", "--base-url", "https://mirror.example.org")
    assert code == 0, err
    config = tomllib.loads((home / "mirror.toml").read_text())
    assert config["server"]["listen"] == "127.0.0.1:8080"
    assert "listen: 127.0.0.1:8080; your TLS proxy for https://mirror.example.org" in out
    # ./mirror.toml is found from here: the next commands need no --config.
    assert "next: `mirror ingest DUMPS/` (or `--samples`), then `mirror serve`" in out


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_init_refuses_an_invalid_port_in_one_line(capsys, home: Path, port: str) -> None:
    config = home / "mirror.toml"
    base_url = f"http://127.0.0.1:{port}"
    code, _, err = run(capsys, "init", "--base-url", base_url, "--config", str(config))
    assert code == 2 and err.count("\n") == 1, err
    assert f"base_url {base_url!r}: the port must be a number from 1 to 65535" in err
    assert not config.exists()


def test_serve_refuses_an_invalid_port_in_one_line(capsys, home: Path) -> None:
    config = str(home / "mirror.toml")
    assert run(capsys, "init", "--base-url", "https://m.example", "--config", config)[0] == 0
    code, _, err = run(capsys, "--config", config, "serve", "--listen", "127.0.0.1:99999")
    assert code == 2 and err.count("\n") == 1, err
    assert "--listen: listen address '127.0.0.1:99999': port 99999 is not between" in err


def test_serve_on_a_busy_port_says_so_in_one_line(capsys, home: Path) -> None:
    import socket

    config = str(home / "mirror.toml")
    assert run(capsys, "init", "--base-url", "https://m.example", "--config", config)[0] == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "--config", config, "serve", "--listen", f"127.0.0.1:{port}")
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("mirror: error")]
    assert errors == [f"mirror: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in err and "serving" not in err


def test_a_second_serve_on_the_same_sqlite_is_refused_before_serving(capsys, home: Path) -> None:
    from mirror.config import load_settings
    from mirror.db.session import make_engine
    from mirror.delivery.worker import ClaimerLock

    config = str(home / "mirror.toml")
    assert run(capsys, "init", "--base-url", "https://m.example", "--config", config)[0] == 0
    engine = make_engine(load_settings(config).database_url)
    first = ClaimerLock(engine.url.database or "")  # what the first `serve` holds
    first.acquire()
    try:
        port = free_port()
        code, _, err = run(capsys, "--config", config, "serve", "--listen", f"127.0.0.1:{port}")
    finally:
        first.release()
        engine.dispose()
    assert code == 1, err
    assert "already delivering from this SQLite database" in err
    assert "serving" not in err and "Traceback" not in err


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
    assert code == 0 and out.startswith("nobody follows @mirror@mirror.example.org (--all")
    code, _, err = run(capsys, "--config", config, "followers", "remove", "https://x.example/u/a")
    assert code == 1 and "does not follow" in err
    code, out, _ = run(capsys, "--config", config, "followers", "list", "--all")
    assert code == 0 and out == "nobody follows or followed @mirror@mirror.example.org\n"
    # Blocked before following: not a follower, but --all lists it.
    assert run(capsys, "--config", config, "followers", "block", "https://x.example/u/a")[0] == 0
    assert "nobody follows" in run(capsys, "--config", config, "followers", "list")[1]
    code, out, _ = run(capsys, "--config", config, "followers", "list", "--all")
    assert code == 0 and "followers of @mirror" in out and "https://x.example/u/a" in out
    assert "blocked" in out


def _modes(path: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode & 0o777) for p in [path, *path.iterdir()]}


def test_init_writes_private_files_in_a_private_data_dir(capsys, home: Path) -> None:
    # Issue 19, item 11: whatever the shell's umask, nobody else reads them.
    previous = os.umask(0o022)
    try:
        config = home / "mirror.toml"
        code, out, err = run(
            capsys, "init", "--base-url", "https://mirror.example.org", "--config", str(config)
        )
        assert code == 0, err
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        data = home / "data"
        modes = _modes(data)
        assert modes.pop("data") == "0o700"
        assert {"mirror.db", "master.key"} <= set(modes)
        assert set(modes.values()) == {"0o600"}, modes
        # --force rewrites a config an editor left readable, and tightens a loose data dir.
        config.chmod(0o644)
        data.chmod(0o755)
        code, out, err = run(
            capsys,
            "init",
            "--base-url",
            "https://mirror.example.org",
            "--config",
            str(config),
            "--force",
        )
        assert code == 0, err
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        assert oct(data.stat().st_mode & 0o777) == "0o700" and "now 0700" in out
    finally:
        os.umask(previous)


def test_init_writes_a_random_metrics_token(capsys, home: Path) -> None:
    import tomllib

    tokens = []
    for name in ("a.toml", "b.toml"):
        config = home / name
        assert (
            run(capsys, "init", "--base-url", "https://m.example", "--config", str(config))[0] == 0
        )
        data = tomllib.loads(config.read_text())
        assert data["admin"]["token"] == ""  # the admin page stays off until chosen
        tokens.append(data["metrics"]["token"])
    assert all(len(t) >= 32 for t in tokens) and tokens[0] != tokens[1]


def test_init_refuses_a_database_holding_another_base_url(capsys, home: Path) -> None:
    # Issue 19, item 12: the shared default data dir already holds an instance.
    first = home / "first.toml"
    assert run(capsys, "init", "--base-url", "https://one.example", "--config", str(first))[0] == 0
    second = home / "second.toml"
    code, out, err = run(
        capsys, "init", "--base-url", "https://two.example", "--config", str(second)
    )
    database = home / "data" / "mirror.db"
    assert code == 2, out
    assert str(database) in err and "https://one.example" in err and "https://two.example" in err
    assert err.count("\n") == 1
    assert not second.exists()  # nothing written for the refused instance
    # The same base URL again is the same instance: accepted, and it says which database.
    code, out, err = run(
        capsys, "init", "--base-url", "https://one.example", "--config", str(first), "--force"
    )
    assert code == 0 and f"database: sqlite:///{database}" in out and "kept" in out


def test_serve_refuses_a_config_with_another_base_url(capsys, home: Path) -> None:
    config = home / "mirror.toml"
    assert run(capsys, "init", "--base-url", "https://one.example", "--config", str(config))[0] == 0
    env = {**os.environ, "MIRROR_CONFIG": str(config)}
    env["MIRROR_INSTANCE__BASE_URL"] = "https://two.example"
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("mirror: error")]
    assert len(errors) == 1 and errors[0].startswith("mirror: error: the database sqlite:///")
    assert "belongs to https://one.example, not to https://two.example" in errors[0]


def test_a_database_from_before_the_record_is_adopted_once(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Initialised by a version that did not record the base URL: the first command records it."""
    import sqlalchemy as sa

    from mirror.config import load_settings
    from mirror.db.session import make_engine

    config = home / "mirror.toml"
    assert run(capsys, "init", "--base-url", "https://one.example", "--config", str(config))[0] == 0
    engine = make_engine(load_settings(config).database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM instance"))
    assert run(capsys, "--config", str(config), "followers", "list")[0] == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT base_url FROM instance")).scalar() == (
            "https://one.example"
        )
    monkeypatch.setenv("MIRROR_INSTANCE__BASE_URL", "https://two.example")
    code, _, err = run(capsys, "--config", str(config), "followers", "list")
    assert code == 2 and "belongs to https://one.example" in err
    engine.dispose()

"""The backfill commands as an operator runs them: real `sandbox`, `serve` and `demo` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.cli import main
from tests.peer import free_port


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mirror", *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_http(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def stop(process: subprocess.Popen[bytes]) -> bytes:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    return err


def spawn_sandbox(port: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    """`mirror sandbox`, and the commands it prints to backfill into it."""
    process = spawn("sandbox", "--listen", f"127.0.0.1:{port}")
    assert process.stdout is not None
    commands = []
    for raw in iter(process.stdout.readline, b""):
        line = raw.decode().strip()
        if line.startswith("mirror "):
            commands.append(line)
        if line.startswith("mirror backfill"):
            return process, commands
    raise AssertionError(f"the sandbox stopped: {process.communicate()[1].decode()}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> int:  # type: ignore[no-untyped-def]
    """An initialised mirror with the samples; returns the port it is to serve on.

    No MIRROR_ALLOW_PRIVATE_NETWORKS: local targets are reached as a newcomer
    does, through the `mirror config allow-host` the sandbox prints.
    """
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MIRROR_DELIVERY__POLL_INTERVAL_S", "0.1")
    monkeypatch.setenv("MIRROR_CONFIRM__RATE", "100")
    port = free_port()
    config = tmp_path / "mirror.toml"
    assert main(["init", "--base-url", f"http://127.0.0.1:{port}", "--config", str(config)]) == 0
    monkeypatch.setenv("MIRROR_CONFIG", str(config))
    assert main(["ingest", "--samples"]) == 0
    capsys.readouterr()
    return port


@pytest.fixture
def running(home: int, capsys) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """The mirror serving, and a sandbox the mirror may reach; yields (service, sandbox).

    `serve` starts before the sandbox's `allow-host` is run: it reads the
    config again when that changes.
    """
    port, sandbox_port = home, free_port()
    service = spawn("serve", "--listen", f"127.0.0.1:{port}")
    sandbox, commands = spawn_sandbox(sandbox_port)
    try:
        assert commands == [
            f"mirror config allow-host 127.0.0.1:{sandbox_port}",
            f"mirror backfill --to sandbox@127.0.0.1:{sandbox_port} --wait",
        ]
        assert main(commands[0].split()[1:]) == 0
        assert "[federation].allow_hosts now holds" in capsys.readouterr().out
        wait_http(f"http://127.0.0.1:{sandbox_port}/")
        wait_http(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}", f"127.0.0.1:{sandbox_port}"
    finally:
        stop(service)
        stop(sandbox)


def test_backfill_wait_runs_and_retract(capsys, running: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    _, sandbox = running
    assert main(["backfill", "--to", f"!sandbox@{sandbox}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing was queued" in out and '"type": "Create"' in out
    # The samples' bare listing entry: no "(untitled)" post with nothing in it.
    assert "left out: 1 (neither title nor body)" in out

    # The command the sandbox printed, as printed.
    assert main(["backfill", "--to", f"sandbox@{sandbox}", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "plan: 11 posts, 21 comments, 6 comments of unknown posts" in out
    assert "left out: 1 (neither title nor body)" in out
    assert "pace: unpaced (the target is a sandbox; --rate paces it)" in out
    # Piped: plain progress lines, with the deliveries and the host's breaker.
    assert re.search(
        rf"^run 1: \d+/38 confirmed; .*deliveries: \d+ delivered.*; {sandbox} breaker closed",
        out,
        re.MULTILINE,
    ), out
    assert "deliveries: 32 delivered, 0 failed, 0 parked" in out
    assert "WARNING" not in out + capsys.readouterr().err

    with urllib.request.urlopen(f"http://{sandbox}/api/threads") as response:
        received = json.loads(response.read())
    assert received["refused"] == [] and len(received["threads"]) == 11
    assert "(untitled)" not in {thread["name"] for thread in received["threads"]}

    assert main(["runs", "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["state"] == "done" and run["done"] == run["total"] == 38
    assert main(["runs", "pause", "1"]) == 1
    assert capsys.readouterr().err == (
        "mirror: error: run 1 is done: only active or planning runs can be paused\n"
    )

    assert main(["backfill", "--to", f"sandbox@{sandbox}"]) == 0
    assert "nothing new: the 38 planned items were all queued before" in capsys.readouterr().out
    assert main(["runs", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [1]  # no empty run 2

    assert main(["retract", "--run", "1"]) == 0
    assert "38 objects: Deletes queued" in capsys.readouterr().out
    first = received["threads"][0]["id"]
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(
            urllib.request.Request(first, headers={"Accept": "application/activity+json"})
        )
    assert gone.value.code == 410
    assert main(["runs", "pause"]) == 2
    assert "needs a RUN number" in capsys.readouterr().err
    assert main(["runs", "pause", "99"]) == 1
    assert "there is no backfill run 99" in capsys.readouterr().err


def test_wait_without_a_worker_says_so_and_doctor_checks_only_runs_under_way(  # type: ignore[no-untyped-def]
    capsys, home: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox_port = free_port()
    sandbox, commands = spawn_sandbox(sandbox_port)
    target = f"http://127.0.0.1:{sandbox_port}/c/sandbox"
    try:
        wait_http(f"http://127.0.0.1:{sandbox_port}/")
        # Not allowed yet: the refusal names the option and the command.
        assert main(["backfill", "--to", f"sandbox@127.0.0.1:{sandbox_port}"]) == 1
        err = capsys.readouterr().err
        assert f"add 127.0.0.1:{sandbox_port} to [federation].allow_hosts" in err
        assert f"`mirror config allow-host 127.0.0.1:{sandbox_port}`" in err
        assert main(commands[0].split()[1:]) == 0
        capsys.readouterr()

        # No `serve` or `worker`: --wait says so at once, and Ctrl-C says where the run goes on.
        watch = spawn(*commands[1].split()[1:])
        assert watch.stdout is not None
        for raw in iter(watch.stdout.readline, b""):
            if b"no `mirror serve` or `mirror worker` is running" in raw:
                break
        else:
            raise AssertionError(watch.communicate()[1].decode())
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
        assert watch.returncode == 130, err.decode()
        assert (
            "stopped watching: run 1 goes on in `mirror serve`/`mirror worker` (none is "
            "running now: start one)" in out.decode()
        )

        assert main(["doctor"]) == 1  # nothing serves the public URL
        assert f"pass  target community: {target}: HTTP 200" in capsys.readouterr().out
        monkeypatch.setenv("MIRROR_FEDERATION__ALLOW_HOSTS", "")
        assert main(["doctor"]) == 1
        out = capsys.readouterr().out
        assert f"FAIL  target community: {target}: 127.0.0.1 is not a public address" in out
        assert f"add 127.0.0.1:{sandbox_port} to [federation].allow_hosts" in out
        assert main(["runs", "cancel", "1"]) == 0
        assert main(["doctor"]) == 1
        assert "target community" not in capsys.readouterr().out  # a cancelled run's is not
    finally:
        stop(sandbox)


def test_backfill_to_something_that_is_not_a_community(capsys, running: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    base, _ = running
    assert main(["config", "allow-host", base.removeprefix("http://")]) == 0
    assert main(["backfill", "--to", f"{base}/u/mirror"]) == 1
    assert "is a Service, not a community" in capsys.readouterr().err


def test_demo_runs_the_main_job_and_exits(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "demo", "--exit"],
        capture_output=True,
        timeout=120,
        env={**os.environ, "MIRROR_DATA_DIR": str(tmp_path / "unused")},
    )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "delivered 32, failed 0; the sandbox holds 11 posts and 21 comments, refused 0" in out
    assert "the community, as received:" in out


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process = spawn("demo")
    lines = []
    assert process.stdout is not None
    for raw in iter(process.stdout.readline, b""):
        lines.append(raw.decode())
        if "Press Ctrl-C" in lines[-1]:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


def test_reingesting_a_changed_item_sends_an_update(  # type: ignore[no-untyped-def]
    capsys, running: tuple[str, str], tmp_path: Path
) -> None:
    from mirror.ingest.files import sample_files

    _, sandbox = running
    assert main(["backfill", "--to", f"sandbox@{sandbox}", "--wait"]) == 0
    capsys.readouterr()
    assert main(["ingest", "--samples"]) == 0  # the same dumps: nothing changed
    assert "get an Update" not in capsys.readouterr().out

    thread = next(p for p in sample_files() if p.name.startswith("thread_full"))
    changed = tmp_path / thread.name
    header = "[–] ana_spokes@bikes.example 9 points 1 day ago"
    assert header in thread.read_text()
    # The page now shows that comment as edited: the mirrored copy must say so too.
    changed.write_text(thread.read_text().replace(header, header + "* (last edited 3 hours ago)"))
    assert main(["ingest", str(changed), "--captured-at", "2026-12-01T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "get an Update" in out
    run = int(out.split("run ", 1)[1].split(":", 1)[0])
    for _ in range(100):
        with urllib.request.urlopen(f"http://{sandbox}/api/threads") as response:
            threads = json.loads(response.read())["threads"]
        comments = [c for t in threads for c in t["comments"]]
        if any(c["updated"] and "(edited)" in (c["content"] or "") for c in comments):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the Update did not arrive")
    for _ in range(100):  # the sandbox has it; the outcome is recorded a moment later
        assert main(["runs", "--json"]) == 0
        report = {r["id"]: r for r in json.loads(capsys.readouterr().out)}[run]
        if report["state"] == "done":
            break
        time.sleep(0.1)
    assert report["state"] == "done" and report["by_state"]["delivered"] >= 1, report
    # The Update is confirmed like the Create was: the run knows the target's software.
    assert report["publications"]["confirmed"] >= 1, report
    assert report["publications"]["unverifiable"] == 0, report

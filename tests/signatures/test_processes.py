"""The signing pool: real child processes, checked with httpsig; no child outlives its worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from httpsig.verify import HeaderVerifier

from mirror.signatures import generate_private_key, private_key_to_pem, public_key_pem, sign_request
from mirror.signatures.processes import SigningError, SigningPool

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEYS = [generate_private_key(), generate_private_key()]
PEMS = [private_key_to_pem(key).encode() for key in KEYS]
CONTENT_TYPE = "application/activity+json"


def _verifies(headers: dict[str, str], key: int, path: str) -> bool:
    return bool(
        HeaderVerifier(
            headers=headers,
            secret=public_key_pem(KEYS[key]).encode(),
            required_headers=["(request-target)", "host", "date", "digest", "content-type"],
            method="POST",
            path=path,
            host="lemmy.example",
            sign_header="Signature",
        ).verify()
    )


async def test_a_batch_is_signed_in_order_each_with_its_key() -> None:
    pool = SigningPool(2)
    keys = [
        ("https://bot.example/u/a#main-key", PEMS[0]),
        ("https://bot.example/u/b#main-key", PEMS[1]),
    ]
    posts = [(n % 2, f"https://lemmy.example/inbox/{n}", b'{"n": %d}' % n) for n in range(6)]
    try:
        headers = await pool.sign_posts(keys, posts, now=NOW, content_type=CONTENT_TYPE)
    finally:
        await pool.close()
    assert len(headers) == 6
    for n, h in enumerate(headers):
        assert f'keyId="{keys[n % 2][0]}"' in h["Signature"]
        assert _verifies(h, n % 2, f"/inbox/{n}")
        assert not _verifies(h, 1 - n % 2, f"/inbox/{n}")
    # The same headers the in-process signer makes (RSASSA-PKCS1-v1_5 is deterministic).
    assert headers[0] == sign_request(
        "POST",
        posts[0][1],
        key_id=keys[0][0],
        private_key=KEYS[0],
        now=NOW,
        body=posts[0][2],
        content_type=CONTENT_TYPE,
    )


async def test_a_bad_key_fails_its_batch_and_the_child_goes_on() -> None:
    pool = SigningPool(1)
    try:
        with pytest.raises(SigningError, match="signing failed: InvalidKey: not a PEM private key"):
            await pool.sign_posts(
                [("k", b"not a key")],
                [(0, "https://lemmy.example/inbox", b"{}")],
                now=NOW,
                content_type=CONTENT_TYPE,
            )
        (pid,) = _children()
        good = await pool.sign_posts(
            [("k", PEMS[0])],
            [(0, "https://lemmy.example/inbox", b"{}")],
            now=NOW,
            content_type=CONTENT_TYPE,
        )
        assert _verifies(good[0], 0, "/inbox")
        assert _children() == [pid]
    finally:
        await pool.close()
    assert _children() == []


async def test_a_killed_child_fails_one_batch_and_is_replaced() -> None:
    pool = SigningPool(1)
    batch = ([("k", PEMS[0])], [(0, "https://lemmy.example/inbox", b"{}")])
    try:
        await pool.sign_posts(*batch, now=NOW, content_type=CONTENT_TYPE)
        (pid,) = _children()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(SigningError, match="died"):
            await pool.sign_posts(*batch, now=NOW, content_type=CONTENT_TYPE)
        headers = await pool.sign_posts(*batch, now=NOW, content_type=CONTENT_TYPE)
        assert _verifies(headers[0], 0, "/inbox")
        (replacement,) = _children()
        assert replacement != pid
    finally:
        await pool.close()


def test_children_exit_when_their_worker_is_killed(tmp_path: Path) -> None:
    # The worker's end of each child's stdin closes with it, even on SIGKILL.
    script = tmp_path / "worker.py"
    script.write_text(
        "import asyncio, os, signal, sys\n"
        "from datetime import UTC, datetime\n"
        "from mirror.signatures import generate_private_key, private_key_to_pem\n"
        "from mirror.signatures.processes import SigningPool\n"
        "async def main():\n"
        "    pool = SigningPool(2)\n"
        "    pem = private_key_to_pem(generate_private_key()).encode()\n"
        "    post = (0, 'https://lemmy.example/inbox', b'{}')\n"
        "    now = datetime.now(UTC)\n"
        "    await asyncio.gather(*(pool.sign_posts([('k', pem)], [post], now=now,\n"
        "                           content_type='application/activity+json') for _ in range(2)))\n"
        "    print('signed', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    worker = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdin is not None and worker.stdout is not None
    assert worker.stdout.readline() == "signed\n"
    children = _children(worker.pid)
    assert len(children) == 2
    worker.stdin.write("die\n")
    worker.stdin.close()
    assert worker.wait(timeout=10) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def _children(parent: int | None = None) -> list[int]:
    """Signing processes whose parent is ``parent`` (this process by default)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ours = int(fields[1]) == parent and b"mirror.signatures.processes" in command
        if ours and fields[0] != "Z":
            found.append(int(proc.name))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


async def test_a_batch_cancelled_midway_leaves_no_answer_for_the_next() -> None:
    pool = SigningPool(1)
    keys = [("k", PEMS[0])]
    many = [(0, f"https://lemmy.example/inbox/{n}", b"{}") for n in range(400)]
    try:
        await pool.sign_posts(keys, many[:1], now=NOW, content_type=CONTENT_TYPE)
        (first,) = _children()
        slow = asyncio.ensure_future(
            pool.sign_posts(keys, many, now=NOW, content_type=CONTENT_TYPE)
        )
        await asyncio.sleep(0.05)  # the batch is with the child
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        one = [(0, "https://lemmy.example/inbox/one", b"{}")]
        (headers,) = await pool.sign_posts(keys, one, now=NOW, content_type=CONTENT_TYPE)
        assert _verifies(headers, 0, "/inbox/one")
        assert first not in _children()
    finally:
        await pool.close()


async def test_children_get_no_mirror_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The master key may be in the worker's environment; a child needs none of it.
    monkeypatch.setenv("MIRROR_MASTER_KEY", "secret")
    pool = SigningPool(1)
    try:
        await pool.sign_posts(
            [("k", PEMS[0])],
            [(0, "https://lemmy.example/inbox", b"{}")],
            now=NOW,
            content_type=CONTENT_TYPE,
        )
        (pid,) = _children()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith(b"MIRROR_")]
        assert any(v.startswith(b"PATH=") for v in environ)
    finally:
        await pool.close()

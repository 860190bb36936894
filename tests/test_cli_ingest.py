"""What `mirror ingest` tells its operator: totals, what it skipped and why, guessed times, Ctrl-C.

In-process on a real SQLite file, except the progress bar, which needs a
terminal: that test runs the command on a pseudo-terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mirror.cli import main
from mirror.ingest.files import sample_files
from tests.ingest.test_files import THREAD

ROOT = Path(__file__).resolve().parents[1]
#: 2025-07-28T12:00:00Z, as a file time.
MTIME = 1_753_704_000


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    # A config file, empty: without one every command says it runs on defaults.
    (tmp_path / "mirror.toml").write_text("")
    monkeypatch.setenv("MIRROR_CONFIG", str(tmp_path / "mirror.toml"))
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _sample(name: str) -> bytes:
    return next(p for p in sample_files() if p.name == name).read_bytes()


def _stored(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / "mirror.db")) as db:
        return int(db.execute("SELECT count(*) FROM dump_file").fetchone()[0])


def test_one_summary_line_with_totals_and_no_table(capsys, data_dir: Path) -> None:
    code, out, err = run(capsys, "ingest", "--samples", "--captured-at", "2025-07-28T12:00:00Z")
    assert code == 0, err
    assert re.fullmatch(
        r"ingested 6 files \(9\.8 kB in \d+\.\d s\): 2 thread, 1 bare, 1 flat, 1 listing, "
        r"1 profile; 13 new posts, 29 new comments, 3 copies merged into items already stored\n",
        out,
    ), out
    assert err == ""


def test_a_folder_scan_decides_by_content_and_says_what_it_skipped(
    capsys, data_dir: Path, tmp_path: Path
) -> None:
    dumps = tmp_path / "saved"
    dumps.mkdir()
    # A text dump saved under a web page's name, and one without a suffix: both go in.
    (dumps / "thread.html").write_bytes(_sample("thread_full_bikes.txt"))
    (dumps / "listing").write_bytes(_sample("listing_bikes.txt"))
    (dumps / "page.htm").write_text("<html>\n<head>\n<title>x</title>\n</head>\n</html>")
    (dumps / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (dumps / "notes.json").write_text('{"a": 1}')
    code, out, err = run(capsys, "ingest", str(dumps), "--captured-at", "2025-07-28T12:00:00Z")
    assert code == 0, err  # skipping is not failing
    first, second = out.splitlines()
    assert first.startswith("ingested 2 of 5 files (") and ": 1 listing, 1 thread;" in first
    assert second == (
        "not ingested: 3 skipped: binary file (1), name ends in .json (1), "
        "not a page dump: the file is HTML or XML markup, not page text (1)"
    )
    assert err.splitlines() == [
        f"mirror: skipped {dumps / 'notes.json'}: name ends in .json",
        f"mirror: skipped {dumps / 'page.htm'}: "
        "not a page dump: the file is HTML or XML markup, not page text",
        f"mirror: skipped {dumps / 'photo.txt'}: binary file (NUL byte at offset 8)",
    ]


def test_many_skipped_files_are_counted_by_reason_and_listed_with_v(
    capsys, data_dir: Path, tmp_path: Path
) -> None:
    dumps = tmp_path / "mixed"
    dumps.mkdir()
    (dumps / "bare.txt").write_bytes(_sample("bare_comments.txt"))
    for n in range(3):
        (dumps / f"img{n}.png").write_bytes(b"\x89PNG")
        (dumps / f"blob{n}.dump").write_bytes(b"\x00" * (n + 1))
    code, out, err = run(capsys, "ingest", str(dumps))
    assert code == 0
    assert out.splitlines()[1] == (
        "not ingested: 6 skipped: binary file (3), name ends in .png (3) "
        "(`mirror ingest -v` lists every file)"
    )
    assert "mirror: skipped" not in err  # six are counted, not named
    code, out, _ = run(capsys, "ingest", "-v", str(dumps))
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    assert rows[0] == ["file", "kind", "posts", "comments", "merged", "outcome"]
    outcomes = {Path(row[0]).name: row[5] for row in rows[1:]}
    assert outcomes["bare.txt"] == "stored"
    assert outcomes["blob0.dump"] == "skipped: binary file (NUL byte at offset 0)"
    assert outcomes["img2.png"] == "skipped: name ends in .png"
    assert len(outcomes) == 7


def test_a_named_file_that_is_no_dump_is_refused(capsys, data_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html>\n<body>\n<p>hi</p>\n</body>\n</html>")
    code, out, err = run(capsys, "ingest", str(page))
    assert code == 1
    assert f"mirror: refused {page}: not a page dump: the file is HTML" in err
    assert out.splitlines()[1] == "not ingested: 1 file refused (named above)"


def test_verbose_paths_are_never_cut_outside_a_terminal(
    capsys, data_dir: Path, tmp_path: Path
) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-a-long-file-name-for-a-dump.txt"
    deep.parent.mkdir(parents=True)
    deep.write_bytes(_sample("thread_single_gardening.txt"))
    code, out, _ = run(capsys, "ingest", "--verbose", str(deep))
    assert code == 0
    assert f"{deep}\tthread\t1\t4\t0\tstored" in out.splitlines()
    assert "\u2026" not in out and "..." not in out


def test_relative_times_counted_from_a_file_time_are_warned_about(
    capsys, data_dir: Path, tmp_path: Path
) -> None:
    copied = tmp_path / "copied"
    copied.mkdir()
    thread = copied / "thread.txt"
    thread.write_bytes(_sample("thread_single_gardening.txt"))
    bare = copied / "bare.txt"  # shows no time at all: nothing to warn about
    bare.write_bytes(_sample("bare_comments.txt"))
    for path in (thread, bare):
        os.utime(path, (MTIME, MTIME))
    _, _, err = run(capsys, "ingest", str(copied))
    assert err.splitlines() == [
        f'mirror: warning: {thread}: relative times ("4 hours ago") were counted back from '
        "the file's modification time, 2025-07-28T12:00:00Z; if the pages were saved at "
        "another time, give it with --captured-at ISO8601"
    ]
    _, _, err = run(capsys, "ingest", str(copied), "--captured-at", "2025-07-28T12:00:00Z")
    assert err == ""


def test_many_files_with_guessed_times_get_one_warning(
    capsys, data_dir: Path, tmp_path: Path
) -> None:
    copied = tmp_path / "copied"
    copied.mkdir()
    for n in range(5):
        path = copied / f"{n}.txt"
        path.write_text(THREAD.replace("ana@", f"ana{n}@").replace("POISON: ", ""))
        os.utime(path, (MTIME + 60 * n, MTIME + 60 * n))
    _, _, err = run(capsys, "ingest", str(copied))
    assert err.splitlines() == [
        'mirror: warning: relative times ("4 hours ago") in 5 files were counted back from '
        "the files' modification times (2025-07-28T12:00:00Z to 2025-07-28T12:04:00Z); "
        "if the pages were saved at another time, give it with --captured-at ISO8601"
    ]


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_after_whole_batches_and_says_what_was_stored(
    capsys, data_dir: Path, tmp_path: Path, presses: int
) -> None:
    # 45 named files are two batches (32 + 13); the 37th and the 41st are
    # pipes, read when their writer has opened them. Ctrl-C comes while the
    # ingest reads the first pipe, so during the second batch: the first
    # batch is stored and the second is not, whether the ingest stops after
    # the batch or, pressed again once it reads the second pipe (the first
    # press handled by then), at once.
    files = []
    for n in range(45):
        path = tmp_path / f"{n:02d}.txt"
        if n in (36, 40):
            os.mkfifo(path)
        else:
            path.write_text(f"Comment number {n} says the tomatoes need more sun than shade.")
        files.append(path)

    def interrupt_then_write() -> None:
        for n, pipe_path in enumerate((files[36], files[40])):
            with contextlib.suppress(BrokenPipeError), open(pipe_path, "wb") as pipe:
                if n < presses:  # open returned: the ingest is reading this pipe
                    os.kill(os.getpid(), signal.SIGINT)
                pipe.write(b"A comment that came through a pipe, late but whole.")

    writer = threading.Thread(target=interrupt_then_write, daemon=True)
    writer.start()
    code, out, err = run(capsys, "ingest", *map(str, files))
    writer.join(timeout=30)
    assert code == 130
    assert out.startswith("ingested 32 of 45 files (")
    assert err.splitlines()[-1] == (
        "mirror: stopped by Ctrl-C after whole batches; the other 13 files were not stored: "
        "run the same command again to ingest them (what is stored already changes nothing)"
        if presses == 1
        else "mirror: stopped at once by a second Ctrl-C; 32 files had been stored, and the "
        "batch being stored went in whole or not at all: run the same command again to "
        "ingest the rest (what is stored already changes nothing)"
    )
    assert _stored(data_dir) == 32
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_terminal_shows_a_progress_bar_then_the_summary(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**os.environ, "MIRROR_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm"}
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mirror", "ingest", "--samples", "--captured-at"]
    child = subprocess.Popen(
        [*command, "2025-07-28T12:00:00Z"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=ROOT,
    )
    os.close(follower)
    output, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not chunk:
                break
            output += chunk
        assert child.wait(timeout=30) == 0, output
    finally:
        os.close(leader)
        if child.poll() is None:
            child.kill()
    text = _ANSI.sub("", output.decode())
    assert re.search(r"ingest\s+\S+\s+0/6 files, 0 bytes/9\.8 kB, 0 items", text), text
    assert "6/6 files, 9.8 kB/9.8 kB, 45 items" in text
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
    assert any(line.startswith("ingested 6 files (9.8 kB in ") for line in lines), text

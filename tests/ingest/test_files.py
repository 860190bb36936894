"""Files: one transaction each, refusals with a reason, nothing half-written."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db.session import write_transaction
from mirror.ingest.files import find_dump_files, ingest_file, ingest_paths
from mirror.ingest.observe import MAX_DUMP_BYTES
from mirror.ingest.scan import scan
from tests.conftest import CAPTURED, shipped

THREAD = """\
this post was submitted on 3 Mar 2024
5 points (100% liked)

Tea

10 readers
1 users here now

About tea.

founded 2 years ago
MODERATORS
\u00a0

Green or black, and why does it matter so much to everyone here?

[–] ana@tea.example 4 points 1 day ago

Green, with a little honey when the afternoon gets long.

[–] bo@tea.example 2 points 1 day ago

POISON: black, no sugar, strong enough to stand a spoon in it.\
"""


def poison(engine: Engine) -> None:
    """A real database refusal: SQLite refuses any comment whose body says POISON."""
    with write_transaction(engine) as conn:
        conn.execute(
            sa.text(
                "CREATE TRIGGER poison BEFORE INSERT ON comment WHEN NEW.body LIKE '%POISON%' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            )
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")))


def test_a_file_that_fails_while_storing_leaves_nothing(
    engine: Engine, clock, tmp_path: Path
) -> None:
    # A real database refusal halfway through the file: the post and the
    # first comment are written before the second comment is refused.
    poison(engine)
    bad = tmp_path / "tea.txt"
    bad.write_text(THREAD)
    collector = gc.get_threshold()
    good = [shipped("listing_bikes.txt"), shipped("thread_full_bikes.txt")]
    reports = ingest_paths(engine, [good[0], bad, good[1]], clock=clock, captured_at=CAPTURED)
    assert gc.get_threshold() == collector  # ingest tunes it while storing, then puts it back
    assert [r.ok for r in reports] == [True, False, True]
    assert "poisoned row" in reports[1].error
    assert "\n" not in reports[1].error
    with engine.connect() as conn:
        assert (
            conn.scalar(sa.text("SELECT count(*) FROM post WHERE body LIKE 'Green or black%'")) == 0
        )
        assert (
            conn.scalar(sa.text("SELECT count(*) FROM comment WHERE body LIKE 'Green, with%'")) == 0
        )
        assert conn.scalar(sa.text("SELECT count(*) FROM dump_file WHERE name = 'tea.txt'")) == 0
    assert _count(engine, "post") == 11  # 10 listing posts + the thread's post


def test_refused_files_are_named_with_the_reason(engine: Engine, clock, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("Un caf\u00e9 tr\u00e8s bon, vraiment.".encode("latin-1"))
    (tmp_path / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "data.txt").write_text('{"items": [1, 2, 3]}')
    reports = {r.path.name: r for r in ingest_paths(engine, [tmp_path], clock=clock)}
    assert reports["empty.txt"].error == "empty file"
    assert reports["latin1.txt"].error == "not UTF-8: invalid byte 0xe9 at offset 6"
    assert reports["blob.txt"].error == "binary file (NUL byte at offset 8)"
    assert reports["data.txt"].error == "not a page dump: the file is JSON"
    assert _count(engine, "dump_file") == 0


def test_unreadable_and_missing_files(engine: Engine, clock, tmp_path: Path) -> None:
    missing = ingest_file(engine, tmp_path / "nope.txt", clock=clock)
    assert missing.error == "no such file"
    folder = tmp_path / "dir"
    folder.mkdir()
    assert ingest_file(engine, folder, clock=clock).error == "is a directory"
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as file:
        file.truncate(MAX_DUMP_BYTES + 1)  # sparse: no disk used
    assert ingest_file(engine, huge, clock=clock).error == (
        f"too large for a page dump ({MAX_DUMP_BYTES + 1} bytes > {MAX_DUMP_BYTES})"
    )
    broken = tmp_path / "broken.txt"
    broken.symlink_to(tmp_path / "gone.txt")
    assert ingest_file(engine, broken, clock=clock).error == "no such file"


@contextlib.contextmanager
def _pipe(data: bytes) -> Iterator[Path]:
    """A pipe's read end as a path (what `<(command)` gives), fed by a thread."""
    read_end, write_end = os.pipe()

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), open(write_end, "wb") as out:
            out.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        yield Path(f"/dev/fd/{read_end}")
    finally:
        os.close(read_end)  # the last reader gone, a writer still writing gets EPIPE
        writer.join()


def test_a_pipe_is_read_to_its_end_within_the_size_limit(engine: Engine, clock) -> None:
    with _pipe(shipped("thread_full_bikes.txt").read_bytes()) as path:
        report = ingest_file(engine, path, clock=clock)
    assert report.ok and report.kind == "thread" and report.comments > 0
    with _pipe(b"word " * (MAX_DUMP_BYTES // 4)) as path:
        report = ingest_file(engine, path, clock=clock)
    assert report.error == f"too large for a page dump (over {MAX_DUMP_BYTES} bytes)"


def test_folders_are_searched_recursively_for_text_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "one.txt").write_text("x")
    (tmp_path / "a" / "two").write_text("x")
    (tmp_path / "a" / "page.HTML").write_text("xy")
    (tmp_path / "a" / "saved.htm").write_text("x")
    (tmp_path / "a" / "image.png").write_bytes(b"x")
    (tmp_path / "a" / "notes.json").write_bytes(b"{}")
    os.mkfifo(tmp_path / "a" / "pipe.txt")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "three.txt").write_text("x")
    found = scan([tmp_path])
    names = [p.relative_to(tmp_path).as_posix() for p in found.files]
    assert names == ["a/b/one.txt", "a/page.HTML", "a/saved.htm", "a/two"]
    assert [p.relative_to(tmp_path).as_posix() for p in find_dump_files([tmp_path])] == names
    assert [(p.name, why) for p, why in found.skipped] == [
        ("image.png", "name ends in .png"),
        ("notes.json", "name ends in .json"),
    ]
    assert found.total_bytes == 5 and not found.named


def test_named_files_are_taken_whatever_their_names(tmp_path: Path) -> None:
    picture = tmp_path / "image.png"
    picture.write_bytes(b"abc")
    found = scan([picture, tmp_path / "missing.json"])
    assert found.files == [picture, tmp_path / "missing.json"]
    assert found.named == set(found.files) and found.skipped == []
    assert found.sizes == {picture: 3, tmp_path / "missing.json": 0}


def test_only_relative_times_counted_from_a_file_time_are_marked(
    engine: Engine, clock, tmp_path: Path
) -> None:
    thread = tmp_path / "thread.txt"  # "1 day ago" and the like
    thread.write_text(THREAD.replace("POISON: ", ""))
    dated = tmp_path / "dated.txt"  # no time at all
    dated.write_text("Green, with a little honey when the afternoon gets long, always.")
    os.utime(thread, (1_753_704_000, 1_753_704_000))
    reports = ingest_paths(engine, [thread, dated], clock=clock)
    assert [r.counted_from_mtime for r in reports] == [CAPTURED, None]
    reports = ingest_paths(engine, [thread, dated], clock=clock, captured_at=CAPTURED)
    assert [r.counted_from_mtime for r in reports] == [None, None]


def test_captured_at_defaults_to_the_file_time(engine: Engine, clock, tmp_path: Path) -> None:
    copy = tmp_path / "thread.txt"
    copy.write_bytes(shipped("thread_single_gardening.txt").read_bytes())
    os.utime(copy, (1_753_704_000, 1_753_704_000))  # 2025-07-28T12:00:00Z
    assert ingest_file(engine, copy, clock=clock).ok
    with engine.connect() as conn:
        published = conn.execute(
            sa.text("SELECT published_raw, published_at FROM comment WHERE body LIKE 'Please do%'")
        ).one()
        assert published[0] == "20 hours ago"
        assert str(published[1]).startswith("2025-07-27 16:00:00")
        captured = conn.scalar(sa.text("SELECT captured_at FROM dump_file"))
    assert str(captured).startswith("2025-07-28 12:00:00")


def test_files_are_cut_into_batches_smaller_at_either_end() -> None:
    from mirror.ingest.files import _batches

    paths = [Path(f"{n:04d}.txt") for n in range(1000)]
    batches = _batches(paths, 128)
    # Half a batch first, quarter batches for the last two to three batches' files.
    assert [len(b) for b in batches] == [64, *[128] * 5, *[32] * 9, 8]
    assert [p for b in batches for p in b] == paths
    assert [len(b) for b in _batches(paths[:100], 128)] == [32, 32, 32, 4]
    assert [len(b) for b in _batches(paths[:10], 128)] == [10]
    assert [len(b) for b in _batches(paths[:3], 1)] == [1, 1, 1]
    assert _batches([], 128) == []

"""Ingest in two processes taking turns: same database as one process, a lost partner, a bug."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.ingest.batch import FileReport
from mirror.ingest.files import ingest_file, ingest_paths
from mirror.ingest.turns import Partner, can_fork, can_share, ingest_in_turns
from mirror.inspection import build_document
from tests.conftest import CAPTURED
from tests.ingest.test_files import THREAD, poison

#: One entry per fork this test process makes.
FORKS: list[int] = []
os.register_at_fork(after_in_parent=lambda: FORKS.append(1))

TABLES = ("community", "author", "post", "comment", "alias", "observation", "fragment", "dump_file")


def _dumps(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for n in range(count):
        path = folder / f"{n:03d}.txt"
        if n % 9 == 4:
            path.write_bytes(b"\xff\xfe not text")  # refused: not UTF-8
        else:
            # Authors repeat across files, so later batches merge into earlier ones.
            text = THREAD.replace("ana@", f"ana{n % 7}@").replace("bo@", f"bo{n}@")
            path.write_text(text.replace("POISON: ", "" if n % 2 else "POISON: "))
        paths.append(path)
    return paths


def _in_turns(engine: Engine, partner: Partner, paths: list[Path], clock, size: int):
    batches = [paths[i : i + size] for i in range(0, len(paths), size)]
    with partner:
        return ingest_in_turns(
            engine, partner, batches, kind=None, captured_at=CAPTURED, clock=clock
        )


def _one_at_a_time(engine: Engine, paths: list[Path], clock) -> list[FileReport]:
    return [ingest_file(engine, path, clock=clock, captured_at=CAPTURED) for path in paths]


def _tables(engine: Engine) -> dict[str, list]:
    with engine.connect() as conn:
        return {
            # Observation ids count insertions: the same rows, numbered in another order.
            t: sorted(
                (tuple(r[1:]) if t == "observation" else tuple(r))
                for r in conn.execute(sa.text(f"SELECT * FROM {t}"))
            )
            for t in TABLES
        }


def _engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate.upgrade(engine)
    return engine


def _seen(reports: list[FileReport]) -> list[tuple]:
    """Per file: kind, items seen (new or merged), refusal."""
    return [(r.path.name, r.kind, r.posts + r.comments + r.merged, r.error) for r in reports]


def test_turns_end_the_database_as_one_process_one_file_at_a_time_would(
    clock, tmp_path: Path
) -> None:
    paths = _dumps(tmp_path / "dumps", 70)
    turns = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    partner = Partner(turns, None, CAPTURED)
    reports = _in_turns(turns, partner, paths, clock, size=4)
    assert partner.stored >= 5, "the partner stored every other batch"
    single = _engine(f"sqlite:///{tmp_path / 'single.db'}")
    expected = _one_at_a_time(single, paths, clock)
    assert [r.path for r in reports] == paths
    assert reports == expected
    assert "not UTF-8" in (reports[4].error or "")
    assert _tables(turns) == _tables(single)
    assert partner.exited()  # gone once the ingest is over


def test_a_partner_killed_midway_leaves_the_rest_to_this_process(
    clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _dumps(tmp_path / "dumps", 80)
    turns = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    partner = Partner(turns, None, CAPTURED)

    def kill_after_its_first_batch() -> None:
        deadline = time.monotonic() + 60
        while partner.stored < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(partner.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_its_first_batch)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="mirror.ingest.turns"):
        reports = _in_turns(turns, partner, paths, clock, size=2)
    killer.join()
    assert any("partner process stopped answering" in m for m in caplog.messages)
    assert 1 <= partner.stored < 20
    single = _engine(f"sqlite:///{tmp_path / 'single.db'}")
    expected = _one_at_a_time(single, paths, clock)
    # A batch it committed just before dying was stored again here: its
    # items then count as merged, not new, and the database is the same.
    assert _seen(reports) == _seen(expected)
    assert _tables(turns) == _tables(single)


def test_a_partner_dead_from_the_start_leaves_everything_to_this_process(
    clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _dumps(tmp_path / "dumps", 12)
    turns = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    partner = Partner(turns, None, CAPTURED)
    os.kill(partner.pid, signal.SIGKILL)
    while not partner.exited():
        time.sleep(0.001)
    with caplog.at_level(logging.WARNING, logger="mirror.ingest.turns"):
        reports = _in_turns(turns, partner, paths, clock, size=2)
    assert partner.stored == 0
    assert any("stopped answering" in m for m in caplog.messages)
    single = _engine(f"sqlite:///{tmp_path / 'single.db'}")
    assert reports == _one_at_a_time(single, paths, clock)


def test_a_batch_the_partner_fails_on_raises_here_as_without_a_partner(
    clock, tmp_path: Path
) -> None:
    paths = _dumps(tmp_path / "dumps", 6)
    engine = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    # Not a page kind: the parser raises KeyError (a bug, not a refusal).
    bogus = "no such kind"
    partner = Partner(engine, bogus, CAPTURED)  # type: ignore[arg-type]
    batches = [paths[:2], paths[2:4], paths[4:]]
    with pytest.raises(KeyError), partner:
        ingest_in_turns(
            engine,
            partner,
            batches,
            kind=bogus,
            captured_at=CAPTURED,
            clock=clock,  # type: ignore[arg-type]
        )
    assert partner.exited()
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM dump_file")) == 0


def test_what_the_partner_logs_is_logged_here_once_and_marked(
    clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _dumps(tmp_path / "dumps", 8)
    engine = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    poison(engine)  # a real database refusal of the even-numbered files
    partner = Partner(engine, None, CAPTURED)
    with caplog.at_level(logging.WARNING, logger="mirror"):
        reports = _in_turns(engine, partner, paths, clock, size=2)
    assert partner.stored == 2
    failed = [r.path.name for r in reports if r.error and "poisoned row" in r.error]
    assert failed == ["000.txt", "002.txt", "006.txt"]  # 004.txt is not UTF-8
    # Batches 2 and 4 were the partner's: one of its files failed in each.
    theirs = [m for m in caplog.messages if m.endswith("(in the ingest partner process)")]
    assert sorted(m.splitlines()[0] for m in theirs) == [
        "a batch of 2 dumps failed; storing them one at a time (in the ingest partner process)",
        "a batch of 2 dumps failed; storing them one at a time (in the ingest partner process)",
        f"storing {paths[2]} failed",
        f"storing {paths[6]} failed",
    ]
    assert all("poisoned row" in m for m in theirs if m.startswith("storing"))


def test_a_process_running_other_threads_ingests_alone(clock, tmp_path: Path) -> None:
    # A lock another thread held at a fork would stay held in the child.
    paths = _dumps(tmp_path / "dumps", 8)
    engine = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    assert can_fork(engine)
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait)
    waiting.start()
    try:
        assert not can_fork(engine)
        forks = len(FORKS)
        reports = ingest_paths(
            engine, [tmp_path / "dumps"], clock=clock, captured_at=CAPTURED, batch_files=2
        )
        assert len(FORKS) == forks
    finally:
        stop.set()
        waiting.join()
    single = _engine(f"sqlite:///{tmp_path / 'single.db'}")
    assert reports == _one_at_a_time(single, paths, clock)


def test_no_partner_while_a_connection_of_the_engine_is_in_use(tmp_path: Path) -> None:
    # A connection in use cannot be closed before the fork: the child would
    # share its SQLite locks.
    engine = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with engine.connect():
        assert not can_fork(engine)
    assert can_fork(engine)


def test_an_in_memory_database_is_not_shared() -> None:
    assert not can_share(make_engine("sqlite://"))
    assert can_share(make_engine("sqlite:///some/file.db"))


@pytest.mark.postgres
def test_turns_on_postgresql_reconstruct_what_one_sqlite_process_does(
    pg_engine: Engine, clock, tmp_path: Path
) -> None:
    paths = _dumps(tmp_path / "dumps", 40)
    partner = Partner(pg_engine, None, CAPTURED)
    reports = _in_turns(pg_engine, partner, paths, clock, size=3)
    assert partner.stored >= 3
    single = _engine(f"sqlite:///{tmp_path / 'single.db'}")
    assert reports == _one_at_a_time(single, paths, clock)
    assert build_document(pg_engine) == build_document(single)


def test_ingest_paths_takes_a_partner_for_many_batches_and_ends_the_same(
    clock, tmp_path: Path
) -> None:
    paths = _dumps(tmp_path / "dumps", 40)
    engine = _engine(f"sqlite:///{tmp_path / 'turns.db'}")
    forks = len(FORKS)
    reports = ingest_paths(
        engine, [tmp_path / "dumps"], clock=clock, captured_at=CAPTURED, batch_files=2
    )
    assert len(FORKS) == forks + 1
    single = _engine(f"sqlite:///{tmp_path / 'single.db'}")
    assert reports == _one_at_a_time(single, paths, clock)
    assert _tables(engine) == _tables(single)


def test_a_killed_ingest_leaves_whole_batches_and_its_partner_exits_quietly(
    tmp_path: Path,
) -> None:
    paths = _dumps(tmp_path / "dumps", 400)
    database = tmp_path / "killed.db"
    _engine(f"sqlite:///{database}").dispose()
    script = (
        "import sys; from pathlib import Path; from mirror.clock import SystemClock;"
        "from mirror.db.session import make_engine; from mirror.ingest.files import ingest_paths;"
        f"ingest_paths(make_engine('sqlite:///{database}'), [Path('{tmp_path / 'dumps'}')],"
        " clock=SystemClock(), batch_files=8)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    engine = make_engine(f"sqlite:///{database}")

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT count(*) FROM dump_file")))

    deadline = time.monotonic() + 60
    while stored() < 40:
        assert parent.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    parent.kill()
    # The pipe closes once every writer has gone: the parent, then its partner.
    _, err = parent.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    # Every stored file is whole: its provenance went in with it.
    with engine.connect() as conn:
        assert not conn.scalar(
            sa.text(
                "SELECT count(*) FROM dump_file d WHERE NOT EXISTS "
                "(SELECT 1 FROM observation o WHERE o.dump_sha256 = d.sha256)"
            )
        )
    assert 40 <= stored() < len(paths)
    engine.dispose()


@pytest.mark.parametrize("stop_after", [1, 2])
def test_a_stop_stores_no_further_batch_and_reports_what_was_stored(
    clock, tmp_path: Path, stop_after: int
) -> None:
    # Batches of 4: the first is stored here, the second by the partner.
    # Stopped after the first, the partner's parsed batch is never stored;
    # after the partner's, the batch parsed here meanwhile is not either.
    paths = _dumps(tmp_path / "dumps", 24)
    engine = _engine(f"sqlite:///{tmp_path / 'stopped.db'}")
    stop = threading.Event()
    seen: list[list[FileReport]] = []

    def on_batch(reports: list[FileReport]) -> None:
        seen.append(reports)
        if len(seen) == stop_after:
            stop.set()

    batches = [paths[i : i + 4] for i in range(0, len(paths), 4)]
    with Partner(engine, None, CAPTURED) as partner:
        reports = ingest_in_turns(
            engine,
            partner,
            batches,
            kind=None,
            captured_at=CAPTURED,
            clock=clock,
            on_batch=on_batch,
            stop=stop,
        )
    assert partner.stored == stop_after - 1
    assert [r.path for r in reports] == paths[: 4 * stop_after]
    assert [r for batch in seen for r in batch] == reports
    single = _engine(f"sqlite:///{tmp_path / 'single.db'}")
    _one_at_a_time(single, paths[: 4 * stop_after], clock)
    assert _tables(engine) == _tables(single)

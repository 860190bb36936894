"""Parsing ahead in a child process: file order, a dying child, a file that raises."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mirror.ingest.observe import observe_file
from mirror.ingest.parse_ahead import parsed_in_order
from mirror.reconstruct import DumpKind
from tests.conftest import CAPTURED
from tests.ingest.test_files import THREAD


def _dumps(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for n in range(count):
        path = folder / f"{n:03d}.txt"
        if n % 9 == 4:
            path.write_bytes(b"\xff\xfe not text")  # refused: not UTF-8
        else:
            path.write_text(THREAD.replace("bo@", f"bo{n}@"))
        paths.append(path)
    return paths


def _summary(result: object) -> object:
    if isinstance(result, str):
        return result
    meta, observed = result  # type: ignore[misc]
    return meta.sha256, [copy.natural for copy in (*observed.posts, *observed.comments)]


def test_results_come_in_file_order_as_this_process_would_make_them(tmp_path: Path) -> None:
    paths = _dumps(tmp_path / "dumps", 40)
    taken = list(parsed_in_order(paths, None, CAPTURED, window=8))
    assert [path for path, _ in taken] == paths
    expected = [_summary(observe_file(path, None, CAPTURED)) for path in paths]
    assert [_summary(result) for _, result in taken] == expected
    assert "not UTF-8" in str(taken[4][1])


def test_when_the_child_dies_this_process_parses_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _dumps(tmp_path / "dumps", 40)
    results = parsed_in_order(paths, None, CAPTURED, window=16)
    taken = [next(results)]
    child = results.gi_frame.f_locals["ahead"].process  # type: ignore[union-attr]
    os.kill(child.pid, 9)
    child.wait()
    with caplog.at_level(logging.WARNING, logger="mirror.ingest.parse_ahead"):
        taken.extend(results)
    assert "the parse process stopped answering; parsing here instead" in caplog.messages
    assert [path for path, _ in taken] == paths
    expected = [_summary(observe_file(path, None, CAPTURED)) for path in paths]
    assert [_summary(result) for _, result in taken] == expected


def test_a_file_the_child_fails_on_raises_here_as_it_would_without_a_child(
    tmp_path: Path,
) -> None:
    paths = _dumps(tmp_path / "dumps", 3)
    # Not a page kind: the parser raises KeyError (a bug, not a refusal).
    bogus = "no such kind"
    with pytest.raises(KeyError):
        observe_file(paths[0], bogus, CAPTURED)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        list(parsed_in_order(paths, bogus, CAPTURED, window=4))  # type: ignore[arg-type]


def test_the_child_is_gone_once_the_results_are_dropped_midway(tmp_path: Path) -> None:
    paths = _dumps(tmp_path / "dumps", 30)
    results = parsed_in_order(paths, DumpKind.THREAD, CAPTURED, window=8)
    next(results)
    child = results.gi_frame.f_locals["ahead"].process  # type: ignore[union-attr]
    results.close()
    assert child.poll() is not None

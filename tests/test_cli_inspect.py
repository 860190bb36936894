"""`mirror inspect`'s text: counts in words, singular where there is one."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.cli import main
from tests.helpers import MULTI_PARAGRAPH_THREAD


def test_inspect_says_1_point_and_1_post(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror.toml").write_text("")
    dump = tmp_path / "thread.txt"
    dump.write_text(
        MULTI_PARAGRAPH_THREAD.replace(" 3 points ", " 1 point ")
        + "\n\n[\u2013] ben@tea.example 2 points 1 day ago\n\nA reply of its own, long enough.\n"
    )
    assert main(["ingest", str(dump), "--captured-at", "2025-07-28T12:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "1 post, 2 comments, 2 authors, 1 community"
    assert "ana@tea.example · 1 point · " in out and "ben@tea.example · 2 points · " in out
    assert "1 points" not in out

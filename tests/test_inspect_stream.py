"""`mirror inspect --json` streams: the same bytes as the whole document, a page at a time."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy.engine import Engine

from mirror import inspection
from mirror.clock import FrozenClock
from mirror.ingest.files import ingest_paths
from mirror.inspect_stream import write_document
from tests.conftest import CAPTURED, seeds_dir


def _ingest_seeds(engine: Engine) -> None:
    paths = sorted(seeds_dir().glob("*.txt"))
    reports = list(ingest_paths(engine, paths, clock=FrozenClock(CAPTURED), captured_at=CAPTURED))
    assert all(r.ok for r in reports)


@pytest.mark.parametrize("page", [1, 3, 500])
def test_the_stream_is_the_whole_document_byte_for_byte(engine: Engine, page: int) -> None:
    _ingest_seeds(engine)
    whole = json.dumps(inspection.build_document(engine), ensure_ascii=False, indent=2)
    out = io.StringIO()
    write_document(engine, out, page=page)
    assert out.getvalue() == whole


def test_an_empty_database_gives_the_same_bytes(engine: Engine) -> None:
    out = io.StringIO()
    write_document(engine, out)
    assert out.getvalue() == json.dumps(inspection.build_document(engine), indent=2)


def test_inspect_json_never_builds_the_whole_document(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mirror.cli import ingest as cli

    _ingest_seeds(engine)
    expected = json.dumps(inspection.build_document(engine), ensure_ascii=False, indent=2)

    def refused(*_: object) -> None:
        raise AssertionError("inspect --json built the whole document")

    monkeypatch.setattr(inspection, "_document", refused)
    monkeypatch.setattr(cli, "engine_for", lambda _settings: engine)
    assert cli.cmd_inspect(type("Args", (), {"json": True})(), None) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out == expected + "\n"

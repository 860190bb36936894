"""The ``mirror`` command end to end, in-process, on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirror.cli import main
from mirror.ingest.files import sample_files
from tests.conftest import seed, seeds_dir


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_folder_prints_a_summary_and_exits_0(capsys, data_dir: Path) -> None:
    code, out, err = run(
        capsys, "ingest", str(seeds_dir()), "--captured-at", "2025-07-28T12:00:00Z"
    )
    assert code == 0, err
    # One line of totals; the per-file table only with -v (tests/test_cli_ingest.py).
    assert out.startswith("ingested 5 files (") and out.count("\n") == 1
    for kind in ("profile", "thread", "flat", "bare", "listing"):
        assert f"1 {kind}" in out
    assert (data_dir / "mirror.db").exists()  # the embedded default


def test_inspect_json_is_one_document_with_the_documented_keys(capsys, data_dir: Path) -> None:
    run(capsys, "ingest", str(seed("thread")), str(seed("profile")))
    code, out, _ = run(capsys, "inspect", "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) >= {"communities", "authors", "posts", "comments"}
    assert set(doc["communities"][0]) >= {"id", "name", "instance", "title"}
    assert set(doc["authors"][0]) >= {"id", "handle", "display_name"}
    assert set(doc["posts"][0]) >= {
        "id",
        "title",
        "title_derived",
        "author",
        "community",
        "body",
        "score",
        "published",
        "published_raw",
        "edited",
        "cross_posted_from",
        "sources",
    }
    assert set(doc["comments"][0]) >= {
        "id",
        "post",
        "parent",
        "parent_known",
        "author",
        "body",
        "score",
        "published",
        "edited",
        "confidence",
        "sources",
    }
    source = doc["posts"][0]["sources"][0]
    assert set(source) == {"file", "first_line", "last_line"}
    assert "/" not in source["file"]


def test_inspect_text_shows_threads(capsys, data_dir: Path) -> None:
    run(capsys, "ingest", str(seed("thread")))
    code, out, _ = run(capsys, "inspect")
    assert code == 0
    assert "yogthos@lemmy.ml" in out and "parent unknown" in out


def test_a_refused_file_makes_exit_1_and_the_rest_goes_in(
    capsys, data_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe garbage")
    code, out, err = run(capsys, "ingest", str(bad), str(seed("listing")))
    assert code == 1
    assert f"refused {bad}: not UTF-8: invalid byte 0xff at offset 0" in err
    code, out, _ = run(capsys, "inspect", "--json")
    assert len(json.loads(out)["posts"]) == 25


@pytest.mark.parametrize(
    "args",
    [
        ["ingest"],
        ["ingest", "x.txt", "--format", "bogus"],
        ["ingest", "x.txt", "--captured-at", "yesterday"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(capsys, data_dir: Path, args: list[str]) -> None:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse exits by itself
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    assert capsys.readouterr().err.strip()


def test_ingest_without_paths_is_a_usage_error(capsys, data_dir: Path) -> None:
    code, _, err = run(capsys, "ingest")
    assert code == 2 and "at least one PATH" in err


def test_forced_format(capsys, data_dir: Path) -> None:
    code, out, _ = run(capsys, "ingest", "--format", "bare", str(seed("flat")))
    assert code == 0 and "bare" in out
    doc = json.loads(run(capsys, "inspect", "--json")[1])
    assert doc["posts"] == []


def test_bad_config_exits_2_with_one_line(capsys, data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[database]\necho = 1\n")
    code, _, err = run(capsys, "--config", str(config), "inspect")
    assert code == 2
    assert err.strip().count("\n") == 0 and "[database].echo" in err


def test_database_url_from_the_environment(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIRROR_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    code, _, _ = run(capsys, "ingest", str(seed("thread")))
    assert code == 0 and (tmp_path / "elsewhere.db").exists()


def test_db_commands(capsys, data_dir: Path) -> None:
    code, out, _ = run(capsys, "db", "current")
    assert code == 0 and "empty" in out
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0
    code, out, _ = run(capsys, "db", "current")
    assert "up to date" in out


def test_samples_are_package_data_and_ingest_cleanly(capsys, data_dir: Path) -> None:
    samples = sample_files()
    assert len(samples) >= 5
    seeds = {p.read_bytes() for p in seeds_dir().iterdir()}
    assert not any(p.read_bytes() in seeds for p in samples)  # written for the project
    code, out, err = run(capsys, "ingest", "--samples")
    assert code == 0, out + err
    for kind in ("profile", "thread", "flat", "bare", "listing"):
        assert kind in out

"""Languages: the name a page showed becomes Lemmy's code; objects send Lemmy's {code, name}."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mirror.ingest.rows import comment_row, fold
from mirror.reconstruct import parse_dump
from mirror.sandbox.rules import Refused, check_object
from mirror.vocab import languages
from mirror.vocab.objects import build_comment

ROOT = Path(__file__).resolve().parents[1]
PROFILE = (ROOT / "mirror" / "samples" / "profile_fern.txt").read_text(encoding="utf-8")
CAPTURED = datetime(2025, 7, 28, 12, 0, tzinfo=UTC)


def test_lemmys_list_is_vendored_whole() -> None:
    # Lemmy's migration inserts 184 languages: `und` and 183 ISO 639-1 codes.
    assert len(languages.NAMES) == 184
    assert languages.NAMES["und"] == "Undetermined"
    assert all(len(code) == 2 for code in languages.NAMES if code != "und")
    assert all(len(code) <= languages.MAX_IDENTIFIER for code in languages.NAMES)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("English", "en"),
        ("english", "en"),
        ("ENGLISH", "en"),
        ("Deutsch", "de"),
        ("Français", "fr"),
        ("Русский", "ru"),
        ("日本語", "ja"),
        ("Norsk bokmål", "nb"),
        ("norsk  Bokmål", "nb"),
        ("ئۇيغۇرچە", "ug"),  # Lemmy's name ends in U+200E; a page may drop it
        ("Avañe'ẽ", "gn"),
        ("Undetermined", "und"),
    ],
)
def test_a_name_as_the_page_showed_it_gives_lemmys_code(name: str, code: str) -> None:
    assert languages.code_for(name) == code


@pytest.mark.parametrize("name", [None, "", "Klingon", "German", "en", "isiNdebele"])
def test_names_lemmy_does_not_list_or_that_are_ambiguous_give_no_code(name: str | None) -> None:
    # isiNdebele is Lemmy's name for both nd and nr: the name does not say which.
    assert languages.code_for(name) is None


def test_codes_give_lemmys_names() -> None:
    assert languages.name_for("de") == "Deutsch"
    assert languages.name_for("xx") is None and languages.name_for(None) is None
    assert languages.is_code("en") and not languages.is_code("English")


def test_the_exact_name_is_one_dict_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ingest maps every item's language: the exact name never takes the slow way.
    def folded(name: str) -> str:
        raise AssertionError(f"{name!r} was folded")

    monkeypatch.setattr(languages, "_key", folded)
    assert [languages.code_for(n) for n in ("English", "Deutsch", "日本語")] == ["en", "de", "ja"]


def _first_comment(page: str) -> Any:
    return parse_dump(page, captured_at=CAPTURED).comments[0]


@pytest.mark.parametrize(
    ("shown", "code"),
    [("English", "en"), ("Deutsch", "de"), ("Русский", "ru"), ("日本語", "ja"), ("Klingon", None)],
)
def test_the_profile_parser_keeps_the_name_and_finds_the_code(shown: str, code: str | None) -> None:
    comment = _first_comment(PROFILE.replace("    English\n", f"    {shown}\n", 1))
    assert (comment.language, comment.language_name) == (code, shown)
    # The language line is meta, not the body's first line (non-Latin names too).
    assert comment.body.startswith("Fermenting is optional.")
    assert comment.votes.upvotes == 14


def test_copies_fold_the_code_and_the_name_together() -> None:
    base = _first_comment(PROFILE)
    rows = [
        comment_row(base, CAPTURED),
        comment_row(_first_comment(PROFILE.replace("    English\n", "    日本語\n", 1)), CAPTURED),
        comment_row(_first_comment(PROFILE.replace("    English\n", "    中文\n", 1)), CAPTURED),
        comment_row(_first_comment(PROFILE.replace("    English\n", "    Klingon\n", 1)), CAPTURED),
    ]
    results = set()
    for order in (rows, rows[::-1], rows[1:] + rows[:1]):
        merged = dict(order[0])
        for row in order[1:]:
            fold("comment", merged, row)
        results.add((merged["language"], merged["language_name"]))
    # One answer whatever the order, and a pair some page showed (a code wins over none).
    assert results == {("en", "English")}


def _object(language: str | None) -> dict[str, Any]:
    return build_comment(
        in_reply_to=None,
        object_id="https://mirror.example/o/1",
        attributed_to="https://mirror.example/u/mirror",
        community="https://lemmy.example/c/sandbox",
        content="<p>x</p>",
        source="x",
        published=None,
        language=language,
    )


def test_objects_send_lemmys_code_and_name_and_leave_out_unknown_codes() -> None:
    assert _object("de")["language"] == {"identifier": "de", "name": "Deutsch"}
    assert _object("en")["language"] == {"identifier": "en", "name": "English"}
    assert "language" not in _object(None)
    assert "language" not in _object("English")  # a name is not a code


def _create(language: Any) -> dict[str, Any]:
    obj = _object("en")
    obj["language"] = language
    return {"id": "https://mirror.example/a/1", "to": obj["to"], "cc": obj["cc"], "object": obj}


def test_the_sandbox_takes_lemmys_codes_only() -> None:
    actor, community = "https://mirror.example/u/mirror", "https://lemmy.example/c/sandbox"
    assert check_object(_create({"identifier": "en", "name": "English"}), actor, community)
    assert check_object(_create(None), actor, community)
    cases = [
        ("English", "language must be {identifier, name}"),
        ({"identifier": "en"}, "language must be {identifier, name}"),
        ({"identifier": "English", "name": "English"}, "longer than 5 characters"),
        ({"identifier": "xx", "name": "Unknown"}, "not a code of Lemmy's language list"),
    ]
    for language, message in cases:
        with pytest.raises(Refused) as refused:
            check_object(_create(language), actor, community)
        assert refused.value.error == "parse_error"
        assert message in refused.value.message and "\n" not in refused.value.message

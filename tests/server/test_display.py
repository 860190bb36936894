"""How the pages write times, first words and scores."""

from __future__ import annotations

from datetime import UTC, datetime

from mirror.publish.attribution import split_content
from mirror.server.display import first_words, human_time, points, title_of

BLOCK = '<hr><p><small>Mirrored from an archive: originally by <a href="x">a@b</a>.</small></p>'


def test_times_are_as_precise_as_the_archive_knew_them() -> None:
    moment = datetime(2025, 3, 12, 14, 5, tzinfo=UTC)
    assert human_time(moment) == "12 Mar 2025, 14:05 UTC"
    assert human_time(moment, 60) == "12 Mar 2025, 14:05 UTC"
    assert human_time(moment, 86400) == "12 Mar 2025"
    assert human_time(moment, 30 * 86400) == "Mar 2025"
    assert human_time(moment, 365 * 86400) == "2025"
    assert human_time(None) == "time unknown"


def test_first_words_end_at_a_word() -> None:
    assert first_words("short") == "short"
    assert first_words("one two three four", limit=12) == "one two…"
    assert first_words("x" * 30, limit=10) == "x" * 10 + "…"


def test_a_title_is_the_name_or_the_body_never_the_attribution() -> None:
    assert title_of({"name": " Creaks ", "content": "<p>body</p>"}) == "Creaks"
    document = {"content": "<p>Fish &amp; chips</p><p>second</p>" + BLOCK}
    assert title_of(document) == "Fish & chips second"
    assert title_of({"content": BLOCK}).startswith("Mirrored from an archive")
    assert title_of({}) == "(no text)"
    assert split_content("<p>body</p>" + BLOCK) == ("<p>body</p>", BLOCK)
    assert split_content("<p>no block</p>") == ("<p>no block</p>", "")


def test_points_as_the_dump_showed_them() -> None:
    assert points(None) == ""
    assert points(1) == "1 point"
    assert points(-2) == "-2 points"
    assert points(12, 14, 2) == "12 points (+14/−2)"
    assert points(None, 5, 1) == "4 points (+5/−1)"

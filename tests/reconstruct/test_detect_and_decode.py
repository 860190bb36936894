"""Page-kind detection, and refusals with a one-line reason."""

from __future__ import annotations

import pytest

from mirror.reconstruct import DumpKind, NotADump, decode, parse_dump
from mirror.reconstruct.text import split_lines
from tests.conftest import SEED, seed, shipped, shipped_dumps


@pytest.mark.parametrize("kind", list(SEED))
def test_each_seed_is_detected_as_its_kind(kind: str) -> None:
    assert parse_dump(seed(kind).read_text()).kind is DumpKind(kind)


@pytest.mark.parametrize("path", shipped_dumps(), ids=lambda p: p.name)
def test_each_shipped_dump_is_detected_as_the_kind_its_name_says(path) -> None:
    assert parse_dump(path.read_text()).kind is DumpKind(path.name.split("_")[0])


@pytest.mark.parametrize(
    "path", [lambda: seed("bare"), lambda: shipped("bare_comments.txt")], ids=["seed", "sample"]
)
def test_format_can_be_forced(path) -> None:
    text = path().read_text()
    dump = parse_dump(text, kind=DumpKind.FLAT)
    assert dump.kind is DumpKind.FLAT and len(dump.posts) == 1


def test_last_line_without_newline_is_kept() -> None:
    assert split_lines("a\nb") == ["a", "b"]
    assert split_lines("a\nb\n") == ["a", "b"]
    assert split_lines("a\u2028b\fc") == ["a\u2028b\fc"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"  \n\n\t\n", "empty file (only whitespace)"),
        (b"\xef\xbb\xbf", "empty file (only whitespace)"),  # a BOM alone
        ("\ufeff\u00a0\u2003\n".encode(), "empty file (only whitespace)"),
        (b"hello\x00world", "binary file (NUL byte at offset 5)"),
        ("caf\u00e9 ok\n".encode("latin-1") + b"rest", "not UTF-8: invalid byte 0xe9 at offset 3"),
    ],
)
def test_decode_refusals_name_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(NotADump) as info:
        decode(data)
    assert str(info.value) == reason


def test_decode_strips_a_bom() -> None:
    assert decode("\ufeffhello there friend".encode()) == "hello there friend"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"type": "Note", "content": "hello"}', "JSON"),
        ("<html>\n<body>\n<p>hi</p>\n</body>\n</html>", "HTML"),
        ("int main() {\n  return 0;\n}\n", "source code"),
        ("1,2,3\n4,5,6\n7,8,9\n", "letters"),
        ("ok\nyes\nno\n", "prose"),
    ],
)
def test_not_a_dump(text: str, words: str) -> None:
    with pytest.raises(NotADump) as info:
        parse_dump(text)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_letters_are_counted_as_the_letter_class_matches_them() -> None:
    # Detection's prose check counts letters and visible characters fast;
    # the definitions are the regex class of letters ([^\W\d_]) and what
    # splitting on whitespace leaves, for every kind of character.
    import re

    from mirror.reconstruct.detect import _letters_and_visible

    letter = re.compile(r"[^\W\d_]")

    def defined(text: str) -> tuple[int, int]:
        return len(letter.findall(text)), len("".join(text.split()))

    chars = [chr(c) for c in range(0, 0x30000, 3) if not 0xD800 <= c < 0xE000]
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    assert [_letters_and_visible(ch) for ch in chars + spaces] == [
        defined(ch) for ch in chars + spaces
    ]
    text = "Straße, 3½ “quoted” über 12_000 naïve cafés — ２ Ω\u00a0ok\u2003\x1f\tend\ud800"
    assert _letters_and_visible(text) == defined(text) == (33, 46)


def test_code_lines_are_told_as_the_code_line_pattern_tells_them() -> None:
    import re

    from mirror.reconstruct.detect import _CODE_ENDINGS

    pattern = re.compile(r"[;{}]\s*$")  # the definition: ends in ; { or } and whitespace
    spaces = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
    lines = [
        f"{head}{end}{tail}"
        for head in ("", "x", "a {", "b;")
        for end in ("", ";", "{", "}", "x", ")")
        for tail in ("", " ", "\t ", spaces, "\u00a0", " y")
    ]
    assert [line.rstrip()[-1:] in _CODE_ENDINGS for line in lines] == [
        bool(pattern.search(line)) for line in lines
    ]

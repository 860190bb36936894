"""Lemmy's language list: the name a page showed <-> the code Lemmy federates.

lemmy-ui prints an item's language by its name in Lemmy's `language`
table; Lemmy federates it as `language: {identifier: code, name}`
(crates/apub/objects/src/utils/protocol.rs `LanguageTag`) and PieFed keeps
the identifier in a varchar(5). `languages.tsv` beside this module is that
table as Lemmy's migration fills it (LemmyNet/lemmy,
migrations/2022-06-21-123144_language-tags/up.sql): ISO 639-1 codes, and
`und` for "Undetermined".
"""

from __future__ import annotations

import unicodedata
from importlib import resources

#: PieFed stores `language.identifier` in a varchar(5) (and answers 500 past it).
MAX_IDENTIFIER = 5


def _load() -> dict[str, str]:
    names: dict[str, str] = {}
    text = resources.files("mirror.vocab").joinpath("languages.tsv").read_text("utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, name = line.split("\t")
            names[code] = name
    return names


def _key(name: str) -> str:
    # Case, spacing and invisible marks (Lemmy's Uyghur name ends in U+200E)
    # are not what tells two names apart.
    visible = "".join(ch for ch in name if unicodedata.category(ch) != "Cf")
    return " ".join(visible.casefold().split())


#: code -> name, in the list's order.
NAMES: dict[str, str] = _load()


def _codes() -> tuple[dict[str, str], dict[str, str | None]]:
    exact: dict[str, str] = {}
    folded: dict[str, str | None] = {}
    for code, name in NAMES.items():
        key = _key(name)
        # Two codes share a name (isiNdebele: nd and nr): the name says neither.
        folded[key] = None if key in folded else code
    for code, name in NAMES.items():
        if folded[_key(name)] is not None:
            exact[name] = code
    return exact, folded


_EXACT, _FOLDED = _codes()


def code_for(name: str | None) -> str | None:
    """The code of a language name as a page showed it; None when the list has no such name.

    Case-insensitive. The exact name is one dict lookup (the ingest's hot path).
    """
    if not name:
        return None
    code = _EXACT.get(name)
    if code is None:
        code = _FOLDED.get(_key(name))
    return code


def name_for(code: str | None) -> str | None:
    """Lemmy's name for a code; None for a code not in the list."""
    return NAMES.get(code) if code else None


def is_code(identifier: object) -> bool:
    """Whether ``identifier`` is a code of Lemmy's list."""
    return isinstance(identifier, str) and identifier in NAMES

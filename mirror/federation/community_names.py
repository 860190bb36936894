"""Names of hosted communities: what Lemmy takes, and the default made from a source.

Lemmy 0.19 takes actor names of at least 3 characters of ``[a-zA-Z0-9_]``
and at most ``actor_name_max_length`` (20 by default; is_valid_actor_name in
crates/utils/src/utils/validation.rs); its communities are lower case. PieFed
and Mbin take these names too.
"""

from __future__ import annotations

import re
import unicodedata

from mirror.errors import MirrorError

MIN_LENGTH, MAX_LENGTH = 3, 20
VALID = re.compile(rf"[a-z0-9_]{{{MIN_LENGTH},{MAX_LENGTH}}}")
_OTHER = re.compile(r"[^a-z0-9]+")


class InvalidName(MirrorError):
    """A community name Lemmy would refuse, or one already taken."""


def check_name(name: str) -> str:
    """``name`` when Lemmy takes it as a community name; else a one-line refusal."""
    if not VALID.fullmatch(name):
        raise InvalidName(
            f"community name {name!r}: Lemmy takes {MIN_LENGTH} to {MAX_LENGTH} characters "
            "of a-z, 0-9 and _ (e.g. socialism_lemmy_ml)"
        )
    return name


def slug(text: str) -> str:
    """Lower-case ASCII words joined by _: "Ask Lemmy!" -> "ask_lemmy"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _OTHER.sub("_", ascii_text.lower()).strip("_")


def _fit(text: str) -> str:
    """Cut at the last _ that keeps it within MAX_LENGTH (or at MAX_LENGTH)."""
    if len(text) <= MAX_LENGTH:
        return text
    cut = text[: MAX_LENGTH + 1].rfind("_")
    return (text[:cut] if cut >= MIN_LENGTH else text[:MAX_LENGTH]).strip("_")


def candidates(*, name: str | None, instance: str | None, title: str | None) -> list[str]:
    """Default names for a source, best first: socialism@lemmy.ml gives socialism_lemmy_ml,
    then socialism_lemmy, then socialism; a source known by title only, its title's words.

    Each is Lemmy-valid; the caller takes the first that is free.
    """
    found: list[str] = []
    base = slug(name or "") or slug(title or "")
    labels = [slug(label) for label in (instance or "").split(".") if slug(label)]
    if base:
        for count in range(len(labels), -1, -1):
            found.append(_fit("_".join([base, *labels[:count]])))
    padded = [n if len(n) >= MIN_LENGTH else f"{n}_archive" for n in found if n]
    return list(dict.fromkeys(n for n in padded if VALID.fullmatch(n))) or ["archive"]

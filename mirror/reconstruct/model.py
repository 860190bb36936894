"""What a dump says, as typed values: the output of every parser.

Fields are None when the page does not show them; nothing here is guessed
except where a field says so (``title_derived``, ``confidence``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mirror.reconstruct.times import Moment


class DumpKind(StrEnum):
    PROFILE = "profile"
    THREAD = "thread"
    FLAT = "flat"
    BARE = "bare"
    LISTING = "listing"


class Confidence(StrEnum):
    """How sure the reconstruction of one item is.

    high: explicit markers delimit the item and say what it is.
    medium: markers delimit it, but its kind or place is inferred.
    low: no markers; boundaries come from stated heuristics.
    """

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return {"low": 0, "medium": 1, "high": 2}[self.value]


@dataclass(frozen=True, slots=True)
class ParsedAuthor:
    name: str | None
    instance: str | None
    display_name: str | None = None
    pronouns: str | None = None
    bio: str | None = None
    posts_count_raw: str | None = None
    comments_count_raw: str | None = None
    joined: Moment | None = None
    cake_day_raw: str | None = None

    @property
    def handle(self) -> str | None:
        if self.name and self.instance:
            return f"{self.name}@{self.instance}"
        return None


@dataclass(frozen=True, slots=True)
class ParsedCommunity:
    name: str | None
    instance: str | None
    title: str | None = None
    description: str | None = None
    readers: int | None = None
    users_now: int | None = None
    founded: Moment | None = None

    @property
    def handle(self) -> str | None:
        if self.name and self.instance:
            return f"{self.name}@{self.instance}"
        return None


@dataclass(frozen=True, slots=True)
class Votes:
    score: int | None = None
    upvotes: int | None = None
    downvotes: int | None = None
    like_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class ParsedPost:
    ref: int
    first_line: int
    last_line: int
    confidence: Confidence
    author: ParsedAuthor | None = None
    community: ParsedCommunity | None = None
    title: str | None = None
    title_derived: bool = False
    #: None when the page does not show the body; "" when it shows an empty one.
    body: str | None = None
    votes: Votes = field(default_factory=Votes)
    published: Moment | None = None
    edited: bool | None = None
    edited_at: Moment | None = None
    cross_posted_from: str | None = None
    link_domain: str | None = None
    listing_rank: int | None = None
    #: Lemmy's code for the language the page showed (mirror.vocab.languages),
    #: None when it showed none or one not in Lemmy's list.
    language: str | None = None
    #: The language's name as the page showed it ("English", "Deutsch").
    language_name: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedComment:
    ref: int
    first_line: int
    last_line: int
    confidence: Confidence
    body: str
    #: ``ref`` of the post in the same dump, or None when the page does not say.
    post: int | None = None
    #: ``ref`` of the parent comment in the same dump, or None.
    parent: int | None = None
    #: True when the page shows where the comment sits (None parent = top level).
    parent_known: bool = False
    author: ParsedAuthor | None = None
    votes: Votes = field(default_factory=Votes)
    #: Number of descendants (Lemmy's child_count) when the page shows it.
    descendants: int | None = None
    published: Moment | None = None
    edited: bool | None = None
    edited_at: Moment | None = None
    #: As ParsedPost's: Lemmy's code, and the name the page showed.
    language: str | None = None
    language_name: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedDump:
    kind: DumpKind
    posts: tuple[ParsedPost, ...] = ()
    comments: tuple[ParsedComment, ...] = ()
    #: The page's own subject: the profile owner, the sidebar community.
    page_author: ParsedAuthor | None = None
    page_community: ParsedCommunity | None = None
    #: Heuristics applied, in words, for the operator.
    notes: tuple[str, ...] = ()

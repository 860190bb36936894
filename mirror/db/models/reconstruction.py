"""Tables for what the dumps hold: communities, authors, posts, comments, provenance.

Ids are opaque strings derived from what identifies an item in the dumps
(see :mod:`mirror.ingest.identity`). When two stored items turn out to be
one, the survivor keeps the smaller id and the other id becomes an alias,
so every id ever handed out still resolves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mirror.db.base import Base
from mirror.db.types import UTCDateTime

ID = sa.String(32)
TZ = UTCDateTime()


class Community(Base):
    __tablename__ = "community"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    instance: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    title: Mapped[str | None] = mapped_column(sa.Text)
    description: Mapped[str | None] = mapped_column(sa.Text)
    readers: Mapped[int | None] = mapped_column(sa.Integer)
    users_now: Mapped[int | None] = mapped_column(sa.Integer)
    founded_raw: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Author(Base):
    __tablename__ = "author"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    handle: Mapped[str] = mapped_column(sa.String(255), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    instance: Mapped[str] = mapped_column(sa.String(255))
    display_name: Mapped[str | None] = mapped_column(sa.Text)
    pronouns: Mapped[str | None] = mapped_column(sa.String(64))
    bio: Mapped[str | None] = mapped_column(sa.Text)
    posts_count_raw: Mapped[str | None] = mapped_column(sa.String(32))
    comments_count_raw: Mapped[str | None] = mapped_column(sa.String(32))
    joined_raw: Mapped[str | None] = mapped_column(sa.String(64))
    cake_day_raw: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class _ItemColumns:
    """Columns posts and comments share."""

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    author_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("author.id"))
    body: Mapped[str | None] = mapped_column(sa.Text)
    #: Hash of the first characters of the normalised body: finds other copies.
    body_head: Mapped[str | None] = mapped_column(sa.String(16), index=True)
    score: Mapped[int | None] = mapped_column(sa.Integer)
    upvotes: Mapped[int | None] = mapped_column(sa.Integer)
    downvotes: Mapped[int | None] = mapped_column(sa.Integer)
    #: Capture time of the snapshot the counts above come from.
    counts_captured_at: Mapped[datetime | None] = mapped_column(TZ)
    published_at: Mapped[datetime | None] = mapped_column(TZ)
    published_raw: Mapped[str | None] = mapped_column(sa.String(64))
    published_precision_s: Mapped[int | None] = mapped_column(sa.Integer)
    edited: Mapped[bool | None] = mapped_column(sa.Boolean)
    edited_at: Mapped[datetime | None] = mapped_column(TZ)
    edited_raw: Mapped[str | None] = mapped_column(sa.String(64))
    edited_precision_s: Mapped[int | None] = mapped_column(sa.Integer)
    #: Lemmy's code for the language the page showed (mirror.vocab.languages), when it
    #: has one; the name as the page showed it, for display (never lost).
    language: Mapped[str | None] = mapped_column(sa.String(64))
    language_name: Mapped[str | None] = mapped_column(sa.String(64))
    confidence: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Post(_ItemColumns, Base):
    __tablename__ = "post"
    # A backfill plans posts oldest first, a chunk at a time (mirror.publish.stream).
    __table_args__ = (sa.Index("ix_post_published", "published_at", "id"),)

    community_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("community.id"), index=True)
    title: Mapped[str | None] = mapped_column(sa.Text)
    title_derived: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: Hash of the normalised real title: finds posts known only by title.
    title_key: Mapped[str | None] = mapped_column(sa.String(16), index=True)
    like_ratio: Mapped[float | None] = mapped_column(sa.Float)
    cross_posted_from: Mapped[str | None] = mapped_column(sa.Text)
    link_domain: Mapped[str | None] = mapped_column(sa.String(255))
    listing_rank: Mapped[int | None] = mapped_column(sa.Integer)


class Comment(_ItemColumns, Base):
    __tablename__ = "comment"
    # The comments of unknown posts (post_id NULL) are planned oldest first, a chunk at a time.
    __table_args__ = (sa.Index("ix_comment_post_published", "post_id", "published_at", "id"),)

    post_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("post.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("comment.id"), index=True)
    parent_known: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    descendants: Mapped[int | None] = mapped_column(sa.Integer)


class Alias(Base):
    """Every id an item was ever known by (its own id included)."""

    __tablename__ = "alias"
    # Small rows looked up by key: one B-tree, not a rowid table plus an index.
    __table_args__ = {"sqlite_with_rowid": False}

    alias: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    target: Mapped[str] = mapped_column(ID, index=True)


class DumpFile(Base):
    """A dump as ingested, identified by its content."""

    __tablename__ = "dump_file"

    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(16))
    size: Mapped[int] = mapped_column(sa.Integer)
    captured_at: Mapped[datetime | None] = mapped_column(TZ)
    ingested_at: Mapped[datetime] = mapped_column(TZ)


class Observation(Base):
    """One occurrence of an item in a dump: where it was and what that copy said."""

    __tablename__ = "observation"
    __table_args__ = (sa.UniqueConstraint("dump_sha256", "kind", "first_line"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    item_id: Mapped[str] = mapped_column(ID, index=True)
    dump_sha256: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("dump_file.sha256"))
    first_line: Mapped[int] = mapped_column(sa.Integer)
    last_line: Mapped[int] = mapped_column(sa.Integer)
    confidence: Mapped[str] = mapped_column(sa.String(8))
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class Fragment(Base):
    """Paragraph hashes of low-confidence items, to find them inside later, fuller copies."""

    __tablename__ = "fragment"
    __table_args__ = {"sqlite_with_rowid": False}

    para_hash: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    item_id: Mapped[str] = mapped_column(ID, primary_key=True, index=True)

"""streamed plans: the indexes a chunked plan walks, and a planning run's progress

Revision ID: c9e4a1b7d2f5
Revises: d3e9a1b7c5f2
Create Date: 2026-12-12 12:00:00

A backfill plans its posts oldest first (published, id) and the comments of
unknown posts the same way, a chunk at a time by keyset pagination; a run
being planned keeps where it stands in `progress`, so that planning it again
after a crash continues it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "c9e4a1b7d2f5"
down_revision: str | None = "d3e9a1b7c5f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_post_published", "post", ["published_at", "id"], unique=False)
    op.create_index(
        "ix_comment_post_published", "comment", ["post_id", "published_at", "id"], unique=False
    )
    with op.batch_alter_table("backfill_run") as batch_op:
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backfill_run") as batch_op:
        batch_op.drop_column("progress")
    op.drop_index("ix_comment_post_published", table_name="comment")
    op.drop_index("ix_post_published", table_name="post")

"""hosted backlogs: the archive queued once per server subscribing to a Group

Revision ID: b8d2f4a6c1e3
Revises: a7c3e91f5d20
Create Date: 2026-12-10 12:00:00

A server's first follower of a hosted community gets the whole archive
through the queue; this row makes that once per (community, server) and
lets `mirror communities status` show its progress.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b8d2f4a6c1e3'
down_revision: str | None = 'a7c3e91f5d20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'hosted_backlog',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('community', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('inbox', sa.Text(), nullable=False),
        sa.Column('items', sa.Integer(), nullable=False),
        sa.Column('software', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['community'],
            ['hosted_community.name'],
            name=op.f('fk_hosted_backlog_community_hosted_community'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hosted_backlog')),
        sa.UniqueConstraint('community', 'host', name=op.f('uq_hosted_backlog_community_host')),
    )


def downgrade() -> None:
    op.drop_table('hosted_backlog')

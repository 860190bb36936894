"""hosted communities: read-only Groups on the mirror's own domain

Revision ID: a7c3e91f5d20
Revises: e5b81c3d9f42
Create Date: 2026-12-09 12:00:00

Each hosted community is a local_actor (kind "group", so one namespace
with the bot and the puppets) plus this row: the reconstructed community
it shows and its title. Its followers are follower rows like the bot's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'a7c3e91f5d20'
down_revision: str | None = 'e5b81c3d9f42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'hosted_community',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=255), nullable=False),
        sa.Column('source_url', sa.String(length=2048), nullable=True),
        sa.Column('title', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['name'],
            ['local_actor.username'],
            name=op.f('fk_hosted_community_name_local_actor'),
        ),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_hosted_community')),
        sa.UniqueConstraint('source', name=op.f('uq_hosted_community_source')),
    )


def downgrade() -> None:
    op.drop_table('hosted_community')

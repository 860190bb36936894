"""follower copies: what each follower's server of a hosted Group holds of its announces

Revision ID: d3e9a1b7c5f2
Revises: b8d2f4a6c1e3
Create Date: 2026-12-11 12:00:00

A 2xx is not proof: PieFed answers 200 to an announced post it drops. One
row per (community, server, object) announced to a server whose software
has a lookup; the publication job asks it and announces again what is
missing. `hosted_backlog.unverifiable` says why a server cannot be asked
after all. Nothing is filled in: what was announced before is not asked
about.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'd3e9a1b7c5f2'
down_revision: str | None = 'b8d2f4a6c1e3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_COPIES = "state IN ('waiting', 'queued', 'held', 'sent', 'missing')"


def upgrade() -> None:
    with op.batch_alter_table('hosted_backlog', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unverifiable', sa.Text(), nullable=True))
    op.create_table(
        'follower_copy',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('community', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('inbox', sa.Text(), nullable=False),
        sa.Column('object_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('parent_id', sa.String(length=64), nullable=True),
        sa.Column('activity_id', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sends', sa.Integer(), nullable=False),
        sa.Column('checks', sa.Integer(), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['community'],
            ['hosted_community.name'],
            name=op.f('fk_follower_copy_community_hosted_community'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_follower_copy')),
        sa.UniqueConstraint(
            'community', 'host', 'object_id', name=op.f('uq_follower_copy_community_host_object_id')
        ),
    )
    op.create_index(
        'ix_follower_copy_open',
        'follower_copy',
        ['state', 'due_at'],
        unique=False,
        sqlite_where=sa.text(OPEN_COPIES),
        postgresql_where=sa.text(OPEN_COPIES),
    )


def downgrade() -> None:
    op.drop_index('ix_follower_copy_open', table_name='follower_copy')
    op.drop_table('follower_copy')
    with op.batch_alter_table('hosted_backlog', schema=None) as batch_op:
        batch_op.drop_column('unverifiable')

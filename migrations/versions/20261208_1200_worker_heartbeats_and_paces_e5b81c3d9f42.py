"""delivery workers with heartbeats, paced lanes per run and server

Revision ID: e5b81c3d9f42
Revises: cd5239e37bf2
Create Date: 2026-12-08 12:00:00

Workers register with a heartbeat, so that a surviving or restarted worker
releases the leases of a dead one instead of waiting for them to expire.
A paced run's deliveries name their pace, and each (run, server) lane
keeps the time its next post may go. Deliveries queued before this
revision keep no pace (their due times stay floors, as they were).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e5b81c3d9f42'
down_revision: str | None = 'cd5239e37bf2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'delivery_worker',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_s', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_worker')),
    )
    op.create_table(
        'delivery_pace',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('interval_s', sa.Float(), nullable=False),
        sa.Column('next_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', 'host', name=op.f('pk_delivery_pace')),
    )
    op.create_index('ix_delivery_pace_next_at', 'delivery_pace', ['next_at'], unique=False)
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pace_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_column('pace_id')
    op.drop_index('ix_delivery_pace_next_at', table_name='delivery_pace')
    op.drop_table('delivery_pace')
    op.drop_table('delivery_worker')

"""publication states, the target's software on runs, job leases

Revision ID: c41f7a2d9e18
Revises: 4f2a9c1d7e60
Create Date: 2026-12-07 12:00:00

Publications already stored start as `queued`: the publication job reads
their deliveries and moves them on (their runs name no software, so a
delivered one becomes `unverifiable`; a new backfill run records the
target's software and confirms what it sends).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c41f7a2d9e18'
down_revision: str | None = '4f2a9c1d7e60'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_ROWS = "state IN ('waiting', 'queued', 'sent', 'missing')"


def upgrade() -> None:
    op.create_table(
        'job_lease',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('holder', sa.String(length=128), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_job_lease')),
    )
    with op.batch_alter_table('backfill_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('software', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('version', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('unverifiable', sa.Text(), nullable=True))
    with op.batch_alter_table('publication', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('state', sa.String(length=16), server_default='queued', nullable=False)
        )
        batch_op.add_column(sa.Column('reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sends', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('checks', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_publication_parent', ['parent_id'], unique=False)
        batch_op.create_index(
            'ix_publication_open',
            ['state', 'due_at'],
            unique=False,
            sqlite_where=sa.text(OPEN_ROWS),
            postgresql_where=sa.text(OPEN_ROWS),
        )


def downgrade() -> None:
    with op.batch_alter_table('publication', schema=None) as batch_op:
        batch_op.drop_index('ix_publication_open')
        batch_op.drop_index('ix_publication_parent')
        for column in (
            'confirmed_at', 'sent_at', 'checks', 'sends', 'due_at', 'reason', 'state', 'parent_id'
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table('backfill_run', schema=None) as batch_op:
        batch_op.drop_column('unverifiable')
        batch_op.drop_column('version')
        batch_op.drop_column('software')
    op.drop_table('job_lease')

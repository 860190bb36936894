"""the base URL the database belongs to, admin page sessions

Revision ID: cd5239e37bf2
Revises: c41f7a2d9e18
Create Date: 2026-12-07 14:00:00

`instance` holds one row: the base URL the database was initialised with,
so that `mirror init` and `mirror serve` refuse a config naming another
one. A database that already published activities gets the base URL their
ids are built on; one that has not is recorded by the next `init` or
`serve`. `admin_session` holds the admin page's sessions (a digest of each
cookie's secret, and when it expires).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'cd5239e37bf2'
down_revision: str | None = 'c41f7a2d9e18'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'admin_session',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_session')),
        sa.UniqueConstraint('digest', name=op.f('uq_admin_session_digest')),
    )
    with op.batch_alter_table('admin_session', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_admin_session_expires_at'), ['expires_at'], unique=False
        )
    instance = op.create_table(
        'instance',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('base_url', sa.String(length=2048), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('id = 1', name=op.f('ck_instance_one_row')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_instance')),
    )
    base_url, recorded_at = _published_base_url()
    if base_url is not None:
        op.bulk_insert(instance, [{'id': 1, 'base_url': base_url, 'recorded_at': recorded_at}])


def _published_base_url() -> tuple[str | None, object]:
    """The base URL of the first activity published (its id is BASE/activities/ID)."""
    activity = sa.table(
        'activity',
        sa.column('id', sa.String()),
        sa.column('json', sa.JSON()),
        sa.column('created_at', sa.DateTime(timezone=True)),
    )
    row = op.get_bind().execute(
        sa.select(activity.c.id, activity.c.json, activity.c.created_at)
        .order_by(activity.c.created_at)
        .limit(1)
    ).first()
    if row is None:
        return None, None
    published = row.json.get('id') if isinstance(row.json, dict) else None
    suffix = f'/activities/{row.id}'
    if not isinstance(published, str) or not published.endswith(suffix):
        return None, None
    return published[: -len(suffix)], row.created_at


def downgrade() -> None:
    op.drop_table('instance')
    with op.batch_alter_table('admin_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_session_expires_at'))
    op.drop_table('admin_session')

"""claim indexes: a host's due rows in order, and its leased rows; a row per host

Revision ID: 5b2e1f0c7a91
Revises: 31f8c52c9773
Create Date: 2026-12-02 04:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b2e1f0c7a91"
down_revision: str | None = "31f8c52c9773"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Claims now look for work through delivery_host, so every host with
    # deliveries needs its row (enqueue creates them from now on).
    op.execute(
        "INSERT INTO delivery_host (host, consecutive_failures) "
        "SELECT DISTINCT host, 0 FROM delivery "
        "WHERE host NOT IN (SELECT host FROM delivery_host)"
    )
    op.create_index(
        "ix_delivery_host_due", "delivery", ["host", "state", "next_attempt_at", "id"]
    )
    op.create_index(
        "ix_delivery_leased",
        "delivery",
        ["host", "locked_until"],
        sqlite_where=sa.text("locked_by IS NOT NULL"),
        postgresql_where=sa.text("locked_by IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_leased", table_name="delivery")
    op.drop_index("ix_delivery_host_due", table_name="delivery")

"""partial queue indexes: only rows still to send (and parked ones) are indexed

Revision ID: 8c41d7e2b5a3
Revises: ae585268710a
Create Date: 2026-12-02 15:00:00

Marking a row delivered no longer writes entries into three indexes of the
queue: on PostgreSQL that update was a fifth of a delivery's cost in the
database server.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8c41d7e2b5a3"
down_revision: str | None = "ae585268710a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_ROWS = "state = 'pending'"
OUTSTANDING_ROWS = "state IN ('pending', 'parked')"


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.drop_index("ix_delivery_due", table_name="delivery")
    op.drop_index("ix_delivery_order", table_name="delivery")
    op.drop_index("ix_delivery_host_due", table_name="delivery")
    op.create_index(
        "ix_delivery_pending_due", "delivery", ["next_attempt_at"], **_where(PENDING_ROWS)
    )
    op.create_index(
        "ix_delivery_outstanding_order",
        "delivery",
        ["host", "ordering_key", "id"],
        **_where(OUTSTANDING_ROWS),
    )
    op.create_index(
        "ix_delivery_host_pending",
        "delivery",
        ["host", "next_attempt_at", "id"],
        **_where(PENDING_ROWS),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_host_pending", table_name="delivery")
    op.drop_index("ix_delivery_outstanding_order", table_name="delivery")
    op.drop_index("ix_delivery_pending_due", table_name="delivery")
    op.create_index(
        "ix_delivery_host_due", "delivery", ["host", "state", "next_attempt_at", "id"]
    )
    op.create_index("ix_delivery_order", "delivery", ["host", "ordering_key", "id"])
    op.create_index("ix_delivery_due", "delivery", ["state", "next_attempt_at"])

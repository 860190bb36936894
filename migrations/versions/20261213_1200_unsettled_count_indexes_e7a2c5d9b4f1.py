"""unsettled count indexes: operator counts read only rows not yet delivered or confirmed

Revision ID: e7a2c5d9b4f1
Revises: c9e4a1b7d2f5
Create Date: 2026-12-13 12:00:00

`mirror status`, the admin page and /metrics counted every delivery and
publication by state (a scan of a million rows takes most of a second on
SQLite). Delivered deliveries and confirmed publications, the bulk, are
now the table's count less the others, which these partial indexes hold
(covering what the counts read, so no row is visited).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7a2c5d9b4f1"
down_revision: str | None = "c9e4a1b7d2f5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSENT_ROWS = "state != 'delivered'"
UNCONFIRMED_ROWS = "state != 'confirmed'"


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_index(
        "ix_delivery_unsent",
        "delivery",
        ["state", "attempts", "locked_until"],
        **_where(UNSENT_ROWS),
    )
    op.create_index(
        "ix_publication_unconfirmed",
        "publication",
        ["state", "run_id", "kind", "reason", "due_at", "item_id"],
        **_where(UNCONFIRMED_ROWS),
    )


def downgrade() -> None:
    op.drop_index("ix_publication_unconfirmed", table_name="publication")
    op.drop_index("ix_delivery_unsent", table_name="delivery")

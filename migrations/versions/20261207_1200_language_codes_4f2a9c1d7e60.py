"""language codes: items store Lemmy's code, and the name the page showed beside it

Revision ID: 4f2a9c1d7e60
Revises: b7d30e9a4c15
Create Date: 2026-12-07 12:00:00

Earlier versions stored the language as the page printed it ("English")
in `language`, and sent that name where Lemmy puts a code (PieFed answers
500: it keeps the identifier in a varchar(5)). Now `language` holds Lemmy's
code ("en") and the new `language_name` the name as the page showed it.
Stored posts and comments move over: the name goes to `language_name`,
`language` becomes its code by `mirror.vocab.languages.code_for` (the
ingest's own mapping; NULL for a name not in Lemmy's list, which keeps
its name). Provenance records (observation.data) that say a language get
the same two keys as new ones. Downgrade puts the names back.
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "4f2a9c1d7e60"
down_revision: str | None = "b7d30e9a4c15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ITEMS = ("post", "comment")
BATCH = 1000


def _observations(conn: sa.Connection, change: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite the provenance records that mention a language, a page at a time."""
    observation = sa.table("observation", sa.column("id"), sa.column("data", sa.JSON))
    page = (
        sa.select(observation.c.id, observation.c.data)
        .where(sa.cast(observation.c.data, sa.Text).like('%"language%'))
        .where(observation.c.id > sa.bindparam("after"))
        .order_by(observation.c.id)
        .limit(BATCH)
    )
    after = 0
    while rows := conn.execute(page, {"after": after}).all():
        after = rows[-1].id
        for row in rows:
            data = dict(row.data)
            if change(data):
                conn.execute(
                    observation.update().where(observation.c.id == row.id).values(data=data)
                )


def upgrade() -> None:
    from mirror.vocab.languages import code_for

    for table in ITEMS:
        op.add_column(table, sa.Column("language_name", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    for table in ITEMS:
        conn.execute(
            sa.text(
                f"UPDATE {table} SET language_name = language, language = NULL"
                " WHERE language IS NOT NULL"
            )
        )
        names = conn.execute(
            sa.text(f"SELECT DISTINCT language_name FROM {table} WHERE language_name IS NOT NULL")
        ).scalars()
        for name in list(names):
            code = code_for(name)
            if code is not None:
                conn.execute(
                    sa.text(f"UPDATE {table} SET language = :code WHERE language_name = :name"),
                    {"code": code, "name": name},
                )

    def to_codes(data: dict[str, Any]) -> bool:
        if "language" not in data or "language_name" in data:
            return False
        # Keys in the order a new record has them: language, then language_name.
        name = data["language"]
        code = code_for(name)
        rebuilt: dict[str, Any] = {}
        for key, value in data.items():
            if key == "language":
                if code is not None:
                    rebuilt["language"] = code
                rebuilt["language_name"] = name
            else:
                rebuilt[key] = value
        data.clear()
        data.update(rebuilt)
        return True

    _observations(conn, to_codes)


def downgrade() -> None:
    conn = op.get_bind()
    for table in ITEMS:
        conn.execute(sa.text(f"UPDATE {table} SET language = language_name"))

    def to_names(data: dict[str, Any]) -> bool:
        if "language_name" not in data:
            return False
        rebuilt: dict[str, Any] = {}
        for key, value in data.items():
            if key == "language_name":
                rebuilt["language"] = value
            elif key != "language":
                rebuilt[key] = value
        data.clear()
        data.update(rebuilt)
        return True

    _observations(conn, to_names)
    for table in ITEMS:
        # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch rebuild: that drops
        # and recreates `post`, which the comments' foreign keys forbid.
        op.drop_column(table, "language_name")

"""fragments of multi-paragraph comments: index rows that earlier versions left out

Revision ID: b7d30e9a4c15
Revises: 8c41d7e2b5a3
Create Date: 2026-12-03 15:00:00

Data only. Earlier versions wrote no paragraph fragments for a sure
comment with a single paragraph long enough to be hashed, even when it had
other, shorter paragraphs; a later low-confidence piece holding only that
paragraph then did not find the comment (it does when the piece came
first). Fragments are written for such comments now (ingest, store.py
`_write_paragraphs`, by `mirror.ingest.rows.needs_fragments`); this adds
the missing ones, by the same rule and the ingest's own hashes
(`mirror.ingest.rows.paragraph_hashes`), stable by contract:
ids are made the same way. Nothing to undo on downgrade: the rows are
valid index rows for every version.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7d30e9a4c15"
down_revision: str | None = "8c41d7e2b5a3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    from mirror.ingest.rows import needs_fragments, paragraph_hashes

    conn = op.get_bind()
    fragment = sa.table("fragment", sa.column("para_hash"), sa.column("kind"), sa.column("item_id"))
    page = sa.text(
        "SELECT id, body FROM comment WHERE confidence <> 'low' AND body IS NOT NULL"
        " AND id > :after ORDER BY id LIMIT :size"
    )
    after = ""
    # A page of comments at a time: bodies are most of a database.
    while comments := conn.execute(page, {"after": after, "size": BATCH}).all():
        after = comments[-1][0]
        wanted = {
            (h, item_id)
            for item_id, body in comments
            if needs_fragments(body, low=False)
            for h in paragraph_hashes(body)
        }
        if not wanted:
            continue
        have = {
            (h, item_id)
            for h, item_id in conn.execute(
                sa.select(fragment.c.para_hash, fragment.c.item_id).where(
                    fragment.c.kind == "comment",
                    fragment.c.item_id.in_({item_id for _, item_id in wanted}),
                )
            )
        }
        missing = [
            {"para_hash": h, "kind": "comment", "item_id": item_id}
            for h, item_id in sorted(wanted - have)
        ]
        if missing:
            conn.execute(fragment.insert(), missing)


def downgrade() -> None:
    pass

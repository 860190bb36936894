"""Bulk inserts at driver speed, with the columns' own type conversions.

SQLAlchemy's ``execute(insert(table), rows)`` processes every parameter of
every row through several layers; for tens of thousands of rows that
dominates. Here the statement text is built once per (table, columns,
conflict rule) and rows go to the driver's ``executemany`` as tuples,
converted by the same bind processors SQLAlchemy would use, so what lands
in the database is identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

Row = dict[str, Any]


def bulk_insert(
    connection: sa.Connection,
    table: sa.Table,
    rows: Sequence[Row],
    *,
    ignore_conflicts: bool = False,
    update_on: str | None = None,
    update: Sequence[str] = (),
) -> None:
    """Insert ``rows`` (dicts keyed by column name; missing keys are NULL).

    ``ignore_conflicts`` skips rows that violate a unique constraint;
    ``update_on``/``update`` turn a conflict on that key into an update of
    those columns. Both are the same SQL on SQLite and PostgreSQL.
    """
    if not rows:
        return
    keys = tuple(c.key for c in table.c if c.key in rows[0] or any(c.key in r for r in rows))
    conflict = (
        f" ON CONFLICT ({update_on}) DO UPDATE SET "
        + ", ".join(f"{col} = excluded.{col}" for col in update)
        if update_on
        else " ON CONFLICT DO NOTHING"
        if ignore_conflicts
        else ""
    )
    sql, processors = _plan(connection.dialect, table, keys, conflict)
    converted = [(n, process) for n, process in enumerate(processors) if process is not None]
    params = []
    for row in rows:
        values = [row.get(key) for key in keys]
        for n, process in converted:
            values[n] = process(values[n])
        params.append(tuple(values))
    connection.exec_driver_sql(sql, params)  # type: ignore[arg-type]


@lru_cache(maxsize=256)
def _plan(
    dialect: Dialect, table: sa.Table, keys: tuple[str, ...], conflict: str
) -> tuple[str, list[Any]]:
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    columns = [table.c[key] for key in keys]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(keys)}) "
        f"VALUES ({', '.join([mark] * len(keys))}){conflict}"
    )
    processors = [col.type.dialect_impl(dialect).bind_processor(dialect) for col in columns]
    return sql, processors

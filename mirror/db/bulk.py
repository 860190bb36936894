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


def execute_many(
    connection: sa.Connection,
    statement: sa.Executable,
    rows: Sequence[Row],
    common: Row | None = None,
) -> None:
    """Run one statement for many parameter sets at driver speed.

    ``rows`` hold each run's own values, ``common`` the ones shared by all
    (converted once, not once per row); binds given in neither take the
    statement's own values. For a statement that is built once and run
    with hundreds of rows per second (the delivery queue's lease and
    record), SQLAlchemy's per-row parameter processing was most of its cost.
    """
    if not rows:
        return
    names, positional, defaults, processors = _compiled_plan(connection.dialect, statement)
    shared = dict(defaults)
    for name, value in (common or {}).items():
        process = processors.get(name)
        shared[name] = process(value) if process is not None else value
    per_row = [(name, processors.get(name)) for name in rows[0]]
    params: list[Any] = []
    for row in rows:
        values = dict(shared)
        for name, process in per_row:
            value = row[name]
            values[name] = process(value) if process is not None and value is not None else value
        params.append(tuple(values[n] for n in names) if positional else values)
    sql = _compiled_sql(connection.dialect, statement)
    connection.exec_driver_sql(sql, params)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _compiled_plan(
    dialect: Dialect, statement: sa.Executable
) -> tuple[tuple[str, ...], bool, Row, dict[str, Any]]:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    raw = compiled.construct_params({}, _check=False)
    processors = {}
    for name in raw:
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    defaults = {
        name: processors[name](value) if name in processors and value is not None else value
        for name, value in raw.items()
    }
    positional = compiled.positiontup is not None
    names = tuple(compiled.positiontup) if positional else tuple(raw)
    return names, positional, defaults, processors


@lru_cache(maxsize=64)
def _compiled_sql(dialect: Dialect, statement: sa.Executable) -> str:
    return str(statement.compile(dialect=dialect))  # type: ignore[attr-defined]

"""Bulk inserts at driver speed, with the columns' own type conversions.

SQLAlchemy's ``execute(insert(table), rows)`` processes every parameter of
every row through several layers; for tens of thousands of rows that
dominates. Here the statement text is built once per (table, columns,
conflict rule) and rows go to the driver's ``executemany`` as tuples,
converted by the same bind processors SQLAlchemy would use, so what lands
in the database is identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

Row = dict[str, Any]


class JSONText(str):
    """A JSON document already serialised (where it was built): stored as it is."""


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
    present = set().union(*rows)
    keys = tuple(c.key for c in table.c if c.key in present)
    conflict = (
        f" ON CONFLICT ({update_on}) DO UPDATE SET "
        + ", ".join(f"{col} = excluded.{col}" for col in update)
        if update_on
        else " ON CONFLICT DO NOTHING"
        if ignore_conflicts
        else ""
    )
    sql, processors = _plan(connection.dialect, table, keys, conflict)
    # itemgetter reads a row's values in C; rows without some keys take the slow way.
    take = itemgetter(*keys) if len(keys) > 1 else lambda row: (row[keys[0]],)
    try:
        params = list(map(take, rows))
    except KeyError:
        params = [tuple(row.get(key) for key in keys) for row in rows]
    if any(process for process, _ in processors):
        # Column by column: rows of a batch share most of their converted
        # values (its times, flags), each distinct one converted once.
        columns = list(zip(*params, strict=True))
        for n, (process, documents) in enumerate(processors):
            if process is not None:
                # A JSON document is never repeated (nor hashable).
                convert = process if documents else _memoized(process)
                columns[n] = tuple(map(convert, columns[n]))
        params = list(zip(*columns, strict=True))
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
    processors = []
    for col in columns:
        process = col.type.dialect_impl(dialect).bind_processor(dialect)
        documents = isinstance(col.type, sa.JSON)
        if documents and process is not None:
            process = _keeping_text(process)
        processors.append((process, documents))
    return sql, processors


def _keeping_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        # As a plain str: a subclass would go through sqlite3's adapters.
        return str(value) if isinstance(value, JSONText) else process(value)

    return convert


def rows_table(
    dialect: Dialect, columns: Mapping[str, TypeEngine[Any]], name: str = "v"
) -> sa.FromClause:
    """Many rows as one table in a statement, passed as one parameter set.

    ``UPDATE t SET ... FROM rows_table(...) AS v WHERE t.id = v.id`` changes
    a batch of rows, each its own way, in one statement: an executemany of
    hundreds of single-row UPDATEs cost a round trip (PostgreSQL) and a
    statement execution each. PostgreSQL takes the columns as arrays
    (``unnest``), SQLite as one JSON array of rows (``json_each``); fill the
    parameters with :func:`rows_params`.
    """
    if dialect.name == "postgresql":
        arrays = (
            sa.bindparam(f"rows_{column}", type_=postgresql.ARRAY(kind))
            for column, kind in columns.items()
        )
        shape = (sa.column(column, kind) for column, kind in columns.items())
        return sa.func.unnest(*arrays).table_valued(*shape).render_derived(name=name)
    each = sa.func.json_each(sa.bindparam("rows", type_=sa.Text())).table_valued("value")
    return sa.select(
        *(
            # type_coerce, not CAST: SQLite would turn a stored time into a number.
            sa.type_coerce(
                sa.func.json_extract(each.c.value, sa.literal_column(f"'$[{n}]'")), kind
            ).label(column)
            for n, (column, kind) in enumerate(columns.items())
        )
    ).subquery(name)


def rows_params(
    dialect: Dialect, columns: Mapping[str, TypeEngine[Any]], rows: Sequence[Row]
) -> Row:
    """The parameters that carry ``rows`` into :func:`rows_table`'s table."""
    if dialect.name == "postgresql":
        return {f"rows_{column}": [row[column] for row in rows] for column in columns}
    # Inside JSON the driver converts nothing: store what the columns' own
    # bind processors would (a time as SQLite's stored text). A batch's rows
    # mostly share their times (the batch's "now"): each distinct value is
    # converted once.
    converters = []
    for column, kind in columns.items():
        process = kind.dialect_impl(dialect).bind_processor(dialect)
        converters.append((column, _memoized(process) if process is not None else None))
    return {
        "rows": json.dumps(
            [
                [
                    convert(row[column]) if convert and row[column] is not None else row[column]
                    for column, convert in converters
                ]
                for row in rows
            ]
        )
    }


def _memoized(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process``, remembering its results: a dict lookup in C for a value seen before."""
    return _Results(process).__getitem__


class _Results(dict[Any, Any]):
    __slots__ = ("process",)

    def __init__(self, process: Callable[[Any], Any]) -> None:
        super().__init__()
        self.process = process

    def __missing__(self, value: Any) -> Any:
        self[value] = converted = self.process(value)
        return converted


def mostly_true(dialect: Dialect, condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """A filter that holds for nearly every row it meets (a batch's rows re-checked).

    Without statistics SQLite takes any indexed equality for selective and
    would walk an index of every pending delivery instead of looking up the
    batch's rows by id; ``likelihood`` tells it otherwise. PostgreSQL's
    statistics already say so.
    """
    if dialect.name == "sqlite":
        return sa.func.likelihood(condition, sa.literal_column("0.9"), type_=sa.Boolean())
    return condition

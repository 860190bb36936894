"""`mirror inspect --json` as a stream: the document of build_document, written a page at a time.

The same bytes as ``json.dump(build_document(engine), out, ensure_ascii=False,
indent=2)``, but each list is read by keyset pagination (authors by handle,
posts and comments by id, the orders the document has) and each item is
written as soon as it is shaped, so memory is one page whatever the
archive's size.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db.models import Author, Comment, Community, Observation, Post
from mirror.inspection import (
    Doc,
    Shapes,
    aliases_of,
    author_fields,
    community_fields,
    items_query,
    sources_query,
)

#: Rows read per page.
PAGE = 500
#: Bound parameters per IN list (SQLite allows 32,766; PostgreSQL 65,535).
IN_BATCH = 900
_INDENT = "    "  # an item's depth in the document (indent=2, two levels down)


def write_document(engine: Engine, out: TextIO, *, page: int = PAGE) -> None:
    """Write the reconstruction's JSON document to ``out``, a page at a time."""
    with engine.connect() as conn:
        # Communities are few (each item's shape names its community), so read whole.
        communities = {r.id: r for r in conn.execute(sa.select(Community).order_by(Community.id))}
        out.write("{")
        _write_list(out, "communities", (community_fields(c) for c in communities.values()))
        out.write(",")
        _write_list(out, "authors", (author_fields(a) for a in _authors(conn, page)))
        out.write(",")
        _write_list(out, "posts", _items(conn, Post, communities, page))
        out.write(",")
        _write_list(out, "comments", _items(conn, Comment, communities, page))
        out.write("\n}")


def _write_list(out: TextIO, key: str, items: Iterator[Doc]) -> None:
    # json.dump's indent=2 layout: an empty list stays "[]" on the key's line.
    out.write(f"\n  {json.dumps(key)}: [")
    empty = True
    for item in items:
        out.write("\n" if empty else ",\n")
        empty = False
        text = json.dumps(item, ensure_ascii=False, indent=2)
        out.write(_INDENT + text.replace("\n", "\n" + _INDENT))
    out.write("]" if empty else "\n  ]")


def _keyset(
    conn: sa.Connection, query: sa.Select[Any], key: sa.ColumnElement[str], page: int
) -> Iterator[list[Any]]:
    """The query's rows in pages of ``page``, each after the last key of the one before."""
    after: str | None = None
    while True:
        rows = conn.execute(
            (query if after is None else query.where(key > after)).limit(page)
        ).all()
        if not rows:
            return
        after = rows[-1]._mapping[key.key]
        yield rows


def _authors(conn: sa.Connection, page: int) -> Iterator[Any]:
    query = sa.select(Author).order_by(Author.handle)
    for rows in _keyset(conn, query, Author.handle, page):
        yield from rows


def _items(
    conn: sa.Connection, model: type[Post] | type[Comment], communities: dict[str, Any], page: int
) -> Iterator[Doc]:
    for rows in _keyset(conn, items_query(model, texts=True), model.id, page):
        shape = _shapes(conn, communities, rows)
        for row in rows:
            yield shape.post(row) if model is Post else shape.comment(row)


def _shapes(conn: sa.Connection, communities: dict[str, Any], rows: Sequence[Any]) -> Shapes:
    """Shapes knowing the authors, aliases and sources of these rows only."""
    authors: dict[str, str] = {}
    aliases: dict[str, list[str]] = defaultdict(list)
    sources: dict[str, list[Doc]] = defaultdict(list)
    for batch in _batches(sorted({r.author_id for r in rows if r.author_id})):
        authors.update(
            conn.execute(sa.select(Author.id, Author.handle).where(Author.id.in_(batch))).all()
        )
    for batch in _batches([r.id for r in rows]):
        for target, found in aliases_of(conn, batch).items():
            aliases[target].extend(found)
        for item_id, found in sources_of(conn, batch).items():
            sources[item_id].extend(found)
    return Shapes(communities, authors, aliases, sources, texts=True)


def sources_of(conn: sa.Connection, of: Sequence[str]) -> dict[str, list[Doc]]:
    """Where each of these items was seen, in the document's order."""
    out: dict[str, list[Doc]] = defaultdict(list)
    for item_id, name, first, last in conn.execute(
        sources_query().where(Observation.item_id.in_(of))
    ):
        out[item_id].append({"file": name, "first_line": first, "last_line": last})
    return out


def _batches(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), IN_BATCH):
        yield values[start : start + IN_BATCH]

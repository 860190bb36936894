"""OrderedCollections: outboxes and followers, paged newest first."""

from __future__ import annotations

from typing import Any

from mirror.vocab.context import AS


def build_collection(
    collection_id: str, *, total: int, first: str | None = None, items: list[Any] | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": AS,
        "id": collection_id,
        "type": "OrderedCollection",
        "totalItems": total,
    }
    if first is not None:
        document["first"] = first
    if items is not None:
        document["orderedItems"] = items
    return document


def build_page(
    page_id: str,
    *,
    part_of: str,
    items: list[Any],
    next_page: str | None,
    prev_page: str | None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": AS,
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": part_of,
        "orderedItems": items,
    }
    if next_page:
        document["next"] = next_page
    if prev_page:
        document["prev"] = prev_page
    return document

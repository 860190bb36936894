"""Data flows one way: reconstruct is pure and imports nothing from the layers above."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# layer -> packages it must not import
FORBIDDEN = {
    "mirror/reconstruct": ("mirror.db", "mirror.ingest", "mirror.cli", "sqlalchemy", "aiohttp"),
    "mirror/db": ("mirror.ingest", "mirror.cli", "aiohttp"),
    "mirror/ingest": ("mirror.cli", "aiohttp"),
    # JSON-LD shapes only: no database, no HTTP, nothing of the layers that use them.
    "mirror/vocab": ("mirror.db", "mirror.delivery", "mirror.publish", "sqlalchemy", "aiohttp"),
    # The queue knows activities and inboxes, not backfills or the service.
    "mirror/delivery": ("mirror.publish", "mirror.server", "mirror.cli", "mirror.sandbox"),
    "mirror/publish": ("mirror.server", "mirror.cli", "mirror.sandbox"),
    # The sandbox is another server: it shares nothing with ours but its own rules.
    "mirror/sandbox": (
        "mirror.db",
        "mirror.delivery",
        "mirror.federation",
        "mirror.publish",
        "mirror.signatures",
        "mirror.server",
        "mirror.vocab",
    ),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_lower_layers_do_not_import_upper_ones() -> None:
    problems = []
    for folder, forbidden in FORBIDDEN.items():
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imports(path):
                if name.startswith(forbidden):
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []

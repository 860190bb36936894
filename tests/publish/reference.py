"""The planner's output frozen as a fixture: what a backfill plans, in order, on known corpora.

Each corpus (the bundled samples; the five seeds) is ingested into a fresh
SQLite file, planned for two kinds of target (a Lemmy community, and one of
our hosted Groups, which takes no comments of unknown posts), and written as
one line per planned item: kind, id, the item it replies to, and a hash of
the object it would publish. `tests/publish/test_reference.py` plans the
same corpora again and compares; rewrite the fixture only on purpose:

    .venv/bin/python -m tests.publish.reference --write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mirror.clock import FrozenClock
from mirror.config import load_settings
from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.ingest.files import ingest_paths
from mirror.publish.plan import Item
from mirror.publish.prepare import Builder
from mirror.publish.target import Target
from mirror.vocab.ids import Urls

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "plans" / "reference.json"
#: The 50 MB benchmark corpus's plan: counts and a hash (its 30,000 lines are 2 MB).
BENCH_FIXTURE = FIXTURE.with_name("bench50.json")
CORPORA = {
    "samples": ROOT / "mirror" / "samples",
    "seeds": ROOT.parent / "shared" / "seeds",
}
CAPTURED = datetime(2025, 7, 28, 12, 0, tzinfo=UTC)
BASE = "https://mirror.example"
TARGETS = {
    "lemmy": Target(
        id="https://lemmy.example/c/sandbox",
        name="sandbox",
        inbox="https://lemmy.example/inbox",
        followers=None,
        posting_restricted_to_mods=False,
        software="lemmy",
        version="0.19.9",
    ),
    "hosted": Target(
        id=f"{BASE}/c/archive",
        name="archive",
        inbox=f"{BASE}/c/archive/inbox",
        followers=None,
        posting_restricted_to_mods=False,
        software="fedimirror",
        version=None,
        hosted="archive",
    ),
}
#: What a planner is asked: the engine and the target; it gives the items in order
#: (without bodies is fine: they are read here), and what it left out.
Planner = Callable[[sa.Engine, Target], tuple[Iterable[Item], dict[str, int]]]


def ingest(engine: sa.Engine, folder: Path) -> None:
    paths = sorted(folder.glob("*.txt"))
    clock = FrozenClock(CAPTURED)
    reports = list(ingest_paths(engine, paths, clock=clock, captured_at=CAPTURED))
    assert paths and all(r.ok for r in reports), [r.error for r in reports if not r.ok]


def planned(engine: sa.Engine, target: Target, planner: Planner) -> dict[str, Any]:
    """Every planned item as [kind, id, replies to, sha256 of its object], and left_out."""
    from mirror.publish.backfill import _with_bodies

    settings = load_settings(env={})
    items, left_out = planner(engine, target)
    out = []
    with engine.connect() as conn:
        builder = Builder(
            conn,
            settings=settings,
            urls=Urls.from_base_url(BASE),
            master_key=None,  # type: ignore[arg-type]  # no actor is made
            target=target,
            now=CAPTURED,
        )
        for item in _with_bodies(conn, list(items)):
            prepared = builder.prepare(item, CAPTURED, create_actors=False)
            digest = hashlib.sha256(
                json.dumps(prepared.document, sort_keys=True).encode()
            ).hexdigest()[:16]
            out.append([item.kind, item.id, item.reply_to, digest])
    return {"items": out, "left_out": dict(sorted(left_out.items()))}


def reference(planner: Planner, corpora: Iterable[str] = CORPORA) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in corpora:
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{folder}/mirror.db")
            try:
                migrate.upgrade(engine)
                ingest(engine, CORPORA[name])
                result[name] = {
                    kind: planned(engine, target, planner) for kind, target in TARGETS.items()
                }
            finally:
                engine.dispose()
    return result


def digest(engine: sa.Engine, planner: Planner) -> dict[str, Any]:
    """A big corpus's plan, too long for a fixture: per target, the count and one hash."""
    out = {}
    for kind, target in TARGETS.items():
        plan = planned(engine, target, planner)
        rows = "\n".join(json.dumps(row) for row in plan["items"])
        out[kind] = {
            "items": len(plan["items"]),
            "sha256": hashlib.sha256(rows.encode()).hexdigest(),
            "left_out": plan["left_out"],
        }
    return out


def document_planner(engine: sa.Engine, target: Target) -> tuple[list[Item], dict[str, int]]:
    """Today's planner: the outline, then build_plan (hosted: without the orphans)."""
    from mirror.inspection import build_outline
    from mirror.publish.plan import Options, build_plan
    from mirror.publish.start import without_orphans

    plan = build_plan(build_outline(engine), Options())
    if target.hosted:
        plan = without_orphans(plan)
    return plan.items, plan.left_out


def dump(frozen: dict[str, Any]) -> str:
    """JSON with one planned item a line (the fixture's diffs then read item by item)."""
    lines = ["{"]
    for n, (name, kinds) in enumerate(frozen.items()):
        lines.append(f"{json.dumps(name)}: {{")
        for k, (kind, plan) in enumerate(kinds.items()):
            lines.append(f'{json.dumps(kind)}: {{"left_out": {json.dumps(plan["left_out"])},')
            lines.append('"items": [')
            rows = [json.dumps(row) for row in plan["items"]]
            lines.append(",\n".join(rows))
            lines.append("]}" + ("," if k < len(kinds) - 1 else ""))
        lines.append("}" + ("," if n < len(frozen) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the fixture")
    parser.add_argument(
        "--corpus-db",
        type=Path,
        help="an ingested benchmark corpus (benchmarks/backfill.py --keep DIR: "
        "DIR/backfill-template.db): its digest goes to " + str(BENCH_FIXTURE.name),
    )
    args = parser.parse_args()
    if args.corpus_db:
        engine = make_engine(f"sqlite:///{args.corpus_db}")
        try:
            frozen_digest = digest(engine, document_planner)
        finally:
            engine.dispose()
        if args.write:
            BENCH_FIXTURE.write_text(json.dumps(frozen_digest, indent=1) + "\n")
        print(json.dumps(frozen_digest, indent=1))
        return
    missing = [name for name, folder in CORPORA.items() if not folder.is_dir()]
    if missing:
        raise SystemExit(f"not here: {', '.join(str(CORPORA[m]) for m in missing)}")
    frozen = reference(document_planner)
    if args.write:
        FIXTURE.write_text(dump(frozen))
    for name, kinds in frozen.items():
        for kind, plan in kinds.items():
            print(f"{name} {kind}: {len(plan['items'])} items, left out {plan['left_out']}")


if __name__ == "__main__":
    main()


def stream_planner(engine: sa.Engine, target: Target) -> tuple[list[Item], dict[str, int]]:
    """The streaming planner (mirror.publish.stream), in small pages to cross many chunks."""
    from mirror.publish.plan import Options
    from mirror.publish.stream import Progress, walk

    options = Options()
    items: list[Item] = []
    progress: dict[str, Any] = {}
    with engine.connect() as conn:
        for chunk in walk(conn, options, orphans=not target.hosted, page=3):
            items.extend(chunk.items)
            progress = chunk.progress
    return items, Progress.of(progress).left_out(options)

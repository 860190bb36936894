"""`mirror ingest` and `mirror inspect`: the reconstruction, stored and shown."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from mirror.cli.wiring import EXIT_FAILED, EXIT_OK, UsageError, engine_for, federation_for
from mirror.clock import SystemClock
from mirror.config import Settings
from mirror.reconstruct import DumpKind


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.ingest.files import ingest_paths, sample_files

    paths: list[Path] = list(args.paths)
    if args.samples:
        paths.extend(sample_files())
    if not paths:
        raise UsageError("ingest needs at least one PATH, or --samples")
    engine = engine_for(settings)
    kind = DumpKind(args.format) if args.format else None
    reports = ingest_paths(
        engine, paths, clock=SystemClock(), kind=kind, captured_at=args.captured_at
    )
    if not reports:
        raise UsageError("no dump files found under " + ", ".join(str(p) for p in paths))

    console = Console(highlight=False)
    table = Table(title="ingest", show_lines=False)
    for column in ("file", "kind", "posts", "comments", "merged", "errors"):
        table.add_column(
            column, justify="right" if column in ("posts", "comments", "merged") else "left"
        )
    for report in reports:
        table.add_row(
            str(report.path),
            report.kind or "-",
            str(report.posts),
            str(report.comments),
            str(report.merged),
            report.error or "",
        )
    console.print(table)
    failed = [r for r in reports if not r.ok]
    for report in failed:
        print(f"mirror: refused {report.path}: {report.error}", file=sys.stderr)
    _queue_updates(settings, engine)
    return EXIT_FAILED if failed else EXIT_OK


def _queue_updates(settings: Settings, engine: Engine) -> None:
    """Mirrored items whose reconstruction the ingest changed get Updates."""
    from mirror.publish.refresh import has_publications, queue_updates

    if not settings.instance.base_url or not has_publications(engine):
        return
    federation = federation_for(settings)
    for report in queue_updates(federation):
        print(
            f"run {report.run_id}: {report.updated} changed mirrored items get an Update "
            f"to {report.target}; `mirror serve` or `mirror worker` delivers them"
        )


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from mirror.inspection import build_document, render_threads, summary

    document = build_document(engine_for(settings))
    if args.json:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    print(summary(document))
    print()
    for line in render_threads(document):
        print(line)
    return EXIT_OK

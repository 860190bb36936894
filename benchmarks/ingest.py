"""Ingest benchmark: parse and store a ~50 MB corpus built by varying the seed dumps.

Prints parse MB/s, ingest items/s into SQLite, and peak RSS (this process plus its ingest partner).
Targets: parse >= 20 MB/s, ingest >= 10,000 items/s, peak RSS < 300 MB. Each
measure is taken --runs times (the machines this was written on drift in
speed from minute to minute); the targets take the median, every run is printed.

    python benchmarks/ingest.py [--mb 50] [--seeds ../shared/seeds] [--keep DIR] [--runs 3]

Each variant of the five seeds gets its own hosts (so new handles and
communities) and its own texts (every paragraph's words rotated by the
variant number, the same way in every seed, so copies still merge).
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mirror.clock import SystemClock  # noqa: E402
from mirror.db import migrate  # noqa: E402
from mirror.db.session import make_engine  # noqa: E402
from mirror.ingest.files import ingest_paths  # noqa: E402
from mirror.reconstruct import decode, parse_dump  # noqa: E402

HOSTS = re.compile(r"\b(hexbear\.net|lemmy\.ml|lemmygrad\.ml)")
MARKER = re.compile(r"^\s*(\[–\]|submitted |this post|\d+$|•\s*\d|cross-posted from)")


def vary(text: str, n: int) -> str:
    """A new dump with the same structure, new hosts and new texts."""
    out = []
    for line in text.split("\n"):
        glued_header = any(word.count("@") > 1 for word in line.split())
        if len(line.strip()) > 40 and not MARKER.match(line) and not glued_header:
            indent = line[: len(line) - len(line.lstrip(" •"))]
            words = line[len(indent) :].split(" ")
            k = n % len(words)
            # The variant mark leads, so openings differ between variants.
            line = indent + f"v{n} " + " ".join(words[k:] + words[:k])
        out.append(line)
    return HOSTS.sub(lambda m: f"v{n}.{m.group(1)}", "\n".join(out))


def build_corpus(seeds: Path, folder: Path, megabytes: float) -> tuple[int, int]:
    texts = [(p.stem, p.read_text()) for p in sorted(seeds.glob("*.txt"))]
    if not texts:
        raise SystemExit(f"no seed dumps (*.txt) in {seeds}: pass --seeds")
    total = files = 0
    n = 0
    while total < megabytes * 1_000_000:
        for stem, text in texts:
            data = vary(text, n).encode()
            (folder / f"{n:05d}_{stem}.txt").write_bytes(data)
            total += len(data)
            files += 1
        n += 1
    return total, files


def _peak_rss_mb() -> float:
    """This process's peak RSS plus its ingest partner's (a forked child, reaped by now).

    A forked child's peak counts the pages it shares with this process, as
    each process's own RSS would.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + child) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=50.0, help="corpus size in MB")
    parser.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    parser.add_argument("--keep", type=Path, help="build the corpus here and keep it")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each measure; the targets take the median"
    )
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="fedimirror-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus"
    corpus.mkdir(exist_ok=True)
    size, count = build_corpus(args.seeds, corpus, args.mb)
    paths = sorted(corpus.glob("*.txt"))
    captured = datetime(2025, 7, 28, tzinfo=UTC)
    print(f"corpus: {count} files, {size / 1e6:.1f} MB in {corpus}")

    parse_rates: list[float] = []
    ingest_rates: list[float] = []
    for run in range(1, args.runs + 1):
        parse_s, parsed_items = _parse_all(paths, captured)
        stored, new, ingest_s = _ingest_all(folder / "bench.db", corpus, captured)
        parse_rates.append(size / 1e6 / parse_s)
        ingest_rates.append(stored / ingest_s)
        print(
            f"run {run}: parse {parse_rates[-1]:5.1f} MB/s ({parsed_items} items in "
            f"{parse_s:.2f} s); ingest {ingest_rates[-1]:7,.0f} items/s ({stored} items, "
            f"{new} new, {stored - new} merged, in {ingest_s:.2f} s, parse included)"
        )
    peak_mb = _peak_rss_mb()
    parse_rate, ingest_rate = statistics.median(parse_rates), statistics.median(ingest_rates)
    print(f"parse:  {parse_rate:8.1f} MB/s    (median of {args.runs} runs)")
    print(f"ingest: {ingest_rate:8,.0f} items/s (median of {args.runs} runs)")
    print(f"peak RSS: {peak_mb:6.0f} MB (this process and its ingest partner, each at its peak)")
    targets = [
        ("parse >= 20 MB/s", parse_rate >= 20),
        ("ingest >= 10,000 items/s", ingest_rate >= 10_000),
        ("peak RSS < 300 MB", peak_mb < 300),
    ]
    for name, ok in targets:
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    if args.keep is None:
        shutil.rmtree(folder)


def _parse_all(paths: list[Path], captured: datetime) -> tuple[float, int]:
    """Parse every dump (no database): seconds, items."""
    started = time.perf_counter()
    items = 0
    for path in paths:
        dump = parse_dump(decode(path.read_bytes()), captured_at=captured)
        items += len(dump.posts) + len(dump.comments)
    return time.perf_counter() - started, items


def _ingest_all(database: Path, corpus: Path, captured: datetime) -> tuple[int, int, float]:
    """Ingest the corpus into a new SQLite file: items stored, new ones, seconds."""
    for leftover in database.parent.glob(database.name + "*"):
        leftover.unlink()
    engine = make_engine(f"sqlite:///{database}")
    migrate.upgrade(engine)
    started = time.perf_counter()
    stored = new = 0
    for report in ingest_paths(engine, [corpus], clock=SystemClock(), captured_at=captured):
        if not report.ok:
            raise SystemExit(f"{report.path}: {report.error}")
        stored += report.posts + report.comments + report.merged
        new += report.posts + report.comments
    seconds = time.perf_counter() - started
    engine.dispose()
    return stored, new, seconds


if __name__ == "__main__":
    main()

"""Memory of a process and its descendants, read from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a worker's signing processes, an ingest's partner)."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            parents[int(proc.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree = [pid]
    for member in tree:
        tree.extend(child for child, parent in parents.items() if parent == member)
    return tree


def _status_mb(pid: int, field: str) -> float:
    """A /proc status figure summed over a process tree (shared pages count in each)."""
    total = 0.0
    for member in _tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS:")


def hwm_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")

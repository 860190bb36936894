"""What a backfill run reports: what it planned, queued, updated, held and left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mirror.publish.plan import Plan


@dataclass(slots=True)
class Report:
    run_id: int | None
    target: str
    planned: dict[str, int]
    queued: int = 0
    requeued: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    deliveries: int = 0
    #: Queued but held back: until their parent is confirmed, or a known limit passes.
    waiting: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    first: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "target": self.target,
            "planned": self.planned,
            "queued": self.queued,
            "requeued": self.requeued,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "deliveries": self.deliveries,
            "waiting": self.waiting,
            "left_out": self.left_out,
        }


def planned_counts(plan: Plan) -> dict[str, int]:
    return {
        "posts": plan.count("post"),
        "comments": plan.count("comment"),
        "followers_only": plan.count("orphan"),
    }

"""Prometheus metrics (prometheus-client), one registry per service.

Counters and histograms are updated where things happen (deliveries, the
inbox, key fetches); the queue's depth, the oldest due delivery, host
health and the stored items are read from the database at scrape time, so
they are right whichever process did the work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self, engine: Engine | None = None, now: Callable[[], datetime] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "mirror_deliveries",
            "Delivery attempts by outcome (delivered, retry, failed) and destination host.",
            ["outcome", "host"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "mirror_delivery_seconds",
            "Time from signing a delivery to its answer.",
            ["outcome"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.inbox_requests = Counter(
            "mirror_inbox_requests",
            "POSTs to our inboxes by verdict (accepted, or the HTTP status refused with).",
            ["verdict"],
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "mirror_signature_failures",
            "Inbox requests whose signature was refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.key_fetch_seconds = Histogram(
            "mirror_key_fetch_seconds",
            "Fetching a remote actor (its key), by result.",
            ["result"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        if engine is not None and now is not None:
            self.registry.register(DatabaseCollector(engine, now))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, engine: Engine, now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.now = now

    def describe(self) -> list[Any]:
        return []  # collected lazily; nothing to describe up front

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from mirror.db.models import Comment, Post
        from mirror.delivery import operate
        from mirror.publish import publications

        with self.engine.connect() as conn:
            report = operate.status(conn, self.now())
            published = publications.counts(conn)
            posts = conn.scalar(sa.select(sa.func.count()).select_from(Post))
            comments = conn.scalar(sa.select(sa.func.count()).select_from(Comment))
        depth = GaugeMetricFamily(
            "mirror_queue_depth",
            "Deliveries by state (as `mirror status` shows).",
            labels=["state"],
        )
        for state, count in report["deliveries"]["by_state"].items():
            depth.add_metric([state], count)
        yield depth
        yield GaugeMetricFamily(
            "mirror_oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has waited.",
            value=report["deliveries"]["oldest_due_age_s"],
        )
        breaker = GaugeMetricFamily(
            "mirror_host_breaker_state",
            "Circuit breaker per destination host: 0 closed, 1 half open, 2 open.",
            labels=["host"],
        )
        dead = GaugeMetricFamily(
            "mirror_host_dead", "1 when a destination host is marked dead.", labels=["host"]
        )
        for host in report["hosts"]:
            breaker.add_metric([host["host"]], BREAKER_VALUES[host["breaker"]])
            dead.add_metric([host["host"]], 1 if host["dead"] else 0)
        yield breaker
        yield dead
        yield GaugeMetricFamily(
            "mirror_followers", "Active followers of the bot.", value=report["followers"]
        )
        items = GaugeMetricFamily(
            "mirror_reconstructed_items", "Stored posts and comments.", labels=["kind"]
        )
        items.add_metric(["post"], posts or 0)
        items.add_metric(["comment"], comments or 0)
        yield items
        states = GaugeMetricFamily(
            "mirror_publications",
            "Published items by state on their targets (confirmed: the target shows it).",
            labels=["state"],
        )
        for state, count in published.items():
            states.add_metric([state], count)
        yield states

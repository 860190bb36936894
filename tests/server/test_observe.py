"""Health checks, Prometheus metrics and JSON logs of a running service."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mirror.observe.logs import JsonFormatter
from tests.peer import Peer
from tests.server.conftest import Service
from tests.server.test_followers import follow

#: /metrics is off on the public listener without a token (issue 19, item 11).
METRICS_TOKEN = "metrics-test-token"


async def scrape_text(service: Service) -> bytes:
    """/metrics of a service started with ``metrics={"token": METRICS_TOKEN}``."""
    status, headers, text = await service.get(
        "/metrics", accept="text/plain", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_health_and_readiness(service_factory: Callable[..., Any]) -> None:
    ready: Service = await service_factory()
    status, _, body = await ready.get("/healthz", accept="text/plain")
    assert (status, body) == (200, b"ok\n")
    status, _, body = await ready.get("/readyz", accept="application/json")
    assert status == 200
    assert json.loads(body) == {
        "ready": True,
        "database": "ok",
        "migrations": "ok",
        "worker": "running",
    }
    idle: Service = await service_factory(worker=False)
    status, _, body = await idle.get("/readyz", accept="application/json")
    assert status == 503 and json.loads(body)["worker"] == "not running"


async def test_metrics_count_what_happened(service_factory: Callable[..., Any], peer: Peer) -> None:
    service: Service = await service_factory(metrics={"token": METRICS_TOKEN})
    await follow(service, peer)  # an accepted inbox request, a key fetch, a delivered Accept
    bad = peer.follow(f"{service.base}/u/mirror", 2)
    body = json.dumps(bad).encode()
    headers = peer.signed_post_headers(f"{service.base}/inbox", body)
    assert (await service.post("/inbox", body + b" ", headers))[0] == 401  # digest mismatch

    async def scrape() -> dict[Any, float]:
        return samples((await scrape_text(service)).decode())

    host = f"127.0.0.1:{peer.port}"
    delivered = ("mirror_deliveries_total", (("host", host), ("outcome", "delivered")))
    found = await scrape()
    for _ in range(100):  # the outcome is recorded just after the peer answered
        if delivered in found:
            break
        await asyncio.sleep(0.05)
        found = await scrape()
    assert found[("mirror_inbox_requests_total", (("verdict", "accepted"),))] == 1
    assert found[("mirror_inbox_requests_total", (("verdict", "401"),))] == 1
    assert sum(v for (n, labels), v in found.items() if n == "mirror_signature_failures_total") == 1
    assert found[("mirror_key_fetch_seconds_count", (("result", "ok"),))] >= 1
    assert found[("mirror_deliveries_total", (("host", host), ("outcome", "delivered")))] == 1
    assert found[("mirror_delivery_seconds_count", (("outcome", "delivered"),))] == 1
    assert found[("mirror_queue_depth", (("state", "delivered"),))] == 1
    assert found[("mirror_host_breaker_state", (("host", host),))] == 0
    assert found[("mirror_followers", ())] == 1
    assert ("mirror_oldest_due_delivery_age_seconds", ()) in found


async def test_metrics_can_need_a_token(service_factory: Callable[..., Any]) -> None:
    service: Service = await service_factory(metrics={"token": "s3cret"})
    assert (await service.get("/metrics", accept="text/plain"))[0] == 401
    status, _, _ = await service.get(
        "/metrics", accept="text/plain", headers={"Authorization": "Bearer s3cret"}
    )
    assert status == 200
    off: Service = await service_factory(metrics={"enabled": False, "token": "s3cret"})
    assert (await off.get("/metrics", accept="text/plain"))[0] == 404


async def test_metrics_are_off_on_the_public_listener_without_a_token(
    service: Service,
) -> None:
    # Issue 19, item 11: they name every destination host; nobody may read them by default.
    status, _, body = await service.get("/metrics", accept="text/plain")
    assert status == 404 and b"mirror_" not in body


def test_a_metrics_listener_off_loopback_needs_the_token() -> None:
    from dataclasses import replace

    import pytest

    from mirror.config import MetricsSettings, Settings
    from mirror.errors import ConfigError
    from mirror.server.routes.health import check_metrics_listen

    def settings(**metrics: Any) -> Settings:
        return replace(Settings(), metrics=replace(MetricsSettings(), **metrics))

    for listen in ("127.0.0.1:9108", "[::1]:9108", "localhost:9108"):
        check_metrics_listen(settings(listen=listen))
    check_metrics_listen(settings(listen="0.0.0.0:9108", token="t"))
    check_metrics_listen(settings(listen="0.0.0.0:9108", enabled=False))
    for listen in ("0.0.0.0:9108", "[::]:9108", "10.0.0.5:9108", "metrics.example:9108"):
        with pytest.raises(ConfigError, match="not a loopback address"):
            check_metrics_listen(settings(listen=listen))


def test_json_log_lines_keep_the_structured_fields() -> None:
    record = logging.LogRecord(
        "mirror.delivery.sender",
        logging.INFO,
        __file__,
        1,
        "delivery %d to %s: %s",
        (7, "lemmy.example", 200),
        None,
    )
    record.__dict__.update({"host": "lemmy.example", "status": 200, "duration_ms": 12.5})
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "delivery 7 to lemmy.example: 200"
    assert line["level"] == "info" and line["logger"] == "mirror.delivery.sender"
    assert (line["host"], line["status"], line["duration_ms"]) == ("lemmy.example", 200, 12.5)

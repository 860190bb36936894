"""Liveness, readiness and Prometheus metrics.

/metrics names every destination host and the queue's state, so it is
never open to anyone by default: on the public listener it exists only with
``[metrics].token`` (a bearer token; `mirror init` writes a random one), and
the separate ``[metrics].listen`` listener needs that token too, or else a
loopback address.
"""

from __future__ import annotations

import asyncio
import hmac
import json

import sqlalchemy as sa
from aiohttp import web

from mirror.config import Settings
from mirror.db import migrate
from mirror.errors import ConfigError
from mirror.net.listen import is_loopback, parse_listen
from mirror.observe.metrics import CONTENT_TYPE
from mirror.server.appkeys import FEDERATION

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process answers: nothing else is checked (a liveness probe)."""
    return web.Response(text="ok\n")


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers, its schema is at head, the worker runs."""
    federation = request.app[FEDERATION]

    def database() -> tuple[str, str]:
        try:
            with federation.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            current = migrate.current_revision(federation.engine)
        except Exception as exc:  # any failure means not ready; say which
            return f"unreachable: {str(exc).splitlines()[0]}", "unknown"
        head = migrate.head_revision()
        return "ok", "ok" if current == head else f"at {current}, head is {head}"

    db, schema = await asyncio.to_thread(database)
    worker = federation.worker
    checks = {
        "database": db,
        "migrations": schema,
        "worker": "running" if worker is not None and worker.running else "not running",
    }
    ready = db == "ok" and schema == "ok" and checks["worker"] == "running"
    return web.Response(
        status=200 if ready else 503,
        text=json.dumps({"ready": ready, **checks}),
        content_type="application/json",
    )


def metrics_on_public_listener(settings: Settings) -> bool:
    """/metrics on the main listener: only behind a token (it names every destination host)."""
    metrics = settings.metrics
    return metrics.enabled and not metrics.listen and bool(metrics.token)


def check_metrics_listen(settings: Settings) -> None:
    """``[metrics].listen`` without a token must be a loopback address; ConfigError otherwise.

    A scraper on the same machine needs no token; anything reachable from
    elsewhere does, like the public listener.
    """
    metrics = settings.metrics
    if not metrics.enabled or not metrics.listen or metrics.token:
        return
    try:
        host, _ = parse_listen(metrics.listen)
    except ValueError as exc:
        raise ConfigError(f"[metrics].listen: {exc}") from None
    if not is_loopback(host):
        raise ConfigError(
            f"[metrics].listen {metrics.listen!r} is not a loopback address: set "
            "[metrics].token (MIRROR_METRICS_TOKEN), which scrapers then send as a bearer "
            "token, or listen on 127.0.0.1"
        )


async def metrics(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    token = federation.settings.metrics.token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.Response(
                status=401,
                text="metrics need a bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = await asyncio.to_thread(federation.metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def metrics_app(federation: object) -> web.Application:
    """Metrics alone, for `[metrics].listen` (a separate port)."""
    app = web.Application()
    app[FEDERATION] = federation  # type: ignore[assignment]
    app.router.add_get("/metrics", metrics)
    return app

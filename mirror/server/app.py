"""The aiohttp application, and running it until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from mirror.db.session import write_transaction
from mirror.delivery.worker import Worker
from mirror.errors import MirrorError
from mirror.federation.communities import apply_config
from mirror.federation.profile import announce_profile
from mirror.federation.service import Federation
from mirror.net.listen import parse_listen
from mirror.observe.logs import quiet_malformed_requests
from mirror.server.admin_auth import Throttle, security_headers
from mirror.server.appkeys import FEDERATION
from mirror.server.routes import actors, admin, communities, discovery, health, inbox, objects
from mirror.server.routes.access import trusted_networks
from mirror.server.tls import server_ssl_context

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unexpected failures are logged with their traceback; the client sees only a status."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path_qs)
        return web.Response(status=500, text="internal error")


def make_app(federation: Federation) -> web.Application:
    # Requests aiohttp's parser refuses are the client's mistake: a warning, no traceback.
    quiet_malformed_requests()
    app = web.Application(middlewares=[errors_middleware])
    app[FEDERATION] = federation
    app[admin.THROTTLE] = Throttle()
    app.on_response_prepare.append(security_headers)
    for table in (
        discovery.routes,
        actors.routes,
        communities.routes,
        inbox.routes,
        objects.routes,
        health.routes,
        admin.routes,
    ):
        app.add_routes(table)
    if health.metrics_on_public_listener(federation.settings):
        app.router.add_get("/metrics", health.metrics)

    async def close(app: web.Application) -> None:
        await app[FEDERATION].close()

    app.on_cleanup.append(close)
    return app


def apply_hosted_config(federation: Federation) -> list[str]:
    """The config's [[hosted]] tables, applied (added or updated, never removed)."""

    with write_transaction(federation.engine) as conn:
        return apply_config(
            conn,
            federation.settings.hosted,
            master_key=federation.master_key,
            now=federation.clock.now(),
            bot_username=federation.bot_username,
        )


async def serve(
    federation: Federation,
    *,
    host: str,
    port: int,
    ready: asyncio.Event | None = None,
    with_worker: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve and deliver until SIGTERM/SIGINT or ``stop``; in-flight work gets a bounded time."""
    # Refused before anything starts: a config error is one line, not a half-started service.
    health.check_metrics_listen(federation.settings)
    trusted_networks(federation.settings)
    tls = server_ssl_context(federation.settings)
    if federation.settings.hosted:
        for line in await asyncio.to_thread(apply_hosted_config, federation):
            log.info("%s", line)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = federation.make_worker() if with_worker else None
    worker_task = asyncio.create_task(worker.run(stop)) if worker is not None else None
    job_task = None
    runner = web.AppRunner(make_app(federation))
    runners: list[web.AppRunner] = []
    try:
        # What another process may hold comes first (SQLite's claimer lock,
        # the ports): refused there, nothing was announced or served.
        if worker is not None and worker_task is not None:
            await _started(worker, worker_task)
        await runner.setup()
        await _bind(runner, host, port, ssl_context=tls)
        metrics = federation.settings.metrics
        if metrics.enabled and metrics.listen:
            metrics_runner = web.AppRunner(health.metrics_app(federation))
            await metrics_runner.setup()
            runners.append(metrics_runner)
            metrics_host, metrics_port = parse_listen(metrics.listen)
            await _bind(metrics_runner, metrics_host, metrics_port, " ([metrics].listen)")
            log.info("metrics on http://%s:%d/metrics", metrics_host, metrics_port)
        elif metrics.enabled and not metrics.token:
            log.info("metrics: off on the public listener until [metrics].token is set")
        if with_worker:
            job_task = asyncio.create_task(federation.make_publication_job().run(stop))
        bot = await federation.local_actor(federation.bot_username)
        if bot is not None:
            await announce_profile(federation, bot)
        scheme = "https" if tls is not None else "http"
        log.info("serving %s on %s://%s:%d", federation.urls.base, scheme, host, port)
        if ready is not None:
            ready.set()
        await _until(stop, worker_task)
    finally:
        log.info("shutting down")
        stop.set()
        if worker_task is not None:
            await asyncio.gather(worker_task, return_exceptions=True)
        if job_task is not None:
            await asyncio.gather(job_task, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for extra in runners:
            await extra.cleanup()
        await runner.cleanup()


async def _started(worker: Worker, task: asyncio.Task[None]) -> None:
    """Wait until the worker claims; its error (another claimer, say) if it fails first."""
    started = asyncio.ensure_future(worker.started.wait())
    try:
        await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def _bind(
    runner: web.AppRunner,
    host: str,
    port: int,
    what: str = "",
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Listen, or one line saying why not (the port is taken, say)."""
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError as exc:
        # asyncio's own wording repeats the address as a tuple: the system's is enough.
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc.strerror)
        raise MirrorError(f"cannot listen on {host}:{port}{what}: {reason}") from None


async def run_worker(federation: Federation) -> None:
    """Deliver only (more processes against PostgreSQL), until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    job = asyncio.create_task(federation.make_publication_job().run(stop))
    try:
        await federation.make_worker().run(stop)
    finally:
        stop.set()
        await asyncio.gather(job, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await federation.close()


async def _until(stop: asyncio.Event, worker_task: asyncio.Task[None] | None) -> None:
    """Wait for a stop signal; a worker that dies (e.g. another claimer) stops the service too."""
    if worker_task is None:
        await stop.wait()
        return
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({stopping, worker_task}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if worker_task in done and worker_task.exception() is not None:
        raise worker_task.exception()  # type: ignore[misc]

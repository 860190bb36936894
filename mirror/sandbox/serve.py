"""Running the sandbox: `mirror sandbox`, and inside `mirror demo` and the tests."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from mirror.sandbox.app import Instance, make_sandbox_app

log = logging.getLogger(__name__)


async def start_sandbox(
    *, host: str, port: int, community: str, software: str, version: str
) -> tuple[web.AppRunner, Instance]:
    instance = Instance(
        base=f"http://{host}:{port}", community=community, software=software, version=version
    )
    runner = web.AppRunner(make_sandbox_app(instance), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("sandbox !%s@%s:%d (%s %s)", community, host, port, software, version)
    return runner, instance


async def run_sandbox(*, host: str, port: int, community: str, software: str, version: str) -> None:
    """Serve until SIGTERM/SIGINT."""
    runner, instance = await start_sandbox(
        host=host, port=port, community=community, software=software, version=version
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sandbox community !{community}@{instance.host}: {instance.base}/", flush=True)
    print(f"backfill into it with: mirror backfill --to {community}@{instance.host}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()

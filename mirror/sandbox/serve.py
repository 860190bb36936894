"""Running the sandbox: `mirror sandbox`, and inside `mirror demo` and the tests."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from mirror.clock import Clock, SystemClock
from mirror.sandbox.app import Instance, make_sandbox_app
from mirror.sandbox.pages import describe

log = logging.getLogger(__name__)


async def start_sandbox(
    *,
    host: str,
    port: int,
    community: str = "sandbox",
    software: str = "lemmy",
    version: str = "",
    refusal_status: int | None = None,
    clock: Clock | None = None,
    **behaviour: Any,
) -> tuple[web.AppRunner, Instance]:
    """Start an instance of the profile `software` ("lemmy" or "piefed") on host:port.

    An empty `version` is the profile's; `refusal_status` None the profile's
    (lemmy 400, piefed 200). Any other Instance field can be given in
    `behaviour` (new_account_limit, fail_objects, ...).
    """
    instance = Instance(
        base=f"http://{host}:{port}",
        community=community,
        software=software,
        version=version,
        refusal_status=refusal_status,
        clock=clock or SystemClock(),
        **behaviour,
    )
    runner = web.AppRunner(make_sandbox_app(instance), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("sandbox !%s@%s (%s %s)", community, instance.host, software, instance.version)
    return runner, instance


async def run_sandbox(*, next_steps: Callable[[Instance], list[str]], **options: Any) -> None:
    """Serve until SIGTERM/SIGINT; ``options`` are :func:`start_sandbox`'s.

    Once it listens it prints what it is and the lines ``next_steps`` gives
    (the commands that backfill into it).
    """
    runner, instance = await start_sandbox(**options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"sandbox community !{instance.community}@{instance.host} ({instance.software} "
        f"{instance.version}): {instance.base}/",
        flush=True,
    )
    print(f"  {describe(instance)}", flush=True)
    for line in next_steps(instance):
        print(line, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()

"""`mirror demo`: the whole main job on this machine, with nothing else installed.

A sandbox community and the service on 127.0.0.1, a fresh SQLite database
in a temporary directory, the bundled sample dumps ingested and backfilled
into the sandbox; then the summary and the URLs to look at.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

from mirror.clock import SystemClock
from mirror.config import Settings
from mirror.db import migrate
from mirror.db.session import make_engine, write_transaction
from mirror.federation.actors import BOT, create_actor
from mirror.federation.service import Federation
from mirror.ingest.files import ingest_paths, sample_files
from mirror.publish.runs import progress
from mirror.publish.start import start_backfill
from mirror.sandbox.serve import start_sandbox
from mirror.server.app import serve
from mirror.signatures import MasterKey

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def demo_settings(settings: Settings, data_dir: Path, port: int) -> Settings:
    """The operator's settings, pointed at a throwaway database and loopback."""
    return replace(
        settings,
        instance=replace(settings.instance, base_url=f"http://{HOST}:{port}", username="mirror"),
        paths=replace(settings.paths, data_dir=str(data_dir), master_key_file=""),
        database=replace(settings.database, url=""),
        network=replace(settings.network, allow_private_networks=True),
        delivery=replace(settings.delivery, poll_interval_s=0.2),
        backfill=replace(settings.backfill, rate_per_minute=0.0),
        # The sandbox is ours, on loopback: no need to pace the lookups.
        confirm=replace(settings.confirm, rate=100.0),
    )


async def run_demo(settings: Settings, *, exit_when_done: bool, software: str = "lemmy") -> int:
    """The demo into a sandbox of the profile `software` (lemmy or piefed)."""
    data_dir = Path(tempfile.mkdtemp(prefix="fedimirror-demo-"))
    try:
        return await _demo(settings, data_dir, exit_when_done, software)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _demo(settings: Settings, data_dir: Path, exit_when_done: bool, software: str) -> int:
    port = _free_port()
    settings = demo_settings(settings, data_dir, port)
    clock = SystemClock()
    engine = make_engine(settings.database_url)
    await asyncio.to_thread(migrate.upgrade, engine)
    master_key = MasterKey.generate()
    with write_transaction(engine) as conn:
        create_actor(conn, username="mirror", kind=BOT, master_key=master_key, now=clock.now())
    reports = await asyncio.to_thread(ingest_paths, engine, sample_files(), clock=clock)
    posts = sum(r.posts for r in reports)
    comments = sum(r.comments for r in reports)
    print(
        f"ingested {len(reports)} sample dumps: {posts} posts, {comments} comments (before merging)"
    )

    sandbox_port = _free_port()
    # The sandbox shares the service's clock, as a real pair of servers share time.
    runner, instance = await start_sandbox(
        host=HOST, port=sandbox_port, community="sandbox", software=software, clock=clock
    )
    federation = Federation(settings=settings, engine=engine, clock=clock, master_key=master_key)
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(serve(federation, host=HOST, port=port, ready=ready, stop=stop))
    try:
        await asyncio.wait(
            {asyncio.ensure_future(ready.wait()), service}, return_when=asyncio.FIRST_COMPLETED
        )
        if service.done():
            await service  # it failed to start: say why
        target, report = await start_backfill(
            federation, to=f"sandbox@{HOST}:{sandbox_port}", rate=0
        )
        planned = report.planned
        print(
            f"backfill run {report.run_id} into {target.id}: {planned['posts']} posts, "
            f"{planned['comments']} comments, {planned['followers_only']} comments of unknown "
            f"posts (followers only: the demo has no followers)"
        )
        while True:
            with engine.connect() as conn:
                state = progress(conn, report.run_id, clock.now())
            if state["finished"] or stop.is_set() or service.done():
                break
            await asyncio.sleep(0.2)
        by_state = state["by_state"]
        threads = instance.threads()
        received = sum(1 + len(t["comments"]) for t in threads)
        items = state["publications"]
        print(
            f"delivered {by_state['delivered']}, failed {by_state['failed']}; the sandbox holds "
            f"{len(threads)} posts and {received - len(threads)} comments, "
            f"refused {len(instance.refused)}"
        )
        print(
            f"confirmed by asking the sandbox: {items['confirmed']} of {state['total']} items "
            f"({items['unverifiable']} for followers only: no community to ask about them)"
        )
        for refusal in instance.refused:
            print(f"  refused: {refusal['error']}: {refusal['message']}")
        print()
        print(f"  the community, as received:  {instance.base}/")
        print(f"  the bot:                      {federation.urls.actor('mirror')}")
        print(f"  its outbox:                   {federation.urls.outbox('mirror')}")
        if threads:
            print(f"  a mirrored post:              {threads[0]['id']}")
        print(f"  data (removed on exit):       {data_dir}")
        if not exit_when_done:
            print("\nPress Ctrl-C to stop.", flush=True)
            await asyncio.wait(
                {asyncio.ensure_future(stop.wait()), service}, return_when=asyncio.FIRST_COMPLETED
            )
        return 0 if by_state["failed"] == 0 and not instance.refused else 1
    finally:
        stop.set()
        await asyncio.gather(service, return_exceptions=True)
        await federation.close()
        await runner.cleanup()
        engine.dispose()

"""Run a campaign launch to the end inside this process: the path with no Redis.

The jobs are the same functions arq runs; only the queue differs. The queue and the runtime
share one clock, so a test with a `FrozenClock` decides when a scheduled run starts.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.campaigns.launch import RunRef, create_run, enqueue_plan
from ecrm.campaigns.spec import CampaignSpec
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.queue import InProcessQueue
from ecrm.runtime import open_runtime
from ecrm.settings import Settings
from ecrm.worker import in_process_queue


async def launch_in_process(settings: Settings, spec: CampaignSpec, source: str, run_key: str | None = None,
                            engine: AsyncEngine | None = None,
                            clock: Clock = SYSTEM_CLOCK) -> tuple[RunRef, InProcessQueue]:
    """Create (or resume) the run, plan it and send every batch; return when all jobs are done."""
    queue = in_process_queue(settings, clock)
    runtime = queue.ctx["runtime"] = open_runtime(settings, queue, engine, clock)
    try:
        ref = await create_run(runtime.sessions, spec, source, run_key)
        await enqueue_plan(queue, ref, spec)
        await queue.join()
    finally:
        await runtime.channels.close()
        if engine is None:
            await runtime.engine.dispose()
    return ref, queue

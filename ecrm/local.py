"""Run a campaign launch to the end inside this process: the path with no Redis.

The jobs are the same functions arq runs; only the queue differs. While it sends, the process
keeps a heartbeat on the run (`campaigns.liveness`), so a launcher that dies is reported as
such and its run can be resumed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.campaigns.launch import RunRef, create_run, enqueue_plan
from ecrm.campaigns.liveness import heartbeat
from ecrm.campaigns.spec import CampaignSpec
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.queue import InProcessQueue
from ecrm.runtime import Runtime, open_runtime
from ecrm.settings import Settings
from ecrm.worker import in_process_queue


async def launch_in_process(settings: Settings, spec: CampaignSpec, source: str, run_key: str | None = None,
                            engine: AsyncEngine | None = None,
                            clock: Clock = SYSTEM_CLOCK) -> tuple[RunRef, InProcessQueue]:
    """Create (or resume) the run, plan it and send every batch; return when all jobs are done.
    Every pool and channel the launch opened is closed on the way out; an `engine` passed in
    stays open."""
    queue = in_process_queue(settings, clock)
    async with open_runtime(settings, queue, engine, clock) as runtime:
        queue.ctx["runtime"] = runtime
        ref = await create_run(runtime.sessions, spec, source, run_key, clock=clock)
        await _send(runtime, queue, ref, spec)
    return ref, queue


async def resume_in_process(settings: Settings, ref: RunRef, spec: CampaignSpec, engine: AsyncEngine | None = None,
                            clock: Clock = SYSTEM_CLOCK) -> InProcessQueue:
    """Plan and send an existing run again from its stored `spec` (`campaigns.resume`)."""
    queue = in_process_queue(settings, clock)
    async with open_runtime(settings, queue, engine, clock) as runtime:
        queue.ctx["runtime"] = runtime
        await _send(runtime, queue, ref, spec)
    return queue


async def _send(runtime: Runtime, queue: InProcessQueue, ref: RunRef, spec: CampaignSpec) -> None:
    async with heartbeat(runtime.sessions, ref.run_id, runtime.clock):
        await enqueue_plan(queue, ref, spec)
        await queue.join()

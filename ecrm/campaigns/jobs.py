"""Job of stage 3: plan a run into batches (arq function `plan_run`)."""

from __future__ import annotations

from ecrm.campaigns.launch import plan_run
from ecrm.runtime import JobContext


async def plan_run_job(ctx: JobContext, run_id: int) -> int:
    return await plan_run(ctx["runtime"], run_id)

"""Jobs of stage 3: plan a run into its send's batches (arq function `plan_run`), and mark a run
done once its send is (`finish_run`, called through the worker's `send_done`)."""

from __future__ import annotations

from ecrm.campaigns.launch import finish_run, plan_run
from ecrm.runtime import JobContext


async def plan_run_job(ctx: JobContext, run_id: int) -> int:
    return await plan_run(ctx["runtime"], run_id)


async def finish_run_job(ctx: JobContext, run_id: int) -> bool:
    return await finish_run(ctx["runtime"], run_id)

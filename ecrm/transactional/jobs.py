"""What a transactional message's finished send means: nothing more to do (its delivery row
holds the outcome); `send_done` lands here through `ecrm.worker.SEND_DONE`."""

from __future__ import annotations

from ecrm.runtime import JobContext


async def finish_message_job(ctx: JobContext, message_id: int) -> str:
    return f"message {message_id} done"

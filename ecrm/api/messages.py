"""`POST /v1/messages`: send one transactional message now (202 once it is queued).

It honours an `Idempotency-Key` header (see `ecrm.transactional.accept`): a retry with the
same key and body gets the first answer and sends nothing again; the same key with another
body is a 422. The message goes on the transactional queue (`queue.TRANSACTIONAL_QUEUE`, with
Redis) or, without Redis, to this process's own in-process queue, so it never waits behind a
campaign's batches.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from aiohttp import web
from arq import create_pool
from arq.connections import RedisSettings

from ecrm.api.body import read_json
from ecrm.api.keys import CLOCK, ENGINE, SESSIONS, SETTINGS
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.queue import TRANSACTIONAL_QUEUE, ArqQueue, JobQueue
from ecrm.render.environment import TemplateCatalog
from ecrm.runtime import open_runtime
from ecrm.transactional.accept import MessageIn, MessageOut, accept, claim, request_hash
from ecrm.transactional.models import KEY_MAX
from ecrm.worker import in_process_queue

routes = web.RouteTableDef()
MESSAGE_QUEUE: web.AppKey[JobQueue] = web.AppKey("message_queue")
CATALOG = web.AppKey("catalog", TemplateCatalog)
IDEMPOTENCY_KEY = "Idempotency-Key"
_KEY = re.compile(rf"[\x21-\x7e]{{1,{KEY_MAX}}}")


@routes.post("/v1/messages")
@operation("Send one transactional message now", MessageIn,
           {202: MessageOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut},
           headers={IDEMPOTENCY_KEY: "any printable ASCII up to 255 characters: a retry with the same key and "
                                     "body gets the first answer and sends nothing again"})
async def post_message(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    document = await read_json(request)
    message = MessageIn.model_validate(document)
    sessions, now = request.app[SESSIONS], request.app[CLOCK].now()
    claimed = await claim(sessions, key, request_hash(document), now)
    answer = claimed if not isinstance(claimed, int) else await accept(sessions, request.app[CATALOG], claimed,
                                                                        message, now)
    if answer.send_id is not None:
        # Again on a replay: had the first enqueue been lost, this sends the message; had it not,
        # the job id (arq) or the batch's claims (a delivery is sent once) make it a no-op.
        await request.app[MESSAGE_QUEUE].enqueue("send_batch", answer.send_id, 0, _job_id=f"send:{answer.send_id}:0:1")
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return web.json_response(answer.body, status=answer.status, headers=headers)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is not None and not _KEY.fullmatch(key):
        raise ApiError(422, f"{IDEMPOTENCY_KEY} must be 1 to {KEY_MAX} printable ASCII characters",
                       field=IDEMPOTENCY_KEY)
    return key


async def message_queue(app: web.Application) -> AsyncIterator[None]:
    """The queue messages go on (a cleanup context, after the database's): arq's transactional
    queue with Redis; without it, an in-process queue with this app's runtime, waited for at
    shutdown so an accepted message is still handed over."""
    settings = app[SETTINGS]
    if settings.redis_url:
        app[CATALOG] = TemplateCatalog(settings.templates_dir)
        redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
        app[MESSAGE_QUEUE] = ArqQueue(redis, TRANSACTIONAL_QUEUE)
        yield
        await redis.aclose()
        return
    queue = in_process_queue(settings, app[CLOCK])
    async with open_runtime(settings, queue, app[ENGINE], app[CLOCK]) as runtime:
        queue.ctx["runtime"] = runtime
        app[CATALOG], app[MESSAGE_QUEUE] = runtime.catalog, queue
        yield
        await queue.join()

"""`POST /v1/messages`: send one transactional message now (202 once it is queued).

It honours an `Idempotency-Key` header (see `ecrm.transactional.accept`): a retry with the
same key and body gets the first answer and sends nothing again; the same key with another
body is a 422. The message goes on the transactional queue (`queue.TRANSACTIONAL_QUEUE`, with
Redis) or, without Redis, to this process's own in-process queue, so it never waits behind a
campaign's batches. The API connects to Redis on the first message; while Redis does not answer,
a message is accepted in the database and answered 503 (a retry with its key sends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from redis.exceptions import RedisError

from ecrm.api.body import read_json
from ecrm.api.keys import CLOCK, ENGINE, SESSIONS, SETTINGS
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.queue import TRANSACTIONAL_QUEUE, JobQueue, LazyArqQueue
from ecrm.render.environment import TemplateCatalog
from ecrm.runtime import open_runtime
from ecrm.transactional.accept import IdempotencyKey, MessageIn, MessageOut, request_hash, submit
from ecrm.transactional.accept_pg import PgMessages
from ecrm.transactional.models import KEY_MAX
from ecrm.worker import in_process_queue

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
SHUTDOWN_WAIT = 10.0  # seconds the in-process sends get when the API stops
MESSAGE_QUEUE: web.AppKey[JobQueue] = web.AppKey("message_queue")
CATALOG = web.AppKey("catalog", TemplateCatalog)
PG_MESSAGES: web.AppKey[PgMessages | None] = web.AppKey("pg_messages")
IDEMPOTENCY_KEY = "Idempotency-Key"
KEYS = TypeAdapter(IdempotencyKey)


@routes.post("/v1/messages")
@operation("Send one transactional message now", MessageIn,
           {202: MessageOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut,
            503: ErrorOut},
           headers={IDEMPOTENCY_KEY: ("a retry with the same key and body gets the first answer and sends nothing "
                                      "again", IdempotencyKey)})
async def post_message(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    document = await read_json(request)
    message = MessageIn.model_validate(document)
    now, store = request.app[CLOCK].now(), request.app[PG_MESSAGES]
    if store is not None:  # PostgreSQL: one statement on the messages' own pool
        answer = await store.submit(request.app[CATALOG], key, request_hash(document), message, now)
    else:
        answer = await submit(request.app[SESSIONS], request.app[CATALOG], key, request_hash(document), message, now)
    if answer.send_id is not None:
        await _enqueue(request.app[MESSAGE_QUEUE], answer.send_id)
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return web.json_response(answer.body, status=answer.status, headers=headers)


async def _enqueue(queue: JobQueue, send_id: int) -> None:
    """Queue the message's send. Again on a replay: had the first enqueue been lost, this sends
    the message; had it not, the job id (arq) or the batch's claims (a delivery is sent once)
    make it a no-op."""
    try:
        await queue.enqueue("send_batch", send_id, 0, _job_id=f"send:{send_id}:0:1")
    except (OSError, RedisError) as exc:
        logger.warning("transactional send %d is queued in the database, but not on the queue: %s", send_id, exc)
        raise ApiError(503, "the message is accepted but the message queue (Redis) does not answer; retry the "
                            "request with the same Idempotency-Key to send it") from None


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    try:
        return KEYS.validate_python(key)
    except ValidationError:
        raise ApiError(422, f"{IDEMPOTENCY_KEY} must be 1 to {KEY_MAX} printable ASCII characters",
                       field=IDEMPOTENCY_KEY) from None


async def message_queue(app: web.Application) -> AsyncIterator[None]:
    """The queue messages go on (a cleanup context, after the database's): arq's transactional
    queue with Redis; without it, an in-process queue with this app's runtime. At shutdown the
    in-process sends get `SHUTDOWN_WAIT` seconds; then they stop, recording what was handed
    over, and what is left stays queued (a retry with the same Idempotency-Key sends it). On
    PostgreSQL messages are accepted on their own pool (`transactional.accept_pg`)."""
    settings = app[SETTINGS]
    store = app[PG_MESSAGES] = PgMessages(settings.database_url) if settings.database_url.startswith(
        "postgresql") else None
    try:
        async with _queue(app):
            yield
    finally:
        if store is not None:
            await store.close()


@contextlib.asynccontextmanager
async def _queue(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.redis_url:
        queue = LazyArqQueue(settings.redis_url, TRANSACTIONAL_QUEUE)
        app[CATALOG], app[MESSAGE_QUEUE] = TemplateCatalog(settings.templates_dir), queue
        yield
        await queue.close()
        return
    local = in_process_queue(settings, app[CLOCK])
    async with open_runtime(settings, local, app[ENGINE], app[CLOCK]) as runtime:
        local.ctx["runtime"] = runtime
        app[CATALOG], app[MESSAGE_QUEUE] = runtime.catalog, local
        yield
        try:
            async with asyncio.timeout(SHUTDOWN_WAIT):
                await local.join()
        except TimeoutError:
            logger.warning("stopped with transactional messages still queued (%s s passed); "
                           "a retry of a request with the same Idempotency-Key sends its message", SHUTDOWN_WAIT)

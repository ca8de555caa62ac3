"""Mapping stored webhooks: the `map_webhooks` job, the single `map_webhook`, and
`map_pending` for retries.

A webhook is claimed by the first statement of its transaction after the turn (a row lock on
PostgreSQL, an UPDATE on SQLite, skipping mapped rows), so two mappers of one webhook (a job and
`ecrm shop retry`) apply it once. The API queues a `map_webhooks` job as webhooks arrive; the
job claims what is still `received`, oldest first, `BATCH` at a time, until nothing is left (so
when mapping falls behind, the batches grow, and the jobs queued meanwhile find little to do). A
batch is claimed in one statement and applied in one transaction, in id order, with the outcome
of its webhooks mapped one after another (`apply.apply_in_order`). Mappers take turns, a
transaction at a time (on PostgreSQL an advisory lock taken first, on SQLite the database's
write lock), so webhooks are mapped in the order they were received: two mappers sharing a
backlog (the claim skipping rows another holds) mapped a checkout's update before its creation.
A webhook whose payload does not map is recorded `failed` in that transaction; if the
transaction itself fails, nothing of it stays and each claimed webhook is mapped again on its
own by `map_webhook`, so a bad webhook fails alone. A failure rolls its webhook's changes back
and is recorded on the row, with its error, as `failed`: nothing acknowledged is lost, and `ecrm
shop retry` maps it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Executable, Select, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.db import among
from ecrm.errors import WebhookPayloadError
from ecrm.pg_pool import KEY_LOOKUPS
from ecrm.runtime import JobContext
from ecrm.settings import Settings
from ecrm.shops.apply import apply_changes, apply_in_order
from ecrm.shops.base import ShopChanges, ShopConnector
from ecrm.shops.models import ReceivedWebhook, WebhookStatus
from ecrm.shops.registry import CONNECTORS

logger = logging.getLogger(__name__)
MAX_ERROR = 2000
MAP_JOB = "map_webhooks"
# Webhooks mapped in one transaction: a batch's statements cost about as much for 200 as for 500
# webhooks (~0.35 against ~0.27 ms of the mapper's CPU a webhook, and ~1,300 against ~2,000 a second).
BATCH = 500
YIELD_EVERY = 20  # payloads mapped between two turns of the event loop (an API process answers meanwhile)
# Mapping finds every row by a key, so its transaction plans plain index scans only. Without
# `pg_pool.KEY_LOOKUPS` a worker's connections on a new database cached generic plans made while
# the tables were nearly empty: a batch's profile lookup took ~120 ms at 80,000 webhooks. Without
# bitmap scans off, the claim, planned on the few rows the table had when last analyzed, sorted
# every received row to take the oldest 500: ~230 ms a claim with 200,000 waiting.
MAPPING_PLANS = {**KEY_LOOKUPS, "enable_bitmapscan": "off"}
_TURN = text("SELECT pg_advisory_xact_lock(hashtext('ecrm:map_webhooks')), "
             + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in MAPPING_PLANS.items()))
Claimed = tuple[int, str, str, str]  # id, provider, topic, body
Counts = dict[str, int]  # how many ended mapped and failed


async def map_webhooks_job(ctx: JobContext) -> Counts:
    runtime = ctx["runtime"]
    return await map_received(runtime.sessions, runtime.settings, runtime.clock.now())


async def map_webhook_job(ctx: JobContext, webhook_id: int) -> str:
    """The job of one webhook, as queued before `map_webhooks` (kept for jobs still in Redis)."""
    runtime = ctx["runtime"]
    return await map_webhook(runtime.sessions, runtime.settings, webhook_id, runtime.clock.now())


async def map_received(sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime,
                       batch: int = BATCH) -> Counts:
    """Map the webhooks still `received` at `now`, oldest first, `batch` to a transaction, until
    no batch is full (see the module)."""
    counts = _no_counts()
    while True:
        wanted = oldest_received(batch)
        claimed = await _map_batch(sessions, settings, wanted, now, counts)
        if claimed < batch:
            return counts


async def map_webhooks(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                       webhook_ids: Sequence[int], now: datetime) -> Counts:
    """Map these webhooks at `now` (those not mapped yet) in one transaction (see the module)."""
    counts = _no_counts()
    wanted = _claimable().where(ReceivedWebhook.id.in_(sorted(set(webhook_ids))),
                                ReceivedWebhook.status != WebhookStatus.MAPPED.value)
    await _map_batch(sessions, settings, wanted, now, counts)
    return counts


def _no_counts() -> Counts:
    return {WebhookStatus.MAPPED.value: 0, WebhookStatus.FAILED.value: 0}


def _claimable() -> Select[Any]:
    return select(ReceivedWebhook.id).order_by(ReceivedWebhook.id)


def oldest_received(batch: int) -> Select[Any]:
    """The oldest `batch` webhooks still `received`. The status and the limit are written into
    the statement, not bound: a plan cached for bound values cannot use the partial index of
    received webhooks (it cannot know the status is `received`): it walked the primary key through
    every mapped row, or sorted every received one."""
    status = literal(WebhookStatus.RECEIVED.value, literal_execute=True)
    return _claimable().where(ReceivedWebhook.status == status).limit(literal(batch, literal_execute=True))


def claim_statement(dialect: str, wanted: Select[Any]) -> Executable:
    """The statement that claims the webhooks `wanted` selects on this dialect, returning their
    id, provider, topic and body; the attempt is counted when their outcome is written. On
    PostgreSQL a row lock (`FOR UPDATE SKIP LOCKED`) claims them without writing a new version of
    each row: an update here, then another when mapped, left two dead entries per webhook in the
    claim's index, which the next claims walked through (~100 ms a claim in the backlog of a 40 s
    load). On SQLite an update that changes nothing takes the write lock."""
    table = ReceivedWebhook
    if dialect == "postgresql":
        return wanted.with_only_columns(table.id, table.provider, table.topic, table.body).with_for_update(
            skip_locked=True)
    return (update(table).where(table.id.in_(wanted.scalar_subquery())).values(attempts=table.attempts)
            .returning(table.id, table.provider, table.topic, table.body))


async def _map_batch(sessions: async_sessionmaker[AsyncSession], settings: Settings, wanted: Select[Any],
                     now: datetime, counts: Counts) -> int:
    """Claim the webhooks `wanted` selects and map them in one transaction, else each on its
    own; add their outcomes to `counts`; how many were claimed."""
    claimed: list[int] | None = None
    try:
        async with sessions.begin() as session:
            await _take_turn(session)
            found = await _claim_many(session, wanted)
            claimed = [webhook_id for webhook_id, *_ in found]
            statuses = await _map_claimed(session, settings, found, now)
    except Exception as exc:
        if claimed is None:  # not even claimed: nothing to map again
            raise
        logger.warning("%d webhooks not mapped together (%s: %s): mapping each on its own", len(claimed),
                       type(exc).__name__, exc)
        statuses = {webhook_id: await map_webhook(sessions, settings, webhook_id, now) for webhook_id in claimed}
    for status in statuses.values():
        counts[status] += 1
    return len(claimed)


async def _take_turn(session: AsyncSession) -> None:
    """Wait until no other mapper's transaction is open (see the module); on PostgreSQL, plan
    this transaction's statements with index scans only (`_TURN`)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_TURN)


async def _claim_many(session: AsyncSession, wanted: Select[Any]) -> list[Claimed]:
    """Claim the webhooks `wanted` selects for this transaction (`claim_statement`), in id order."""
    stmt = claim_statement(session.get_bind().dialect.name, wanted)
    rows = await session.execute(stmt, execution_options={"synchronize_session": False})
    return sorted((row.id, row.provider, row.topic, row.body) for row in rows if row.body is not None)


async def _map_claimed(session: AsyncSession, settings: Settings, claimed: Sequence[Claimed],
                       now: datetime) -> dict[int, str]:
    """Apply the claimed webhooks in id order; each one's status. One whose payload does not map
    is recorded failed; a failure while writing raises for them all."""
    connectors: dict[str, ShopConnector] = {}
    mapped: list[tuple[int, ShopChanges]] = []
    failed: dict[int, Exception] = {}
    for n, (webhook_id, provider, topic, body) in enumerate(claimed, 1):
        try:
            if provider not in connectors:
                connectors[provider] = CONNECTORS[provider](settings)
            connector = connectors[provider]
            mapped.append((webhook_id, connector.map(topic, _payload(body))))
        except Exception as exc:
            _log_failure(webhook_id, exc)
            failed[webhook_id] = exc
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    await apply_in_order(session, [changes for _, changes in mapped], now)
    if mapped:
        done = among(session, ReceivedWebhook.id, [webhook_id for webhook_id, _ in mapped])
        await session.execute(update(ReceivedWebhook).where(done).values(
            status=WebhookStatus.MAPPED.value, body=None, error=None, mapped_at=now,
            attempts=ReceivedWebhook.attempts + 1), execution_options={"synchronize_session": False})
    for webhook_id, error in failed.items():
        await session.execute(update(ReceivedWebhook).where(ReceivedWebhook.id == webhook_id).values(
            status=WebhookStatus.FAILED.value, error=_error(error), attempts=ReceivedWebhook.attempts + 1),
            execution_options={"synchronize_session": False})
    return {webhook_id: WebhookStatus.MAPPED.value for webhook_id, _ in mapped} | dict.fromkeys(
        failed, WebhookStatus.FAILED.value)


async def map_webhook(sessions: async_sessionmaker[AsyncSession], settings: Settings, webhook_id: int,
                      now: datetime) -> str:
    """Map one stored webhook at `now`; its status after (`mapped`, `failed`, or `mapped` when
    it already was)."""
    try:
        async with sessions.begin() as session:
            claimed = await _claim(session, webhook_id)
            if claimed is None:
                return WebhookStatus.MAPPED.value
            provider, topic, body = claimed
            changes = CONNECTORS[provider](settings).map(topic, _payload(body))
            await apply_changes(session, changes, now)
            await session.execute(update(ReceivedWebhook).where(ReceivedWebhook.id == webhook_id).values(
                status=WebhookStatus.MAPPED.value, body=None, error=None, mapped_at=now))
    except Exception as exc:
        _log_failure(webhook_id, exc)
        await _record_failure(sessions, webhook_id, exc)
        return WebhookStatus.FAILED.value
    return WebhookStatus.MAPPED.value


async def _claim(session: AsyncSession, webhook_id: int) -> tuple[str, str, str] | None:
    stmt = (update(ReceivedWebhook)
            .where(ReceivedWebhook.id == webhook_id, ReceivedWebhook.status != WebhookStatus.MAPPED.value)
            .values(attempts=ReceivedWebhook.attempts + 1)
            .returning(ReceivedWebhook.provider, ReceivedWebhook.topic, ReceivedWebhook.body))
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None or row.body is None else (row.provider, row.topic, row.body)


def _payload(body: str) -> dict[str, Any]:
    document = json.loads(body, parse_float=Decimal)  # stored only after it parsed as an object
    if not isinstance(document, dict):
        raise WebhookPayloadError("the payload is not a JSON object")
    return document


def _log_failure(webhook_id: int, exc: Exception) -> None:
    logger.warning("webhook %d not mapped: %s", webhook_id, exc, exc_info=not isinstance(exc, WebhookPayloadError))


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


async def _record_failure(sessions: async_sessionmaker[AsyncSession], webhook_id: int, exc: Exception) -> None:
    async with sessions.begin() as session:
        await session.execute(update(ReceivedWebhook).where(ReceivedWebhook.id == webhook_id).values(
            status=WebhookStatus.FAILED.value, error=_error(exc), attempts=ReceivedWebhook.attempts + 1))


async def pending_webhooks(sessions: async_sessionmaker[AsyncSession], received_before: datetime,
                           limit: int = 10_000) -> Sequence[int]:
    """Failed webhooks, and those received before `received_before` and still not mapped (their
    job was lost, e.g. with the process that held it), oldest first."""
    stmt = (select(ReceivedWebhook.id)
            .where((ReceivedWebhook.status == WebhookStatus.FAILED.value)
                   | ((ReceivedWebhook.status == WebhookStatus.RECEIVED.value)
                      & (ReceivedWebhook.received_at < received_before)))
            .order_by(ReceivedWebhook.id).limit(limit))
    async with sessions() as session:
        return list(await session.scalars(stmt))


async def map_pending(sessions: async_sessionmaker[AsyncSession], settings: Settings, received_before: datetime,
                      now: datetime) -> dict[str, int]:
    """Map every pending webhook again, `BATCH` to a transaction; how many ended mapped and failed."""
    counts = _no_counts()
    pending = await pending_webhooks(sessions, received_before)
    for start in range(0, len(pending), BATCH):
        for status, n in (await map_webhooks(sessions, settings, pending[start:start + BATCH], now)).items():
            counts[status] += n
    return counts

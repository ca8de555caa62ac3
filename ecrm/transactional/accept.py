"""Accept one transactional message: claim its Idempotency-Key, check the request, and plan it
into a send of kind `transactional` with one queued delivery, in one transaction.

Idempotency: a request with a key first inserts its `transactional_messages` row in a
transaction of its own; the key is unique, so of two requests racing with one key exactly one
claims it and goes on to send. The other, and every later retry, reads the row instead: the
same body gets the stored status and answer (or 409 while the first is still being handled),
another body 422. A refusal (4xx) is stored as the answer like an acceptance; anything else
releases the claim so that a retry can try again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.channels.registry import PAIRINGS
from ecrm.db import dialect_insert
from ecrm.deliveries.models import DELIVERIES, SEND_BATCHES
from ecrm.deliveries.sends import mark_planned, open_send
from ecrm.errors import ApiError, SpecError, TemplateError
from ecrm.profiles.ingest import JsonObject, Text, find_profile
from ecrm.profiles.models import Consent
from ecrm.render.environment import TemplateCatalog
from ecrm.transactional.models import KEY_MAX, TransactionalMessage
from ecrm.types import ChannelKind, ConsentState, SendSource

STALE_CLAIM = timedelta(seconds=60)
TemplateName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=KEY_MAX, pattern=r"^[\x21-\x7e]+$")]


class MessageIn(BaseModel):
    """One message to one profile now: a template folder's name, a channel, and `data`, the
    template's extra values (`{{ data.order_id }}`)."""

    model_config = ConfigDict(extra="forbid")

    template: TemplateName
    external_id: Text
    channel: ChannelKind = ChannelKind.EMAIL
    data: JsonObject = Field(default_factory=dict)


class MessageOut(BaseModel):
    id: int = Field(description="the message's id")
    delivery_id: int = Field(description="its delivery: its status moves as the channel answers")
    status: str = "queued"


@dataclass(frozen=True)
class Answer:
    """A new or `replayed` answer; `send_id` is set when the message was accepted."""

    status: int
    body: dict[str, Any]
    send_id: int | None = None
    replayed: bool = False


def request_hash(document: Any) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(sessions: async_sessionmaker[AsyncSession], key: str | None, digest: str,
                now: datetime) -> int | Answer:
    """The new message row's id, or the answer a retry of `key` gets. A claim left without an
    answer for `STALE_CLAIM` (its process died before planning: planning and the answer commit
    together, so nothing was sent) is taken over."""
    values = {"idempotency_key": key, "request_hash": digest, "created_at": now}
    async with sessions.begin() as session:
        stmt = dialect_insert(session, TransactionalMessage).values(values)
        if key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
        claimed: int | None = await session.scalar(stmt.returning(TransactionalMessage.id))
        if claimed is not None:
            return claimed
        stored = await session.scalar(select(TransactionalMessage).where(TransactionalMessage.idempotency_key == key))
        if stored is not None and stored.request_hash == digest and stored.response_status is None:
            taken = await session.scalar(update(TransactionalMessage).where(
                TransactionalMessage.id == stored.id, TransactionalMessage.response_status.is_(None),
                TransactionalMessage.created_at < now - STALE_CLAIM).values(created_at=now)
                .returning(TransactionalMessage.id))
            if taken is not None:
                return int(taken)
    if stored is None:  # claimed and released (a failure) between our insert and read
        raise ApiError(409, "a request with this Idempotency-Key failed just now; try again", field="Idempotency-Key")
    return _replay(stored, digest)


def _replay(stored: TransactionalMessage, digest: str) -> Answer:
    if stored.request_hash != digest:
        raise ApiError(422, "this Idempotency-Key was used with another request body; use a new key for a new "
                            "message", field="Idempotency-Key")
    if stored.response_status is None or stored.response is None:
        raise ApiError(409, "a request with this Idempotency-Key is still being handled; retry in a moment",
                       field="Idempotency-Key")
    return Answer(stored.response_status, stored.response, stored.send_id, replayed=True)


async def accept(sessions: async_sessionmaker[AsyncSession], catalog: TemplateCatalog, message_id: int,
                 message: MessageIn, now: datetime) -> Answer:
    """Plan the message and store the answer on its row; a refusal is stored too. On any other
    error the claim is released."""
    try:
        async with sessions.begin() as session:
            answer = await _plan(session, catalog, message_id, message, now)
            await _store(session, message_id, answer)
        return answer
    except ApiError as refused:
        answer = Answer(refused.status, {"error": str(refused), **({"field": refused.field} if refused.field else {})})
        async with sessions.begin() as session:
            await _store(session, message_id, answer)
        return answer
    except BaseException:
        async with sessions.begin() as session:
            await session.execute(delete(TransactionalMessage).where(TransactionalMessage.id == message_id))
        raise


async def _store(session: AsyncSession, message_id: int, answer: Answer) -> None:
    await session.execute(update(TransactionalMessage).where(TransactionalMessage.id == message_id)
                          .values(response_status=answer.status, response=answer.body, send_id=answer.send_id))


async def _plan(session: AsyncSession, catalog: TemplateCatalog, message_id: int, message: MessageIn,
                now: datetime) -> Answer:
    transactional = _template_kind(catalog, message.template)
    if message.channel not in PAIRINGS:
        raise ApiError(422, f"channel {message.channel} cannot send messages yet", field="channel")
    profile = await find_profile(session, message.external_id)
    if profile is None:
        raise ApiError(404, f"no profile has external_id {message.external_id!r}", field="external_id")
    if not transactional and not await _consented(session, profile.id, message.channel):
        raise ApiError(409, f"profile {message.external_id!r} has not agreed to {message.channel} messages, and "
                            f"template {message.template!r} is not marked transactional (`transactional: true` in "
                            "its template.yaml)", field="external_id")
    send = await open_send(session, SendSource.TRANSACTIONAL, message_id, message.channel, message.template,
                           message.template, now, message.data)
    delivery_id = await session.scalar(insert(DELIVERIES).values(
        send_id=send.id, batch=0, profile_id=profile.id, channel=message.channel, variant="default",
        status="queued", attempts=0, queued_at=now).returning(DELIVERIES.c.id))
    await session.execute(insert(SEND_BATCHES).values(send_id=send.id, batch=0, attempt=0))
    await mark_planned(session, send.id, now)
    assert delivery_id is not None
    return Answer(202, MessageOut(id=message_id, delivery_id=delivery_id).model_dump(), send.id)


def _template_kind(catalog: TemplateCatalog, name: str) -> bool:
    """Whether the template is transactional; 422 naming `template` when it is missing or broken."""
    if not catalog.exists(name):
        raise ApiError(422, f"no template folder {name!r}", field="template")
    try:
        return catalog.is_transactional(name)
    except (SpecError, TemplateError) as exc:
        raise ApiError(422, f"template {name!r} cannot be used: {exc}", field="template") from None


async def _consented(session: AsyncSession, profile_id: int, channel: ChannelKind) -> bool:
    state = await session.scalar(select(Consent.state).where(Consent.profile_id == profile_id,
                                                             Consent.channel == channel.value))
    return state == ConsentState.GRANTED

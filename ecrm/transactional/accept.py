"""Accept one transactional message: claim its Idempotency-Key, check the request, and plan it
into a send of kind `transactional` with one queued delivery, all in one transaction.

Idempotency: the request first inserts its `transactional_messages` row, whose key is unique,
and stores its answer on it before committing; nothing is sent before the commit (the send is
enqueued after it). Of two requests racing with one key, the second one's insert waits for the
first transaction (PostgreSQL's unique index, SQLite's write lock) and then finds the row, so it
answers what the first answered and sends nothing. A later retry reads the row too: the same
body gets the stored status and answer, another body a 422. A refusal (404, 409, 422) is stored
like an acceptance. A request that fails otherwise rolls back whole, claim included.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import insert, select, update
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


async def submit(sessions: async_sessionmaker[AsyncSession], catalog: TemplateCatalog, key: str | None,
                 digest: str, message: MessageIn, now: datetime) -> Answer:
    """The answer to the request: new (the message planned, or refused) or the stored one."""
    async with sessions.begin() as session:
        message_id = await _claim(session, key, digest, now)
        if message_id is None:
            stored = await session.scalar(select(TransactionalMessage).where(
                TransactionalMessage.idempotency_key == key))
            if stored is None:  # not seen: rows commit answered
                raise ApiError(409, "a request with this Idempotency-Key is being handled; retry in a moment",
                               field="Idempotency-Key")
            return replay(stored.request_hash, stored.response_status, stored.response, stored.send_id, digest)
        try:
            profile_id, transactional = await _check(session, catalog, message)
            if not transactional and not await _consented(session, profile_id, message.channel):
                raise unconsented(message)
        except ApiError as refused:  # nothing written but the claim: the refusal is its answer
            answer = Answer(refused.status, refusal(refused))
        else:
            answer = await _plan(session, message_id, profile_id, message, now)
        await _store(session, message_id, answer)
    return answer


def refusal(refused: ApiError) -> dict[str, Any]:
    """A refusal's stored answer."""
    return {"error": str(refused), **({"field": refused.field} if refused.field else {})}


def unconsented(message: MessageIn) -> ApiError:
    return ApiError(409, f"profile {message.external_id!r} has not agreed to {message.channel} messages, "
                         f"and template {message.template!r} is not marked transactional "
                         "(`transactional: true` in its template.yaml)", field="external_id")


def unknown_profile(message: MessageIn) -> ApiError:
    return ApiError(404, f"no profile has external_id {message.external_id!r}", field="external_id")


async def _claim(session: AsyncSession, key: str | None, digest: str, now: datetime) -> int | None:
    """The new row's id; None when `key` is stored already (a retry, or a request racing ours)."""
    stmt = dialect_insert(session, TransactionalMessage).values(idempotency_key=key, request_hash=digest,
                                                                 created_at=now)
    if key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
    message_id: int | None = await session.scalar(stmt.returning(TransactionalMessage.id))
    return message_id


def replay(request_hash: str, status: int | None, response: dict[str, Any] | None, send_id: int | None,
           digest: str) -> Answer:
    """The stored answer to a retry with a key seen before, if its body is the same."""
    if status is None or response is None:  # not answered: rows commit answered
        raise ApiError(409, "a request with this Idempotency-Key is being handled; retry in a moment",
                       field="Idempotency-Key")
    if request_hash != digest:
        raise ApiError(422, "this Idempotency-Key was used with another request body; use a new key for a new "
                            "message", field="Idempotency-Key")
    return Answer(status, response, send_id, replayed=True)


async def _store(session: AsyncSession, message_id: int, answer: Answer) -> None:
    await session.execute(update(TransactionalMessage).where(TransactionalMessage.id == message_id)
                          .values(response_status=answer.status, response=answer.body, send_id=answer.send_id))


async def _check(session: AsyncSession, catalog: TemplateCatalog, message: MessageIn) -> tuple[int, bool]:
    """The profile's id and whether the template is transactional, or a refusal naming the field."""
    transactional = precheck(catalog, message)
    profile = await find_profile(session, message.external_id)
    if profile is None:
        raise unknown_profile(message)
    return profile.id, transactional


def precheck(catalog: TemplateCatalog, message: MessageIn) -> bool:
    """What this process can check without the database: whether the template is transactional,
    or a refusal naming the template or the channel."""
    transactional = _template_kind(catalog, message.template)
    if message.channel not in PAIRINGS:
        raise ApiError(422, f"channel {message.channel} cannot send messages yet", field="channel")
    return transactional


async def _plan(session: AsyncSession, message_id: int, profile_id: int, message: MessageIn,
                now: datetime) -> Answer:
    send = await open_send(session, SendSource.TRANSACTIONAL, message_id, message.channel, message.template,
                           message.template, now, message.data)
    delivery_id = await session.scalar(insert(DELIVERIES).values(
        send_id=send.id, batch=0, profile_id=profile_id, channel=message.channel, variant="default",
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

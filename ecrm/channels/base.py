"""The channel seam: what a provider adapter receives, returns and raises.

An adapter implements `send(message) -> SendResult` and `close()`, and translates every
transport error into `TransientSendError` (retry later) or `PermanentSendError` (never
retry). `send_many` runs a list through an adapter with its bounded concurrency and keeps
each outcome in place, so one refused address never sinks a batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from ecrm.errors import SendError, TransientSendError
from ecrm.types import ChannelKind


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    sender: str
    recipient: str
    data: bytes
    message_id: str


@dataclass(frozen=True, slots=True)
class SendResult:
    provider: str
    provider_message_id: str


M_contra = TypeVar("M_contra", contravariant=True)


class Channel(Protocol[M_contra]):
    kind: ClassVar[ChannelKind]
    provider: ClassVar[str]
    max_concurrency: int

    async def send(self, message: M_contra) -> SendResult: ...

    async def close(self) -> None: ...


Outcome = SendResult | SendError | None


async def send_many(channel: Channel[M_contra], messages: Sequence[M_contra | None]) -> list[Outcome]:
    """Send every message (None entries are skipped) with at most `max_concurrency` in flight.

    If the caller is cancelled, no new message is started, the ones in flight finish, and
    the outcomes gathered so far are returned through `SendInterrupted`, so the caller can
    record exactly what was handed over before it gives up.
    """
    outcomes: list[Outcome] = [None] * len(messages)
    pending = iter(range(len(messages)))
    stop = asyncio.Event()

    async def drain() -> None:
        for index in pending:
            if stop.is_set():
                return
            message = messages[index]
            if message is not None:
                outcomes[index] = await _send_one(channel, message)

    drainers = asyncio.gather(*(drain() for _ in range(max(1, min(channel.max_concurrency, len(messages))))))
    try:
        await asyncio.shield(drainers)
    except asyncio.CancelledError:
        stop.set()
        await drainers
        raise SendInterrupted(outcomes) from None
    return outcomes


async def _send_one(channel: Channel[M_contra], message: M_contra) -> SendResult | SendError:
    try:
        return await channel.send(message)
    except SendError as exc:
        return exc
    except Exception as exc:  # an adapter bug must not lose the batch's other outcomes
        return TransientSendError(f"unexpected {type(exc).__name__} in {channel.provider}: {exc}")


class SendInterrupted(Exception):
    """The send was cancelled part-way; `outcomes` holds what completed (None = not sent)."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__("send interrupted")
        self.outcomes = outcomes

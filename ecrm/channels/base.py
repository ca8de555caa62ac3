"""The channel seam: what a provider adapter receives, returns and raises.

An adapter implements `send(message) -> SendResult` and `close()`, and translates every
transport error into `TransientSendError` (retry later), `PermanentSendError` (never retry)
or `UncertainSendError` (it may have gone out). Anything else an adapter raises is a bug: it
is logged with its traceback and the message recorded as `unknown`, never silently retried,
since an HTTP provider may have accepted the request before the adapter failed. `send_many`
runs a list through an adapter with its bounded concurrency and keeps each outcome in place,
so one refused address never sinks a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from ecrm.errors import SendError, UncertainSendError
from ecrm.types import ChannelKind

logger = logging.getLogger(__name__)


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class SendResult:
    provider: str
    provider_message_id: str
    parts: int | None = None  # SMS segments the message went out in; None on other channels


M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)


class Channel(Protocol[M_contra]):
    kind: ClassVar[ChannelKind]
    provider: ClassVar[str]
    max_concurrency: int

    async def send(self, message: M_contra) -> SendResult: ...

    async def close(self) -> None: ...


Outcome = SendResult | SendError | None


class Progress(Protocol):
    """Where a sender notes each message as it goes (`deliveries.journal`): `writing` just
    before its content is handed to the provider, `done` once the provider answered."""

    def writing(self, index: int) -> None: ...

    def done(self, index: int, outcome: Outcome) -> None: ...


class Work(Generic[M]):
    """The messages of one `send_many` call, handed out one at a time to whoever sends them.
    `take` returns (index, message) or None once everything is taken or the send is stopping;
    a sender calls `writing` just before a message's content goes out and `done` with its
    outcome, both passed on to `progress` when there is one."""

    def __init__(self, messages: Sequence[M | None], progress: Progress | None = None) -> None:
        self.messages = messages
        self.outcomes: list[Outcome] = [None] * len(messages)
        self.stopping = False
        self.progress = progress
        self._indexes = iter(range(len(messages)))

    def take(self) -> tuple[int, M] | None:
        if self.stopping:
            return None
        for index in self._indexes:
            message = self.messages[index]
            if message is not None:
                return index, message
        return None

    def writing(self, index: int) -> None:
        if self.progress is not None:
            self.progress.writing(index)

    def done(self, index: int, outcome: SendResult | SendError) -> None:
        self.outcomes[index] = outcome
        if self.progress is not None:
            self.progress.done(index, outcome)


@runtime_checkable
class StreamingChannel(Protocol[M]):
    """A channel that sends a whole `Work` itself (e.g. several messages per round trip)."""

    async def send_work(self, work: Work[M]) -> None: ...


async def send_many(channel: Channel[M_contra], messages: Sequence[M_contra | None],
                    progress: Progress | None = None) -> list[Outcome]:
    """Send every message (None entries are skipped) with at most `max_concurrency` in flight.

    If the caller is cancelled, no new message is started, the ones in flight finish, and
    the outcomes gathered so far are returned through `SendInterrupted`, so the caller can
    record exactly what was handed over before it gives up.
    """
    work: Work[M_contra] = Work(messages, progress)
    sending: asyncio.Future[Any]
    if isinstance(channel, StreamingChannel):
        sending = asyncio.ensure_future(channel.send_work(work))
    else:
        lanes = max(1, min(channel.max_concurrency, len(messages)))
        sending = asyncio.gather(*(_send_each(channel, work) for _ in range(lanes)))
    try:
        await asyncio.shield(sending)
    except asyncio.CancelledError:
        work.stopping = True
        await sending
        raise SendInterrupted(work.outcomes) from None
    return work.outcomes


async def _send_each(channel: Channel[M_contra], work: Work[M_contra]) -> None:
    while (item := work.take()) is not None:
        work.writing(item[0])
        work.done(item[0], await _send_one(channel, item[1]))


async def _send_one(channel: Channel[M_contra], message: M_contra) -> SendResult | SendError:
    try:
        return await channel.send(message)
    except SendError as exc:
        return exc
    except Exception as exc:  # an adapter bug must not lose the batch's other outcomes
        logger.exception("%s adapter raised %s; the message is recorded unknown (it may have been sent)",
                         channel.provider, type(exc).__name__)
        return UncertainSendError(f"unexpected {type(exc).__name__} in the {channel.provider} adapter: {exc}")


class SendInterrupted(Exception):
    """The send was cancelled part-way; `outcomes` holds what completed (None = not sent)."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__("send interrupted")
        self.outcomes = outcomes

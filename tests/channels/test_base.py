"""send_many over a channel that sends one message at a time (the generic lanes, as an SMS or
push adapter will use): bounded concurrency, outcomes in place, cancellation reports what finished."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from ecrm.channels.base import SendInterrupted, SendResult, StreamingChannel, send_many
from ecrm.errors import PermanentSendError, UncertainSendError
from ecrm.types import ChannelKind


class OneAtATime:
    """Sends by sleeping a little; 'refused' is refused, 'bug' raises what an adapter bug would."""

    kind: ClassVar[ChannelKind] = ChannelKind.SMS
    provider: ClassVar[str] = "test"

    def __init__(self, max_concurrency: int, delay: float = 0.001) -> None:
        self.max_concurrency, self.delay = max_concurrency, delay
        self.in_flight = self.peak = 0
        self.sent: list[str] = []

    async def send(self, message: str) -> SendResult:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if message == "refused":
                raise PermanentSendError("number does not exist")
            if message == "bug":
                raise KeyError("oops")
            self.sent.append(message)
            return SendResult(self.provider, f"id-{message}")
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        return None


async def test_outcomes_stay_in_place_and_concurrency_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    channel = OneAtATime(max_concurrency=3)
    assert not isinstance(channel, StreamingChannel)
    messages: list[str | None] = [*(f"m{i}" for i in range(20)), "refused", None, "bug"]
    outcomes = await send_many(channel, messages)
    sent = [o.provider_message_id for o in outcomes[:20] if isinstance(o, SendResult)]
    assert sent == [f"id-m{i}" for i in range(20)]
    assert isinstance(outcomes[20], PermanentSendError)
    assert outcomes[21] is None  # nothing to send
    assert isinstance(outcomes[22], UncertainSendError) and "unexpected KeyError" in outcomes[22].reason
    assert channel.peak == 3
    (bug,) = [r for r in caplog.records if r.levelname == "ERROR"]  # an adapter bug is loud, with its traceback
    assert "test adapter raised KeyError" in bug.getMessage() and bug.exc_info is not None


async def test_a_cancelled_send_finishes_what_started_and_starts_nothing_new() -> None:
    channel = OneAtATime(max_concurrency=2, delay=0.02)
    sending = asyncio.create_task(send_many(channel, [f"m{i}" for i in range(50)]))
    await asyncio.sleep(0.05)
    sending.cancel()
    with pytest.raises(SendInterrupted) as interrupted:
        await sending
    done = [i for i, o in enumerate(interrupted.value.outcomes) if isinstance(o, SendResult)]
    assert 0 < len(done) < 50 and done == list(range(len(done)))
    assert channel.sent == [f"m{i}" for i in done] and channel.in_flight == 0

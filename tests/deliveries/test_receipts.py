"""Provider receipts go through the state machine: in any order and any number of times, a
delivery only ever moves forward; the provider's words are kept in `error` and each state's
time is the `now` the receipts were applied at."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.deliveries.models import Delivery
from ecrm.deliveries.receipts import Receipt, apply_receipts
from ecrm.deliveries.states import DeliveryStatus, Reason, State
from tests.conftest import T0
from tests.factories import add_delivery, add_profile

S = DeliveryStatus
QUEUED: State = (S.QUEUED, None)
SENT: State = (S.SENT, None)
DELIVERED: State = (S.DELIVERED, None)
UNKNOWN: State = (S.UNKNOWN, Reason.INTERRUPTED)
SOFT: State = (S.BOUNCED, Reason.SOFT)
HARD: State = (S.BOUNCED, Reason.HARD)
PERMANENT: State = (S.FAILED, Reason.PERMANENT)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
_profiles = itertools.count(1)


async def delivery_in(sessions: async_sessionmaker[AsyncSession], state: State, error: str | None = None) -> int:
    """A new delivery put straight into `state`."""
    profile_id = await add_profile(sessions, external_id=f"r{next(_profiles)}")
    async with sessions.begin() as session:
        delivery_id = (await add_delivery(session, profile_id=profile_id)).id
        await session.execute(update(Delivery).where(Delivery.id == delivery_id)
                              .values(status=state[0], reason=state[1], error=error))
    return delivery_id


async def row(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> Delivery:
    async with sessions() as session:
        return (await session.execute(select(Delivery).where(Delivery.id == delivery_id))).scalar_one()


def state_of(delivery: Delivery) -> State:
    return S(delivery.status), None if delivery.reason is None else Reason(delivery.reason)


async def test_a_late_sent_receipt_after_delivered_leaves_an_unknown_delivery_delivered(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, UNKNOWN)
    assert await apply_receipts(sessions, [Receipt(delivery_id, DELIVERED)], T1) == 1
    assert await apply_receipts(sessions, [Receipt(delivery_id, SENT)], T2) == 0
    delivery = await row(sessions, delivery_id)
    assert state_of(delivery) == DELIVERED
    assert delivery.delivered_at == T1
    assert delivery.sent_at is None


async def test_the_same_receipt_twice_changes_nothing_the_second_time(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, SENT)
    assert await apply_receipts(sessions, [Receipt(delivery_id, DELIVERED, "250 ok")], T1) == 1
    assert await apply_receipts(sessions, [Receipt(delivery_id, DELIVERED, "250 again")], T2) == 0
    delivery = await row(sessions, delivery_id)
    assert state_of(delivery) == DELIVERED
    assert (delivery.delivered_at, delivery.error) == (T1, "250 ok")


async def test_a_repeated_receipt_in_one_call_counts_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, SENT)
    receipts = [Receipt(delivery_id, DELIVERED), Receipt(delivery_id, DELIVERED)]
    assert await apply_receipts(sessions, receipts, T1) == 1
    assert state_of(await row(sessions, delivery_id)) == DELIVERED


async def test_a_soft_bounce_followed_by_delivered_becomes_delivered(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, SENT)
    assert await apply_receipts(sessions, [Receipt(delivery_id, SOFT, "452 mailbox full")], T1) == 1
    bounced = await row(sessions, delivery_id)
    assert state_of(bounced) == SOFT
    assert (bounced.bounced_at, bounced.error) == (T1, "452 mailbox full")
    assert await apply_receipts(sessions, [Receipt(delivery_id, DELIVERED)], T2) == 1
    delivered = await row(sessions, delivery_id)
    assert state_of(delivered) == DELIVERED
    assert delivered.delivered_at == T2
    assert delivered.error == "452 mailbox full"  # a receipt without words keeps the earlier ones


async def test_a_hard_bounce_after_delivered_wins(sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, DELIVERED)
    assert await apply_receipts(sessions, [Receipt(delivery_id, HARD, "550 5.1.1 no such user")], T1) == 1
    delivery = await row(sessions, delivery_id)
    assert state_of(delivery) == HARD
    assert (delivery.bounced_at, delivery.error) == (T1, "550 5.1.1 no such user")
    # and it is final: neither a soft bounce nor a late delivered moves it
    assert await apply_receipts(sessions, [Receipt(delivery_id, SOFT), Receipt(delivery_id, DELIVERED)], T2) == 0
    assert state_of(await row(sessions, delivery_id)) == HARD


async def test_a_soft_bounce_after_delivered_is_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, DELIVERED)
    assert await apply_receipts(sessions, [Receipt(delivery_id, SOFT, "452 mailbox full")], T1) == 0
    delivery = await row(sessions, delivery_id)
    assert state_of(delivery) == DELIVERED
    assert (delivery.bounced_at, delivery.error) == (None, None)


async def test_a_receipt_for_a_queued_delivery_is_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, QUEUED)
    receipts = [Receipt(delivery_id, DELIVERED, "250 ok"), Receipt(delivery_id, HARD, "550 no")]
    assert await apply_receipts(sessions, receipts, T1) == 0
    delivery = await row(sessions, delivery_id)
    assert state_of(delivery) == QUEUED
    assert (delivery.delivered_at, delivery.bounced_at, delivery.error) == (None, None, None)


async def test_only_the_receipts_the_state_machine_allows_are_counted(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    sent, queued, failed = (await delivery_in(sessions, SENT), await delivery_in(sessions, QUEUED),
                            await delivery_in(sessions, PERMANENT, "550 refused"))
    receipts = [Receipt(sent, HARD, "550 gone"), Receipt(queued, DELIVERED), Receipt(failed, DELIVERED),
                Receipt(failed + 1000, DELIVERED)]
    assert await apply_receipts(sessions, receipts, T1) == 1
    assert [state_of(await row(sessions, i)) for i in (sent, queued, failed)] == [HARD, QUEUED, PERMANENT]
    assert (await row(sessions, failed)).error == "550 refused"


async def test_a_failure_receipt_keeps_the_provider_words_and_its_time(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, SENT)
    assert await apply_receipts(sessions, [Receipt(delivery_id, PERMANENT, "554 rejected as spam")], T1) == 1
    delivery = await row(sessions, delivery_id)
    assert state_of(delivery) == PERMANENT
    assert (delivery.failed_at, delivery.error) == (T1, "554 rejected as spam")
    assert (delivery.delivered_at, delivery.bounced_at) == (None, None)


async def test_an_unknown_delivery_settled_as_sent_takes_the_given_time(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await delivery_in(sessions, UNKNOWN, "interrupted")
    assert await apply_receipts(sessions, [Receipt(delivery_id, SENT)], T2) == 1
    delivery = await row(sessions, delivery_id)
    assert state_of(delivery) == SENT
    assert (delivery.sent_at, delivery.error) == (T2, "interrupted")


def test_a_receipt_whose_reason_does_not_fit_its_status_is_refused() -> None:
    with pytest.raises(ValueError):
        Receipt(1, (S.BOUNCED, None))
    with pytest.raises(ValueError):
        Receipt(1, (S.DELIVERED, Reason.SOFT))

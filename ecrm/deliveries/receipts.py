"""What providers say happened to a message after it was sent (delivered, bounced, failed),
applied to deliveries through the state machine.

Every feedback source (the demo's mailbox, provider webhooks) hands its receipts here; none
writes a delivery's status itself. A receipt that the state machine refuses (a `sent` callback
after `delivered`, the same receipt twice) changes nothing, so receipts may arrive in any order
and any number of times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.deliveries.states import State, check, sql_guard
from ecrm.deliveries.store import receipt_assignments


@dataclass(frozen=True, slots=True)
class Receipt:
    delivery_id: int
    state: State
    detail: str | None = None  # the provider's own words (a bounce's diagnostic, an error code)
    provider_message_id: str | None = None  # given: applied only to the delivery sent as that message

    def __post_init__(self) -> None:
        check(*self.state)


_STATEMENTS: dict[tuple[State, bool], TextClause] = {}


def _statement(state: State, by_message: bool) -> TextClause:
    statement = _STATEMENTS.get((state, by_message))
    if statement is None:
        sets = receipt_assignments(state, detail=":detail", now=":now")
        message = " AND d.provider_message_id = :message" if by_message else ""
        statement = _STATEMENTS[state, by_message] = text(
            f"UPDATE deliveries AS d SET {sets} WHERE d.id = :id{message} AND {sql_guard(state)}")
    return statement


async def apply_receipts(sessions: async_sessionmaker[AsyncSession], receipts: Sequence[Receipt],
                         now: datetime) -> int:
    """Apply every receipt the state machine allows, in one transaction; return how many
    deliveries changed."""
    changed = 0
    async with sessions.begin() as session:
        changed = await apply_in(session, receipts, now)
    return changed


async def apply_in(session: AsyncSession, receipts: Sequence[Receipt], now: datetime) -> int:
    """`apply_receipts` inside the caller's transaction."""
    by_state: dict[tuple[State, bool], list[dict[str, Any]]] = defaultdict(list)
    for receipt in receipts:
        by_message = receipt.provider_message_id is not None
        by_state[receipt.state, by_message].append({"id": receipt.delivery_id, "detail": receipt.detail, "now": now,
                                                    **({"message": receipt.provider_message_id} if by_message else {})})
    changed = 0
    for (state, by_message), rows in by_state.items():
        for row in rows:  # one by one: a rowcount per receipt says whether it applied
            result = await session.execute(_statement(state, by_message), row)
            changed += int(cast(CursorResult[Any], result).rowcount or 0)
    return changed

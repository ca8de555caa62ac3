"""The database work of planning and sending a batch, behind one interface with one
implementation per database.

A send is planned into batches of queued deliveries, and each batch is sent by one job in
chunks (`deliveries.send`). Those steps are the send path's whole database load, six
transactions per thousand messages, so they have their own adapter:

- `SqlBatchStore`: SQLAlchemy Core, for any database (SQLite in the demo and the tests).
- `PgBatchStore`: the same statements on a raw asyncpg pool, for PostgreSQL. It spares
  SQLAlchemy's execution layer (0.8 against 0.25 ms of client CPU for a small transaction,
  `python -m bench.txn_overhead`), records a chunk in one autocommit statement, and reads rows
  without building SQLAlchemy rows (`python -m bench.stages`).

Both keep the same claims protocol (`deliveries.claims`): a job owns its batch by attempt
number, and the chunk being handed to the provider is marked in flight. Both write statuses
only as the state machine allows (`deliveries.states`, through `deliveries.store`), and take
the time from the clock they are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ecrm.deliveries.claims import Owner
from ecrm.deliveries.sends import SendRef
from ecrm.deliveries.states import DeliveryStatus, Reason, State
from ecrm.deliveries.store import Change
from ecrm.render.recipient import Recipient

Span = tuple[int, int]  # the first and last delivery id of a chunk
ERASED = "not sent: the profile was erased"
GONE: State = (DeliveryStatus.SKIPPED, Reason.ERASED)


@dataclass(frozen=True, slots=True)
class Started:
    owner: Owner
    recipients: list[Recipient]  # queued, in delivery id order
    erased: int  # deliveries skipped because their profile was erased after planning


def span(chunk: Sequence[Recipient] | None) -> Span | None:
    return (chunk[0].delivery_id, chunk[-1].delivery_id) if chunk else None


class BatchStore(Protocol):
    async def send(self, send_id: int) -> SendRef:
        """What a send job needs to know of its send (one read; a job of a new send does it first)."""

    async def queue_members(self, send_id: int, batch: int, profile_ids: Sequence[int], channel: str) -> int:
        """Queue a delivery in `batch` for each profile not yet in the send, and open the batch if
        any was queued; return how many. Profiles erased since the audience was read are left out."""

    async def start(self, send_id: int, batch: int, first_chunk: int, channel: str = "email") -> Started:
        """Take the batch over: mark what a dead owner left in flight `unknown`, skip what was
        planned for profiles erased since, read what is queued (in delivery id order), and mark
        the first `first_chunk` recipients in flight. On `push`, each recipient's subscriptions
        are read too (`push.targets`)."""

    async def record(self, owner: Owner, changes: Sequence[Change], following: Span | None) -> bool:
        """Write a chunk's outcomes and mark `following` in flight (None: nothing), atomically.
        The outcomes are written even if a newer attempt owns the batch; then return False."""

    async def close(self, send_id: int, batch: int | None) -> bool:
        """Close `batch` if none of its deliveries is queued; mark the send done if it was the
        last open batch and the send is planned. Return True if the send is done."""

    async def warm(self) -> None:
        """Open what the first job would otherwise open (a connection pool)."""

    async def aclose(self) -> None: ...

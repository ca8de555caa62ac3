"""The tables of stage 6: sends, their batches, and deliveries.

A send is what deliveries belong to: one source's messages over one channel with one template.
Its source is a campaign run, a journey step or a transactional request, known here only by
kind and id (`SendSource`); the stage that owns the source decides what a finished send means
for it. A send is planned into batches; it is done once planned with no batch open.

A delivery is one message to one person on one channel, and its status history.

The history is a timestamp per state (queued, sent, delivered, bounced; `failed_at` for failed,
unknown and skipped: when it ended without a receipt), so a row
tells when it reached each state without a second table to write on the hot path.

No index covers a column that changes while sending (status, provider ids, timestamps), and
pages keep free space, so PostgreSQL records each send as a HOT update without touching any
index. A row grows by about 60 bytes when sent (provider, Message-ID, sent_at), from about 90
to 150: the new version only fits on its page if the page was filled to at most 90/(90+150),
hence fillfactor 35. At 80, three updates in four found no room, moved to another page and
wrote every index: recording a row cost PostgreSQL 19-22 µs against 7-9 µs at 35, for a
table about 15% larger (`python -m bench.delivery_rows`). Rows are found by (send, batch); a
batch has at most a few hundred rows.

A delivery is unique per (profile, send, channel): that is what makes planning idempotent (a
re-launch inserts only people not yet in the send), and, profile first, it also finds a
profile's deliveries. One integer index replaced a text idempotency key and a profile index:
the plan's insert writes three indexes, not four.

Neither `send_id` nor `profile_id` has a foreign key. PostgreSQL checks one row by row, and each
check locks the referenced row (FOR KEY SHARE): on the plan's bulk insert the two cost 15-25 µs
of server CPU per delivery, more than the insert itself (`python -m bench.delivery_rows`).
Instead, rows are only written by planning, for the send it has just read and the profiles the
audience query has just returned; sends are never deleted; and a profile is erased with
`ecrm.profiles.erase`, which deletes its deliveries in the same transaction. A profile erased
while its delivery was being planned leaves a row whose profile is gone: the send job skips it
(reason `erased`) instead of sending.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, ForeignKey, Index, SmallInteger, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, Json, UtcDateTime
from ecrm.deliveries.states import DeliveryStatus


class Send(Base):
    """One source's messages over one channel: what a send job composes them from (channel,
    template, label) and where planning and sending stand."""

    __tablename__ = "sends"
    __table_args__ = (UniqueConstraint("source_kind", "source_id", "channel"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_kind: Mapped[str] = mapped_column(String(24))  # a SendSource
    source_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(200))  # the campaign's name, for templates and Feedback-ID
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    planned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    data: Mapped[dict[str, Any] | None] = mapped_column(Json)  # what its templates see as `data`


SENDS = cast(Table, Send.__table__)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_send_id_batch", "send_id", "batch"),
        UniqueConstraint("profile_id", "send_id", "channel"),
        {"postgresql_with": {"fillfactor": 35}},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    send_id: Mapped[int] = mapped_column(Id)  # no foreign key: see the module's doc
    batch: Mapped[int]
    profile_id: Mapped[int] = mapped_column(Id)  # no foreign key: see the module's doc
    channel: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(32), default="default")
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED)
    reason: Mapped[str | None] = mapped_column(String(24))  # a deliveries.states.Reason
    attempts: Mapped[int] = mapped_column(default=0)
    parts: Mapped[int | None] = mapped_column(SmallInteger)  # SMS segments it went out in
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(250))
    error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    bounced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# The Core table, for the hot path's bulk statements (they skip the ORM's per-row work).
DELIVERIES = cast(Table, Delivery.__table__)


class SendBatch(Base):
    """One batch of a send: open while any of its deliveries is queued, done when none is.
    `attempt` and the in-flight range are the send job's claim (see `deliveries.claims`)."""

    __tablename__ = "send_batches"

    send_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    batch: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    inflight_first: Mapped[int | None] = mapped_column(BigInteger)
    inflight_last: Mapped[int | None] = mapped_column(BigInteger)


SEND_BATCHES = cast(Table, SendBatch.__table__)


class EarlyReceipt(Base):
    """A provider's receipt that arrived before the send recorded the message it is about
    (a status callback can beat the send's own write of the message id): kept here, and applied
    by `deliveries.early_receipts` once the message id is stored. Rare, so it has a table of its
    own instead of a column every delivery would carry."""

    __tablename__ = "early_receipts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    provider_message_id: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(24))
    detail: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)

"""The `received_webhooks` table: every shop webhook as it arrived, until it is mapped.

A row is written before the shop gets its 2xx, so nothing acknowledged is lost; (provider,
delivery_id) is unique, so a redelivery is recorded once. After a successful mapping the body
is cleared (the shop's copy of the customer's data is not kept twice) and the row stays, to
recognise a late redelivery. A failed mapping keeps its body and error for a retry.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, UtcDateTime


class WebhookStatus(StrEnum):
    RECEIVED = "received"  # stored, not mapped yet
    MAPPED = "mapped"
    FAILED = "failed"  # mapping raised: `error` says why, `ecrm shop retry` tries again


class ReceivedWebhook(Base):
    __tablename__ = "received_webhooks"
    __table_args__ = (UniqueConstraint("provider", "delivery_id"),
                      Index("ix_received_webhooks_status_received_at", "status", "received_at"),
                      # the mapping's claim: the oldest still received (migration 0017)
                      Index("ix_received_webhooks_received", "id", postgresql_where=text("status = 'received'"),
                            sqlite_where=text("status = 'received'")))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(String(100))
    shop: Mapped[str] = mapped_column(String(300))  # the sending shop's domain or site URL
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(2000))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    mapped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

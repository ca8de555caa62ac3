"""The `orders` table: one row per shop order, upserted by the shop's own order id.

Money is exact: `total_e4` holds the total in ten-thousandths of the currency unit (an integer,
see `ecrm.orders.money`), so sums and comparisons are exact on SQLite as on PostgreSQL; a line
item's `unit_price` is kept in the JSON as a decimal string ("19.99"). Times have no Python-side
default: whoever writes a row sets them from its clock. An order goes with its profile (the
foreign key cascades on erase).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, Json, UtcDateTime


class OrderStatus(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class Order(Base):
    __tablename__ = "orders"
    # Leads with profile_id, so it also serves the foreign key's cascade and per-profile metrics.
    # order metrics group a profile's orders by this index alone on PostgreSQL (an index-only scan)
    __table_args__ = (Index("ix_orders_profile_id_placed_at", "profile_id", "placed_at",
                            postgresql_include=["status", "currency", "total_e4"]),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(200), unique=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    total_e4: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

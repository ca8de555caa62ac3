"""The responses table: one row per thing a person did in reply to a delivery.

`occurred_at` has no Python-side default: whoever records a response sets it from its clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, Json, UtcDateTime


class Response(Base):
    __tablename__ = "responses"
    # days since the last engagement reads opens, clicks and replies by time (segments, migration 0012)
    __table_args__ = (Index("ix_responses_kind_occurred_at_profile_id", "kind", "occurred_at", "profile_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"), index=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    properties: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)

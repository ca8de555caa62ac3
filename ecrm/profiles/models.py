"""Tables of stage 1: profiles, consents and events.

Times have no Python-side default: whoever writes a row sets them from its clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, Json, UtcDateTime


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    phone_invalid: Mapped[str | None] = mapped_column(String(200))  # why the provider refused the number
    phone_invalid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(35), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    traits: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Consent(Base):
    """Whether a profile may be contacted on one channel, who said so, and when."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("profile_id", "channel"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Event(Base):
    __tablename__ = "events"
    # Segments read one event name over a time range from the first index alone, and one
    # profile's events of a name from the second (which also serves the foreign key's cascade).
    __table_args__ = (Index("ix_events_name_occurred_at_profile_id", "name", "occurred_at", "profile_id"),
                      Index("ix_events_profile_id_name_occurred_at", "profile_id", "name", "occurred_at"),
                      # a client's own event id: a retried batch stores each event once
                      Index("uq_events_profile_id_client_id", "profile_id", "client_id", unique=True))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    client_id: Mapped[str | None] = mapped_column(String(200))

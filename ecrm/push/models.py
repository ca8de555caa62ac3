"""The `push_subscriptions` table: one browser's web push subscription, owned by one profile.

The endpoint (the push service URL the browser gave) is unique: a browser belongs to whoever
subscribed on it last. `p256dh` and `auth` are the browser's keys as it gives them (base64url).
`last_success_at` and `invalid_at` are for sending (a 404/410 from the push service marks a
subscription invalid). A subscription goes with its profile (the foreign key cascades on erase).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, UtcDateTime

MAX_ENDPOINT = 2000
MAX_USER_AGENT = 500


class PushSubscription(Base):
    __tablename__ = "push_subscriptions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(MAX_ENDPOINT), unique=True)
    p256dh: Mapped[str] = mapped_column(String(100))
    auth: Mapped[str] = mapped_column(String(32))
    user_agent: Mapped[str | None] = mapped_column(String(MAX_USER_AGENT))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    invalid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

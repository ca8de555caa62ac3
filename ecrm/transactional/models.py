"""The `transactional_messages` table: one row per accepted `POST /v1/messages`, the source of
its send (`sends.source_kind = 'transactional'`, `source_id` = this row's id).

A request with an `Idempotency-Key` claims its row (the key is unique) before anything is
sent; the answer is stored on it, so a retry gets the same status and body. `request_hash` is
the SHA-256 of the request's canonical JSON, to tell a retry from another request reusing a key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, Json, UtcDateTime

KEY_MAX = 255


class TransactionalMessage(Base):
    __tablename__ = "transactional_messages"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(KEY_MAX), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(SmallInteger)  # None: still being handled
    response: Mapped[dict[str, Any] | None] = mapped_column(Json)
    send_id: Mapped[int | None] = mapped_column(Id)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

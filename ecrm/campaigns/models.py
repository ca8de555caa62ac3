"""Tables of stage 3: a campaign (its validated spec) and its runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, Json, UtcDateTime
from ecrm.types import RunStatus


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(500))
    spec: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CampaignRun(Base):
    """One sending of a campaign. Its key makes re-launching the same run a resume, not a resend.
    Its deliveries belong to its send (`deliveries.models.Send`, source `campaign_run`)."""

    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign_id", "run_key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    run_key: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.SCHEDULED)
    scheduled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    plans: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    launcher: Mapped[str | None] = mapped_column(String(300))  # `host:pid` sending it in-process (liveness)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

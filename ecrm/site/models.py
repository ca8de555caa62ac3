"""The `site_visitors` table: which profile a browser's visitor id (the script's first-party
cookie) stands for. A new visitor gets an anonymous profile (`anon:<visitor id>`); when they
become known the row points at their real profile instead."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, UtcDateTime


class SiteVisitor(Base):
    __tablename__ = "site_visitors"

    visitor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

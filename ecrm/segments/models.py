"""The `segment_members` table: who is in each named segment now, and since when.

It is what `segment_entered` / `segment_exited` events are the changes of (`ecrm.segments.refresh`).
A row goes with its profile (the foreign key cascades on erase); a segment file removed from
`segments_dir` keeps its rows, so putting it back does not make everyone enter again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, UtcDateTime


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment: Mapped[str] = mapped_column(String(100), primary_key=True)
    profile_id: Mapped[int] = mapped_column(Id, ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True,
                                            index=True)
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)

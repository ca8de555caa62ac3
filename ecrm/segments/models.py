"""Segment tables.

`segment_members`: who is in each named segment now, and since when. It is what
`segment_entered` / `segment_exited` events are the changes of (`ecrm.segments.refresh`). A
segment file removed from `segments_dir` keeps its rows, so putting it back does not make
everyone enter again.

`rfm_rankings` and `rfm_ranks`: the stored RFM quintiles that RFM rules read
(`ecrm.segments.rankings`).

A membership goes with its profile (the foreign key cascades on erase). A ranking's rows have
no foreign key: its row-by-row check made storing a ranking of 570,000 buyers several times
slower; `ecrm.profiles.erase` deletes them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ecrm.db import Base, Id, UtcDateTime


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment: Mapped[str] = mapped_column(String(100), primary_key=True)
    profile_id: Mapped[int] = mapped_column(Id, ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True,
                                            index=True)
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RfmRanking(Base):
    """When the RFM quintiles of one basis (the money they rank: a currency, or the base
    currency with its rates) were last ranked (`ecrm.segments.rankings`)."""

    __tablename__ = "rfm_rankings"

    basis: Mapped[str] = mapped_column(String(64), primary_key=True)
    described: Mapped[str] = mapped_column(Text)
    ranked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    buyers: Mapped[int] = mapped_column(Integer)


class RfmRank(Base):
    """One buyer's quintiles in a ranking; `cell` is 100 x recency + 10 x frequency + monetary."""

    __tablename__ = "rfm_ranks"
    __table_args__ = (Index("ix_rfm_ranks_basis_cell", "basis", "cell"),)

    basis: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_id: Mapped[int] = mapped_column(Id, primary_key=True, index=True)  # no foreign key: see above
    recency: Mapped[int] = mapped_column(SmallInteger)
    frequency: Mapped[int] = mapped_column(SmallInteger)
    monetary: Mapped[int] = mapped_column(SmallInteger)
    cell: Mapped[int] = mapped_column(SmallInteger)

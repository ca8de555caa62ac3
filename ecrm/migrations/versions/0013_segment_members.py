"""segment_members: who is in each named segment and since when, so entering and leaving one
can be recorded as `segment_entered` / `segment_exited` events (ecrm.segments.refresh)

Revision ID: 0013
Revises: 0012

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ecrm.db

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segment_members",
        sa.Column("segment", sa.String(length=100), nullable=False),
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("entered_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_segment_members_profile_id_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("segment", "profile_id", name=op.f("pk_segment_members")),
    )
    op.create_index("ix_segment_members_profile_id", "segment_members", ["profile_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_segment_members_profile_id", table_name="segment_members")
    op.drop_table("segment_members")

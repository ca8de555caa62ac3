"""rfm_rankings and rfm_ranks: stored RFM quintiles that RFM rules read (ecrm.segments.rankings)

Revision ID: 0017
Revises: 0016

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ecrm.db

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rfm_rankings",
        sa.Column("basis", sa.String(length=64), nullable=False),
        sa.Column("described", sa.Text(), nullable=False),
        sa.Column("ranked_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("basis", name=op.f("pk_rfm_rankings")),
    )
    op.create_table(
        "rfm_ranks",
        sa.Column("basis", sa.String(length=64), nullable=False),
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("recency", sa.SmallInteger(), nullable=False),
        sa.Column("frequency", sa.SmallInteger(), nullable=False),
        sa.Column("monetary", sa.SmallInteger(), nullable=False),
        sa.Column("cell", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("basis", "profile_id", name=op.f("pk_rfm_ranks")),
    )
    op.create_index("ix_rfm_ranks_profile_id", "rfm_ranks", ["profile_id"], unique=False)
    op.create_index("ix_rfm_ranks_basis_cell", "rfm_ranks", ["basis", "cell"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rfm_ranks_basis_cell", table_name="rfm_ranks")
    op.drop_index("ix_rfm_ranks_profile_id", table_name="rfm_ranks")
    op.drop_table("rfm_ranks")
    op.drop_table("rfm_rankings")

"""orders: one row per shop order, upserted by the shop's order id (ecrm.orders.models); the
total is an exact integer of ten-thousandths of its currency (ecrm.orders.money), and an order
goes with its profile when the profile is erased

Revision ID: 0008
Revises: 0007

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ecrm.db

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total_e4", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("placed_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("line_items", JSON, nullable=False),
        sa.Column("created_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_orders_profile_id_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("order_id", name=op.f("uq_orders_order_id")),
    )
    op.create_index("ix_orders_profile_id_placed_at", "orders", ["profile_id", "placed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_orders_profile_id_placed_at", table_name="orders")
    op.drop_table("orders")

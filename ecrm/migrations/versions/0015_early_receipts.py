"""early_receipts: provider receipts (Twilio status callbacks) that arrived before the send
stored the message's id, kept until it does (ecrm.deliveries.early_receipts)

Revision ID: 0015
Revises: 0014

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ecrm.db

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "early_receipts",
        sa.Column("id", ID, nullable=False),
        sa.Column("delivery_id", ID, nullable=False),
        sa.Column("provider_message_id", sa.String(length=250), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("received_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"],
                                name=op.f("fk_early_receipts_delivery_id_deliveries"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_receipts")),
    )
    op.create_index(op.f("ix_early_receipts_delivery_id"), "early_receipts", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_early_receipts_delivery_id"), table_name="early_receipts")
    op.drop_table("early_receipts")

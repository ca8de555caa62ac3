"""received_webhooks: shop webhooks stored before they are acknowledged, unique by (provider,
delivery id), mapped later (ecrm.shops.models); site_visitors: the site script's visitor ids and
the profile each stands for (ecrm.site.models)

Revision ID: 0016
Revises: 0015

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ecrm.db

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "received_webhooks",
        sa.Column("id", ID, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("shop", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("received_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("mapped_at", ecrm.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_webhooks")),
        sa.UniqueConstraint("provider", "delivery_id", name=op.f("uq_received_webhooks_provider_delivery_id")),
    )
    op.create_index("ix_received_webhooks_status_received_at", "received_webhooks", ["status", "received_at"])
    op.create_table(
        "site_visitors",
        sa.Column("visitor_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("created_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"],
                                name=op.f("fk_site_visitors_profile_id_profiles"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("visitor_id", name=op.f("pk_site_visitors")),
    )
    op.create_index(op.f("ix_site_visitors_profile_id"), "site_visitors", ["profile_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_site_visitors_profile_id"), table_name="site_visitors")
    op.drop_table("site_visitors")
    op.drop_index("ix_received_webhooks_status_received_at", table_name="received_webhooks")
    op.drop_table("received_webhooks")

"""push_subscriptions: browsers' web push subscriptions (ecrm.push.models), unique by endpoint,
going with their profile when it is erased

Revision ID: 0010
Revises: 0009

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ecrm.db

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", ID, nullable=False),
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("p256dh", sa.String(length=100), nullable=False),
        sa.Column("auth", sa.String(length=32), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("created_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_success_at", ecrm.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("invalid_at", ecrm.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"],
                                name=op.f("fk_push_subscriptions_profile_id_profiles"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    op.create_index(op.f("ix_push_subscriptions_profile_id"), "push_subscriptions", ["profile_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_push_subscriptions_profile_id"), table_name="push_subscriptions")
    op.drop_table("push_subscriptions")

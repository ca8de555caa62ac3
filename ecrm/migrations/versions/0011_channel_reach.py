"""what SMS and push need on existing tables: a phone number found invalid is marked on its
profile (`phone_invalid`: the provider's reason, and when), so audiences skip it; a delivery
records how many parts it went out in (SMS segments; NULL on other channels)

Revision ID: 0011
Revises: 0010

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ecrm.db

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("profiles", sa.Column("phone_invalid", sa.String(length=200), nullable=True))
    op.add_column("profiles", sa.Column("phone_invalid_at", ecrm.db.UtcDateTime(timezone=True), nullable=True))
    op.add_column("deliveries", sa.Column("parts", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE .. DROP COLUMN (SQLite 3.35+): a batch rebuild of `profiles` would cascade
    # the drop of the old table to consents and events
    op.drop_column("deliveries", "parts")
    op.drop_column("profiles", "phone_invalid_at")
    op.drop_column("profiles", "phone_invalid")

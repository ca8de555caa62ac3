"""the shop API: an event may carry the client's own id (`events.client_id`, unique per profile,
so a retried batch stores it once); a send may carry data for its templates (`sends.data`, a
transactional message's extra values); `transactional_messages`: one row per `POST /v1/messages`,
claimed by its Idempotency-Key (unique) before anything is sent

Revision ID: 0014
Revises: 0013

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ecrm.db

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("events", sa.Column("client_id", sa.String(length=200), nullable=True))
    op.create_index("uq_events_profile_id_client_id", "events", ["profile_id", "client_id"], unique=True)
    op.add_column("sends", sa.Column("data", JSON, nullable=True))
    op.create_table(
        "transactional_messages",
        sa.Column("id", ID, nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.SmallInteger(), nullable=True),
        sa.Column("response", JSON, nullable=True),
        sa.Column("send_id", ID, nullable=True),
        sa.Column("created_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactional_messages")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_transactional_messages_idempotency_key")),
    )


def downgrade() -> None:
    op.drop_table("transactional_messages")
    # plain ALTER TABLE .. DROP COLUMN (SQLite 3.35+), no batch rebuild
    op.drop_column("sends", "data")
    op.drop_index("uq_events_profile_id_client_id", table_name="events")
    op.drop_column("events", "client_id")

"""received_webhooks: a partial index of the rows still `received`, by id, for the mapping's
claim (without it PostgreSQL walked the primary key through every mapped row, kept to recognise
redeliveries, on each claim of 200); on PostgreSQL the body compressed with lz4 where the server
has it (a third of pglz's CPU to store and read a ~3 KB body)

Revision ID: 0019
Revises: 0018

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECEIVED = sa.text("status = 'received'")
COMPRESSION = """DO $$ BEGIN
    ALTER TABLE received_webhooks ALTER COLUMN body SET COMPRESSION {};
EXCEPTION WHEN feature_not_supported OR syntax_error THEN NULL;  -- built without lz4, or before PostgreSQL 14
END $$"""


def upgrade() -> None:
    op.create_index(op.f("ix_received_webhooks_received"), "received_webhooks", ["id"], unique=False,
                    postgresql_where=RECEIVED, sqlite_where=RECEIVED)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(COMPRESSION.format("lz4"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(COMPRESSION.format("DEFAULT"))
    op.drop_index(op.f("ix_received_webhooks_received"), table_name="received_webhooks")

"""batch claims: a send job owns its batch by attempt number and marks the chunk in flight

Revision ID: 0002
Revises: 0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("run_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("inflight_first", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("inflight_last", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_batches", schema=None) as batch_op:
        batch_op.drop_column("inflight_last")
        batch_op.drop_column("inflight_first")
        batch_op.drop_column("attempt")

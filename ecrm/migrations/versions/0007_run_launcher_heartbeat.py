"""campaign runs record who sends them in-process: the launching process (`host:pid`) and its
last heartbeat, so `ecrm campaign status` can tell a run whose launcher died from one still
being sent (ecrm.campaigns.liveness)

Revision ID: 0007
Revises: 0006

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ecrm.db

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("launcher", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", ecrm.db.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("launcher")

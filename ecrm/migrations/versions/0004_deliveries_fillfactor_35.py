"""deliveries fillfactor 35: room on each page for its rows to grow when sent, so recording an
outcome is a HOT update (see ecrm.deliveries.models)

Revision ID: 0004
Revises: 0003

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries SET (fillfactor = 35)")  # pages written from now on


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries SET (fillfactor = 80)")

"""indexes for segment queries: events by (name, occurred_at, profile_id), so a window over one
event name is read from the index alone, and by (profile_id, name, occurred_at), for one
profile's events of a name (sequences, recomputing a profile's segments); they replace the
indexes on (name, occurred_at) and (profile_id), which they cover. Responses by (kind,
occurred_at, profile_id), for days since the last engagement.

Revision ID: 0012
Revises: 0011

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_name_occurred_at_profile_id", "events", ["name", "occurred_at", "profile_id"])
    op.create_index("ix_events_profile_id_name_occurred_at", "events", ["profile_id", "name", "occurred_at"])
    op.drop_index("ix_events_name_occurred_at", table_name="events")
    op.drop_index("ix_events_profile_id", table_name="events")
    op.create_index("ix_responses_kind_occurred_at_profile_id", "responses", ["kind", "occurred_at", "profile_id"])


def downgrade() -> None:
    op.drop_index("ix_responses_kind_occurred_at_profile_id", table_name="responses")
    op.create_index("ix_events_profile_id", "events", ["profile_id"])
    op.create_index("ix_events_name_occurred_at", "events", ["name", "occurred_at"])
    op.drop_index("ix_events_profile_id_name_occurred_at", table_name="events")
    op.drop_index("ix_events_name_occurred_at_profile_id", table_name="events")

"""Paper-run ownership lease: run_leases (store/lease.py).

Revision ID: 0003_run_leases
Revises: 0002_series_chunks
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_run_leases"
down_revision = "0002_series_chunks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_leases",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("owner_token", sa.String(32), nullable=False), sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False), sa.Column("acquired_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at_ms", sa.BigInteger(), nullable=False))


def downgrade() -> None:
    op.drop_table("run_leases")

"""Sweeps: the sweeps table and sweep_runs, which links each run to its sweep (store/sweeps.py).

Revision ID: 0004_sweeps
Revises: 0003_run_leases
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_sweeps"
down_revision = "0003_run_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True))
    op.create_table(
        "sweep_runs",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sweep_id", sa.String(32), sa.ForeignKey("sweeps.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("data_path", sa.Text(), nullable=False),
        sa.Column("data_hash", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.UniqueConstraint("sweep_id", "role", "config_hash"))
    op.create_index("ix_sweep_runs_sweep_id", "sweep_runs", ["sweep_id"])


def downgrade() -> None:
    op.drop_index("ix_sweep_runs_sweep_id", table_name="sweep_runs")
    op.drop_table("sweep_runs")
    op.drop_table("sweeps")

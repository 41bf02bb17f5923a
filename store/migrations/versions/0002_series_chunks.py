"""Per-bar series stored columnar: series_chunks; existing equity/signals rows are compacted into it.

Revision ID: 0002_series_chunks
Revises: 0001_baseline

Also drops the run_id indexes of orders and trades: their unique (run_id, client_id / seq)
indexes already serve every lookup by run (about 7 MB per 1M-bar z-score run).
The ``equity`` and ``signals`` tables stay as the paper runs' row-wise live tail.
Rows already there (every run of a baseline file) are moved into chunks, run by run.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_series_chunks"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "series_chunks",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("series", sa.String(48), primary_key=True),
        sa.Column("chunk_no", sa.Integer(), primary_key=True),
        sa.Column("first_ts", sa.BigInteger(), nullable=False), sa.Column("last_ts", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False), sa.Column("dtype", sa.String(8), nullable=False),
        sa.Column("encoding", sa.String(32), nullable=False), sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("nulls", sa.LargeBinary()))
    op.drop_index("ix_orders_run_id", table_name="orders")
    op.drop_index("ix_trades_run_id", table_name="trades")
    from store.series import GROUPS, compact_tail

    conn = op.get_bind()
    for group, (table, _) in GROUPS.items():
        runs = [r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT run_id FROM {table.__tablename__}"))]
        for run_id in runs:
            compact_tail(conn, run_id, group, min_rows=1)


def downgrade() -> None:
    op.create_index("ix_trades_run_id", "trades", ["run_id"])
    op.create_index("ix_orders_run_id", "orders", ["run_id"])
    op.drop_table("series_chunks")

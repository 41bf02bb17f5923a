"""Baseline: the schema of files made before migrations (meta.schema_version = 1).

Revision ID: 0001_baseline
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("runs.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text(), nullable=False))
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True), sa.Column("name", sa.String(200), unique=True),
        sa.Column("mode", sa.String(16), nullable=False), sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False), sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("symbol", sa.String(64)), sa.Column("exchange", sa.String(64)), sa.Column("timeframe", sa.String(16)),
        sa.Column("data_source", sa.Text()), sa.Column("data_hash", sa.String(64)),
        sa.Column("code_version", sa.String(64)), sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()), sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False), sa.Column("start_ts", sa.BigInteger()),
        sa.Column("end_ts", sa.BigInteger()), sa.Column("trade_from_ts", sa.BigInteger()),
        sa.Column("last_bar_ts", sa.BigInteger()), sa.Column("bars_processed", sa.Integer(), nullable=False),
        sa.Column("initial_cash", sa.Float(), nullable=False), sa.Column("metrics", sa.JSON()),
        sa.Column("report", sa.JSON()))
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
        sa.Column("fold_index", sa.Integer(), nullable=False),
        sa.Column("train_start_ts", sa.BigInteger(), nullable=False),
        sa.Column("train_end_ts", sa.BigInteger(), nullable=False), sa.Column("trade_start_ts", sa.BigInteger()),
        sa.Column("trade_end_ts", sa.BigInteger()), sa.Column("objective", sa.String(16), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False), sa.Column("threshold", sa.Float()),
        sa.Column("train_loss", sa.Float()), sa.Column("val_loss", sa.Float()), sa.Column("steps", sa.Integer()),
        sa.Column("train_seconds", sa.Float()), sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("losses", sa.JSON()), sa.Column("sample_check", sa.JSON()),
        sa.Column("checkpoint", sa.LargeBinary()), sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("run_id", "fold_index"))
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False), sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False), sa.Column("side", sa.String(8)),
        sa.Column("qty", sa.Float()), sa.Column("target_fraction", sa.Float()), sa.Column("price", sa.Float()),
        sa.Column("reason", sa.String(32), nullable=False), sa.Column("status", sa.String(16), nullable=False),
        sa.Column("signal", sa.Float()), sa.Column("threshold", sa.Float()), sa.Column("model_version", sa.Integer()),
        sa.UniqueConstraint("run_id", "client_id"))
    op.create_index("ix_orders_run_id", "orders", ["run_id"])
    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
        sa.Column("order_client_id", sa.String(64), nullable=False), sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(8), nullable=False), sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False), sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False))
    op.create_index("ix_fills_run_ts", "fills", ["run_id", "ts"])
    op.create_table(
        "trades",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False), sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", sa.Float(), nullable=False), sa.Column("entry_ts", sa.BigInteger(), nullable=False),
        sa.Column("exit_ts", sa.BigInteger(), nullable=False), sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("exit_price", sa.Float(), nullable=False), sa.Column("gross_pnl", sa.Float(), nullable=False),
        sa.Column("fees", sa.Float(), nullable=False), sa.Column("pnl", sa.Float(), nullable=False),
        sa.Column("return_pct", sa.Float(), nullable=False), sa.Column("exit_reason", sa.String(32), nullable=False),
        sa.Column("bars_held", sa.Integer(), nullable=False), sa.UniqueConstraint("run_id", "seq"))
    op.create_index("ix_trades_run_id", "trades", ["run_id"])
    op.create_table(
        "equity",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False), sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("position", sa.Float(), nullable=False), sa.Column("close", sa.Float(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False), sa.UniqueConstraint("run_id", "ts"))
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False), sa.Column("signal", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float()), sa.Column("unusualness", sa.Float()),
        sa.Column("model_version", sa.Integer()), sa.UniqueConstraint("run_id", "ts"))
    op.create_table(
        "bars",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False), sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False), sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False), sa.Column("volume", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "ts"))


def downgrade() -> None:
    for table in ("bars", "signals", "equity", "trades", "fills", "orders", "model_versions", "runs", "meta"):
        op.drop_table(table)

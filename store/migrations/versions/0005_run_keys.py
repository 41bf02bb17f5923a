"""Integer run keys for the bulk tables: orders, fills and trades refer to ``runs.key``, not the 32-character id.

Why: those rows repeat their run's reference in the row and in its index; a 32-character
string was about a third of a 1M-bar run's file. ``runs`` gains ``key`` (numbered by the
``runs_key_seq`` sequence on PostgreSQL, by the insert itself on SQLite) and keeps its id.

The three tables are rebuilt (new table, copy with the key looked up, drop, rename), the same
way on both backends; ``runs`` is only altered (on SQLite, rebuilding it would cascade-delete
every child row while foreign keys are enforced).

Revision ID: 0005_run_keys
Revises: 0004_sweeps
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_run_keys"
down_revision = "0004_sweeps"
branch_labels = None
depends_on = None

_COLUMNS = {
    "orders": lambda: [
        sa.Column("client_id", sa.String(64), nullable=False), sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False), sa.Column("side", sa.String(8)),
        sa.Column("qty", sa.Float()), sa.Column("target_fraction", sa.Float()), sa.Column("price", sa.Float()),
        sa.Column("reason", sa.String(32), nullable=False), sa.Column("status", sa.String(16), nullable=False),
        sa.Column("signal", sa.Float()), sa.Column("threshold", sa.Float()), sa.Column("model_version", sa.Integer())],
    "fills": lambda: [
        sa.Column("order_client_id", sa.String(64), nullable=False), sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(8), nullable=False), sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False), sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False)],
    "trades": lambda: [
        sa.Column("seq", sa.Integer(), nullable=False), sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", sa.Float(), nullable=False), sa.Column("entry_ts", sa.BigInteger(), nullable=False),
        sa.Column("exit_ts", sa.BigInteger(), nullable=False), sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("exit_price", sa.Float(), nullable=False), sa.Column("gross_pnl", sa.Float(), nullable=False),
        sa.Column("fees", sa.Float(), nullable=False), sa.Column("pnl", sa.Float(), nullable=False),
        sa.Column("return_pct", sa.Float(), nullable=False), sa.Column("exit_reason", sa.String(32), nullable=False),
        sa.Column("bars_held", sa.Integer(), nullable=False)],
}
_UNIQUE = {"orders": ("uq_orders_run_key_client_id", ["run_key", "client_id"]),
           "trades": ("uq_trades_run_key_seq", ["run_key", "seq"])}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(sa.schema.CreateSequence(sa.Sequence("runs_key_seq")))
    op.add_column("runs", sa.Column("key", sa.Integer(), nullable=True))
    if postgres:
        op.execute("UPDATE runs SET key = nextval('runs_key_seq')")
    else:
        op.execute("UPDATE runs SET key = rowid")
    op.create_index("ix_runs_key", "runs", ["key"], unique=True)
    for table, columns in _COLUMNS.items():
        _rebuild(table, columns())
    op.create_index("ix_fills_run_key_ts", "fills", ["run_key", "ts"])


def _rebuild(table: str, columns: list[sa.Column], *, to_key: bool = True) -> None:
    """``table`` with ``run_key`` in place of ``run_id`` (or back); rows copied with their run's reference, ids kept."""
    names = [c.name for c in columns]
    extra = []
    if table in _UNIQUE:
        name, cols = _UNIQUE[table]
        extra.append(sa.UniqueConstraint(*cols, name=name) if to_key else sa.UniqueConstraint("run_id", cols[1]))
    ref = (sa.Column("run_key", sa.Integer(), sa.ForeignKey("runs.key", ondelete="CASCADE"), nullable=False)
           if to_key else sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                                    nullable=False))
    op.create_table(f"{table}_new", sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True), ref,
                    *columns, *extra)
    new_ref, value, join = ("run_key", "r.key", "r.id = t.run_id") if to_key else ("run_id", "r.id", "r.key = t.run_key")
    listed = ", ".join(names)
    op.execute(f"INSERT INTO {table}_new (id, {new_ref}, {listed}) SELECT t.id, {value}, "
               f"{', '.join('t.' + n for n in names)} FROM {table} t JOIN runs r ON {join}")
    op.drop_table(table)
    op.rename_table(f"{table}_new", table)
    if op.get_bind().dialect.name == "postgresql":  # the copied ids must not be handed out again
        op.execute(f"ALTER SEQUENCE {table}_new_id_seq RENAME TO {table}_id_seq")
        op.execute(f"SELECT setval('{table}_id_seq', COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)")


def downgrade() -> None:
    op.drop_index("ix_fills_run_key_ts", table_name="fills")
    for table, columns in _COLUMNS.items():
        _rebuild(table, columns(), to_key=False)
    op.create_index("ix_fills_run_ts", "fills", ["run_id", "ts"])
    op.drop_index("ix_runs_key", table_name="runs")
    op.drop_column("runs", "key")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("runs_key_seq")))

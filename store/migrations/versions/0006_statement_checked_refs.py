"""PostgreSQL: the bulk tables' references to their run are checked once per statement, not once per row.

Why: a foreign key makes PostgreSQL run one lookup-and-lock query per inserted row. A 1M-bar
run writes ~240k orders, fills and trades, and those checks were ~45 % of the server's
ingest time (COPY of a 1M-bar run's rows: 2.6-3.1 s with the keys, 1.5 s without), and
the backtest waited on them.

The same guarantees, per statement (orders, fills, trades by ``run_key``; series_chunks by
``run_id``):
- an INSERT or UPDATE whose rows name a run that does not exist fails with SQLSTATE 23503
  (foreign_key_violation, as a foreign key's would);
- the runs it names are locked FOR KEY SHARE, as a foreign key locks them, so a concurrent
  DELETE of such a run waits for the writer's commit;
- deleting runs deletes their rows (ON DELETE CASCADE), and truncating runs truncates them;
- a run's ``key`` and ``id`` never change (the foreign keys' NO ACTION on update).

The functions search only the schema the tables are in (and pg_catalog): they find these tables,
and no others of the same names, whatever path a session sets.

SQLite keeps its foreign keys (they cost it ~5 % of a run's insert time): nothing changes there.

Revision ID: 0006_statement_checked_refs
Revises: 0005_run_keys
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_statement_checked_refs"
down_revision = "0005_run_keys"
branch_labels = None
depends_on = None

# child table -> (its column, the column of runs it refers to)
_REFS = {"orders": ("run_key", "key"), "fills": ("run_key", "key"), "trades": ("run_key", "key"),
         "series_chunks": ("run_id", "id")}

_CHECK = """DECLARE missing {sqltype};
BEGIN
    -- Lock the runs named, as a foreign key would: a concurrent DELETE of one waits for this commit.
    PERFORM 1 FROM runs WHERE {parent} IN (SELECT {column} FROM new_rows) FOR KEY SHARE;
    SELECT n.{column} INTO missing FROM new_rows n
        WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.{parent} = n.{column}) LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            'insert or update on table "%s" refers to a run that does not exist: %s = %s', TG_TABLE_NAME,
            '{column}', missing);
    END IF;
    RETURN NULL;
END"""

_CASCADE = """BEGIN
    DELETE FROM orders WHERE run_key IN (SELECT key FROM old_runs);
    DELETE FROM fills WHERE run_key IN (SELECT key FROM old_runs);
    DELETE FROM trades WHERE run_key IN (SELECT key FROM old_runs);
    DELETE FROM series_chunks WHERE run_id IN (SELECT id FROM old_runs);
    RETURN NULL;
END"""

_TRUNCATE = "BEGIN TRUNCATE orders, fills, trades, series_chunks; RETURN NULL; END"

_FIXED = """BEGIN
    RAISE foreign_key_violation USING MESSAGE = format(
        'a run''s key and id never change (run %s): its orders, fills, trades and series refer to them', OLD.id);
END"""


def _create_function(name: str, body: str, schema: str) -> None:
    """A trigger function that searches only the tables' schema (and pg_catalog) for the tables it names."""
    op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql SET search_path = {schema}, pg_temp "
               f"AS $$\n{body}\n$$")


def _check_function(column: str) -> str:
    return f"runs_check_{column}_refs"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    # the schema the tables are in: where this migration finds them
    schema = bind.dialect.identifier_preparer.quote_identifier(
        bind.execute(sa.text("SELECT current_schema()")).scalar_one())
    for table in _REFS:
        for fk in inspector.get_foreign_keys(table):
            if fk["referred_table"] == "runs":  # named after the table it was created as (0005 renamed some)
                op.drop_constraint(fk["name"], table, type_="foreignkey")
    for column, parent, sqltype in (("run_key", "key", "bigint"), ("run_id", "id", "text")):
        _create_function(_check_function(column), _CHECK.format(column=column, parent=parent, sqltype=sqltype),
                         schema)
    for table, (column, _) in _REFS.items():
        for event in ("INSERT", "UPDATE"):  # a trigger with transition tables has one event
            op.execute(f"CREATE TRIGGER {table}_run_ref_{event.lower()} AFTER {event} ON {table} "
                       f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION {_check_function(column)}()")
    _create_function("runs_delete_bulk_rows", _CASCADE, schema)
    op.execute("CREATE TRIGGER runs_delete_bulk_rows AFTER DELETE ON runs REFERENCING OLD TABLE AS old_runs "
               "FOR EACH STATEMENT EXECUTE FUNCTION runs_delete_bulk_rows()")
    _create_function("runs_truncate_bulk_rows", _TRUNCATE, schema)
    op.execute("CREATE TRIGGER runs_truncate_bulk_rows AFTER TRUNCATE ON runs FOR EACH STATEMENT "
               "EXECUTE FUNCTION runs_truncate_bulk_rows()")
    _create_function("runs_refuse_new_key", _FIXED, schema)
    op.execute("CREATE TRIGGER runs_refuse_new_key BEFORE UPDATE OF key, id ON runs FOR EACH ROW "
               "WHEN (OLD.key IS DISTINCT FROM NEW.key OR OLD.id IS DISTINCT FROM NEW.id) "
               "EXECUTE FUNCTION runs_refuse_new_key()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER runs_refuse_new_key ON runs")
    op.execute("DROP FUNCTION runs_refuse_new_key()")
    op.execute("DROP TRIGGER runs_truncate_bulk_rows ON runs")
    op.execute("DROP FUNCTION runs_truncate_bulk_rows()")
    op.execute("DROP TRIGGER runs_delete_bulk_rows ON runs")
    op.execute("DROP FUNCTION runs_delete_bulk_rows()")
    for table, (column, parent) in _REFS.items():
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER {table}_run_ref_{event} ON {table}")
        op.create_foreign_key(f"{table}_{column}_fkey", table, "runs", [column], [parent], ondelete="CASCADE")
    for column in ("run_key", "run_id"):
        op.execute(f"DROP FUNCTION {_check_function(column)}()")

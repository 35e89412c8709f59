"""Alembic environment for the metadata database, driven only by `feilun.store.migrate`.

The caller passes an open connection in `config.attributes["connection"]`; there is no
alembic.ini and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

from feilun.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run migrations through feilun.store.migrate (or `feilun doctor`)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # Database.begin() already opened the transaction (BEGIN IMMEDIATE on SQLite, whose DDL is
    # transactional too), so a failed migration leaves nothing half-applied.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()

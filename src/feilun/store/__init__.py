"""Platform storage: the metadata database (SQLite or PostgreSQL) and the artifact store.

`database.open_database` → `migrate.upgrade` / `check_revision` → `catalog.SqlCatalog`;
`artifacts.ArtifactStore` keeps content-addressed files. Import the module you need.
"""

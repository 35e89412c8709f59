"""Platform storage: the metadata database (SQLite or PostgreSQL) and the artifact store."""

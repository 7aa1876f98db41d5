"""Storage: schema, migrations and the Store (SQLite and PostgreSQL)."""

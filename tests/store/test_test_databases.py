"""The test suite's fresh databases (copied from a template, see tests/conftest.py) are exactly what
the migrations produce: same tables, columns, defaults, indexes, constraints, sequences and rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from fleetledger.storage.store import Store


def _snapshot(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        names = sorted(inspect(conn).get_table_names())
        rows = {name: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{name}"')))) for name in names}
        if store.dialect == "sqlite":
            catalog = conn.execute(text("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"))
            pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("journal_mode", "user_version")}
            return {"catalog": [tuple(r) for r in catalog], "pragmas": pragmas, "rows": rows}
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
        queries = {
            "columns": "SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length,"
            " numeric_precision, is_nullable, column_default, is_identity FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY 1, 3",
            "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " ORDER BY 1, 2",
            "constraints": "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = current_schema() ORDER BY 1, 2",
            "sequences": "SELECT sequence_name, data_type, start_value, increment FROM information_schema.sequences"
            " WHERE sequence_schema = current_schema() ORDER BY 1",
            "types": "SELECT t.typname, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = current_schema() ORDER BY 1",
        }
        found = {
            key: [tuple(str(v).replace(f"{schema}.", "") for v in r) for r in conn.exec_driver_sql(sql)]
            for key, sql in queries.items()
        }
        return {**found, "rows": rows}


def test_a_fresh_test_database_equals_a_freshly_migrated_one(db_url, request, tmp_path):
    copied = Store(db_url, migrate=False)
    if copied.dialect == "sqlite":
        reference_url = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        schemas = request.getfixturevalue("_postgres_schemas")
        schema = schemas.create(migrated=False)
        request.addfinalizer(lambda: schemas.drop(schema))
        reference_url = db_url.rsplit("options=", 1)[0] + f"options=-csearch_path%3D{schema}"
    migrated = Store(reference_url)  # runs the eleven migrations for real
    try:
        assert migrated.schema_revision() is not None
        assert copied.schema_revision() == migrated.schema_revision()
        expected, actual = _snapshot(migrated), _snapshot(copied)
        assert expected["rows"]["alembic_version"] == [(migrated.schema_revision(),)]
        assert actual == expected
    finally:
        copied.dispose()
        migrated.dispose()

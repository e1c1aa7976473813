"""Alembic migrations of the SQL schema (SQLite and PostgreSQL)."""

"""The PostgreSQL backend (asyncpg): shared tables, row-locking commits, LISTEN/NOTIFY events."""

from .client import PostgresBackendClient

__all__ = ["PostgresBackendClient"]

"""The SQLite backend: the embedded default (one file, shared by processes)."""

from .client import SQLiteBackendClient

__all__ = ["SQLiteBackendClient"]

"""The Redis (and Valkey) backend."""

from .client import RedisBackendClient

__all__ = ["RedisBackendClient"]

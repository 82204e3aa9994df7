"""Exceptions of the data layer."""


class RaceCondition(Exception):
    """Another transaction changed what this one read or wrote; retrying can succeed.

    Raised at commit time when a row read or written changed version, an inserted key
    or unique value was taken meanwhile, or before commit when a unique value that this
    session saw as free (``get`` returned None) turns out to be taken. Systems are
    re-run from the top on it (see ``retry=``).
    """


class UniqueViolation(IndexError):
    """A write would duplicate a unique value that was already taken.

    Deterministic: re-running the same transaction would fail the same way, so it is
    never retried. Raised by ``insert``/``update`` (and ``upsert`` on exit).
    """


class SchemaMismatch(RuntimeError):
    """A table's stored schema differs from the component definition."""

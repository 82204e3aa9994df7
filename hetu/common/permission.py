"""Read permissions of components and call permissions of systems."""

from enum import IntEnum


class Permission(IntEnum):
    """Who may read a component's rows, or call a system, from a game client.

    Server-side code (systems) always sees every row; permissions only filter what
    reaches clients.

    * ``EVERYBODY`` - any connection, logged in or not.
    * ``USER`` - connections that called :func:`hetu.elevate` (logged in).
    * ``OWNER`` - logged-in users, and only rows whose ``owner`` equals the caller.
    * ``RLS`` - logged-in users, and only rows passing the component's ``rls_compare``.
    * ``ADMIN`` - admin connections only.
    """

    EVERYBODY = 1
    USER = 2
    OWNER = 3
    RLS = 4
    ADMIN = 999

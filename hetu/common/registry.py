"""The base of the process-wide registries of definitions (components, endpoints, systems)."""

from __future__ import annotations

from typing import Any


class Registry:
    """A process-wide registry: ``SomeRegistry()`` always returns the same instance.

    A subclass creates its empty tables in :meth:`_create_tables` and says in :meth:`clear`
    what a reset keeps (the definitions the engine makes itself). Tests and the Sandbox
    call ``clear()`` before loading an app again::

        ComponentDefines().clear()
        EndpointDefines().clear()
        SystemClusters().clear()
    """

    _instance: Any = None

    def __new__(cls) -> Any:
        instance = cls.__dict__.get("_instance")  # one per class, not shared with a subclass
        if instance is None:
            instance = super().__new__(cls)
            instance._create_tables()
            cls._instance = instance
        return instance

    def _create_tables(self) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        """Forget the app's definitions, keeping those the engine makes itself."""
        raise NotImplementedError

    # HeTu spells the reset `clear_()` on ComponentDefines and `_clear()` on the other two;
    # code and tests written for it call them, so both names stay.
    def clear_(self) -> None:
        """The same as :meth:`clear` (HeTu's name on ``ComponentDefines``)."""
        self.clear()

    def _clear(self) -> None:
        self.clear()

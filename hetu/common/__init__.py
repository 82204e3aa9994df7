"""Small building blocks shared by every layer of the engine."""

from .permission import Permission

__all__ = ["Permission"]

"""Components and the storage layer."""

from ..common.permission import Permission
from . import backend
from .component import BaseComponent, ComponentDefines, define_component, property_field

__all__ = [
    "backend",
    "BaseComponent",
    "ComponentDefines",
    "Permission",
    "define_component",
    "property_field",
]

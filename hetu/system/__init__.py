"""Systems: game logic as transactions."""

from .context import SystemContext
from .definer import SystemClusters, SystemDefine, define_system
from .future import FutureCalls  # defines the built-in future-call systems

__all__ = ["FutureCalls", "SystemClusters", "SystemContext", "SystemDefine", "define_system"]

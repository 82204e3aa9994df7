"""Systems: game logic as transactions."""

from .context import SystemContext
from .definer import SystemClusters, SystemDefine, define_system

__all__ = ["SystemClusters", "SystemContext", "SystemDefine", "define_system"]

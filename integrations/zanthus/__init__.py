"""Zanthus Manager / Zeus POS connector (partner ZMI channel)."""
from .client import ZanthusConnector

__all__ = ["ZanthusConnector"]

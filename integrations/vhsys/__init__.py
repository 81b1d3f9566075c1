"""VHSYS ERP connector (API v2)."""
from .client import VhsysConnector

__all__ = ["VhsysConnector"]

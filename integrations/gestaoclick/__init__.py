"""Gestão Click (Betel Tecnologia) ERP connector."""
from .client import GestaoClickConnector

__all__ = ["GestaoClickConnector"]

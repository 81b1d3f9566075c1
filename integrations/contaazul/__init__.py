"""Conta Azul (api-v2): customers, sales with receivables, payments, pulls and invoice tracking."""
from .client import ContaAzulConnector

__all__ = ["ContaAzulConnector"]

"""Bling ERP (API v3) connector: OAuth2, contacts, sales orders with receivables, NFS-e / NF-e."""
from .client import BlingConnector

__all__ = ["BlingConnector"]

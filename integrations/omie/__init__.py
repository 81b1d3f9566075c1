"""Omie (app.omie.com.br): API v1, JSON-RPC calls authenticated with App Key / App Secret."""
from .client import OmieConnector

__all__ = ["OmieConnector"]

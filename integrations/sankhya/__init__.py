"""Sankhya (Sankhya Om) through the Sankhya API Gateway."""
from .client import SankhyaConnector

__all__ = ["SankhyaConnector"]

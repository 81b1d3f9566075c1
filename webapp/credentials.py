"""Credentials at rest: Fernet-encrypted JSON. Only masked hints are ever shown."""
from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from integrations.http import SecretRegistry


class CredentialError(Exception):
    pass


def _fernet() -> Fernet:
    key = current_app.config.get("FERNET_KEY")
    if not key:
        raise CredentialError("TECPET_FERNET_KEY is not set: credentials cannot be stored or read")
    return Fernet(key.encode() if isinstance(key, str) else key)


def encrypt(creds: dict[str, str]) -> str:
    SecretRegistry.add(*[v for v in creds.values() if isinstance(v, str)])
    return _fernet().encrypt(json.dumps(creds).encode()).decode()


def decrypt(blob: str) -> dict[str, str]:
    if not blob:
        return {}
    try:
        creds = json.loads(_fernet().decrypt(blob.encode()))
    except InvalidToken as exc:
        raise CredentialError("Stored credentials cannot be decrypted with the current key") from exc
    SecretRegistry.add(*[v for v in creds.values() if isinstance(v, str)])
    return creds


def mask(value: str) -> str:
    """A hint that tells support which credential is stored without revealing it."""
    if not value:
        return ""
    tail = value[-4:] if len(value) >= 12 else ""
    return "••••••" + tail

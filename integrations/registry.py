"""Every ERP the product knows: one line each. Import paths are resolved lazily."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .base import Connector

CONNECTORS: dict[str, str] = {
    "vhsys": "integrations.vhsys.client:VhsysConnector",
    "bling": "integrations.bling.client:BlingConnector",
    "gestaoclick": "integrations.gestaoclick.client:GestaoClickConnector",
    "contaazul": "integrations.contaazul.client:ContaAzulConnector",
    "zanthus": "integrations.zanthus.client:ZanthusConnector",
    "iclub": "integrations.iclub.client:IClubConnector",
    "sankhya": "integrations.sankhya.client:SankhyaConnector",
    "omie": "integrations.omie.client:OmieConnector",
}

SANDBOXES: dict[str, str] = {name: path.rsplit(".client:", 1)[0] + ".sandbox:Sandbox" for name, path in CONNECTORS.items()}


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def connector_class(name: str) -> "type[Connector]":
    try:
        return _load(CONNECTORS[name])
    except KeyError:
        raise KeyError(f"unknown ERP {name!r}; known: {', '.join(sorted(CONNECTORS))}") from None


def sandbox_class(name: str):
    return _load(SANDBOXES[name])


def all_connectors() -> "list[type[Connector]]":
    return [connector_class(n) for n in CONNECTORS]


def _sandbox_module(name: str):
    return importlib.import_module(SANDBOXES[name].partition(":")[0])


def sandbox_demo_credentials(name: str) -> dict[str, str]:
    """The credentials an ERP's sandbox accepts out of the box."""
    return dict(getattr(_sandbox_module(name), "DEMO_CREDENTIALS", {}))


def sandbox_demo_settings(name: str, url: str) -> dict[str, str]:
    """Settings that point a connector at its sandbox on `url`, with the demo account's own codes."""
    module = _sandbox_module(name)
    settings = {"base_url": url}
    settings.update(getattr(module, "DEMO_SETTINGS", {}))
    if hasattr(module, "demo_settings"):
        settings.update(module.demo_settings(url))
    return settings

"""Resolving a divergence between TecPet's record and the ERP's copy."""
from __future__ import annotations

from .access import audit
from .events import release_held_invoices
from .extensions import db
from .models import Binding, Customer, Integration
from .sync import outbox
from .sync import pull


def push_tecpet_version(integration: Integration, c: Customer, binding: Binding) -> None:
    binding.payload_hash = ""  # forces an update even though TecPet's record did not change
    outbox.record(c.clinic_id, "customer.upserted", c.id, integration_id=integration.id, trigger="resolve")
    audit("divergence.push_tecpet", f"customer {c.external_id}", c.clinic_id)
    db.session.commit()
    outbox.dispatch()


def take_erp_version(integration: Integration, c: Customer, binding: Binding) -> None:
    pull.take_erp_version(integration, c, binding)  # copy, recheck health, an event for TecPet core
    release_held_invoices(c)
    audit("divergence.take_erp", f"customer {c.external_id}", c.clinic_id)
    db.session.commit()
    outbox.dispatch()


def request_verify(integration: Integration, customer_ids: list[int] | None = None) -> None:
    for cid in customer_ids or [None]:
        outbox.record(integration.clinic_id, "verify.requested", cid, integration_id=integration.id, trigger="manual")
    db.session.commit()
    outbox.dispatch()

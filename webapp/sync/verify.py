"""Verify runs: read bound customers back from the ERP and keep their copy, so the
customer page can show TecPet's and the ERP's values side by side."""
from __future__ import annotations

from sqlalchemy import select

from integrations.base import COMPARED_CUSTOMER_FIELDS, NotFoundError

from ..extensions import db
from ..models import Binding, Customer, Integration, SyncRecord, SyncRun, utcnow
from ..record_health import divergence
from . import runs


def verify_chunk(run: SyncRun, integration: Integration, connector, record_ids: list[int]) -> None:
    recs = list(db.session.scalars(select(SyncRecord).where(SyncRecord.id.in_(record_ids)).order_by(SyncRecord.id)))
    for rec in recs:
        b = db.session.scalar(select(Binding).where(Binding.integration_id == integration.id, Binding.entity == "customer",
                                                    Binding.local_id == rec.local_id, Binding.state == "bound"))
        c = db.session.scalar(select(Customer).where(Customer.id == rec.local_id,
                                                     Customer.clinic_id == integration.clinic_id))
        if b is None or c is None:
            runs.set_outcome(run, rec, "skipped", "Not linked to an ERP record yet")
            continue
        try:
            remote = connector.get_customer(b.remote_id)
        except NotFoundError as exc:
            runs.set_outcome(run, rec, "failed", f"The ERP no longer has this customer: {exc.plain()}", b.remote_id)
            continue
        b.remote_copy = {f: getattr(remote.record, f) or "" for f in COMPARED_CUSTOMER_FIELDS}
        b.remote_seen_at = utcnow()
        diff = divergence(c, b)
        if diff:
            fields = ", ".join(d["field"].replace("_", " ") for d in diff)
            runs.set_outcome(run, rec, "updated", f"Differs from the ERP: {fields}", b.remote_id)
        else:
            runs.set_outcome(run, rec, "unchanged", "Same in TecPet and in the ERP", b.remote_id)
    db.session.commit()

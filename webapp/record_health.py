"""Record health in the database: cached results of the pure rules (webapp.health), problem rows
for fast counts and filters, whole-clinic rechecks, and the divergence from the ERP's copy."""
from __future__ import annotations

import re
import unicodedata

from sqlalchemy import delete, func, insert, select

from integrations.base import COMPARED_CUSTOMER_FIELDS
from integrations.registry import connector_class

from .extensions import db
from .health import check_customer, check_many
from .models import Binding, Customer, CustomerProblem, Integration
from .page_cache import forget_health
from .sync.records import customer_record


def requirements(integration: Integration | None):
    return connector_class(integration.erp).record_requirements if integration else ()


def _apply(c: Customer, problems) -> list[dict]:
    c.health_errors = sum(1 for p in problems if p.severity == "error")
    c.health_warnings = len(problems) - c.health_errors
    c.health_problems = [{"field": p.field, "code": p.code, "severity": p.severity, "message": p.message}
                         for p in problems]
    return c.health_problems


def refresh_health(c: Customer, integration: Integration | None = None) -> None:
    """Recheck one customer (after a change); its problem rows follow."""
    rows = _apply(c, check_customer(customer_record(c), requirements(integration)))
    db.session.flush()
    forget_health(c.clinic_id)
    db.session.execute(delete(CustomerProblem).where(CustomerProblem.customer_id == c.id))
    if rows:
        db.session.execute(insert(CustomerProblem), [
            {"clinic_id": c.clinic_id, "customer_id": c.id, "field": p["field"], "code": p["code"],
             "severity": p["severity"]} for p in rows])


def recheck_clinic(clinic_id: int, integration: Integration | None, batch: int = 2000) -> int:
    """Recheck every customer of a clinic (the ERP's own rules changed): batched, committed per batch."""
    reqs = requirements(integration)
    last_id, checked = 0, 0
    while True:
        customers = list(db.session.scalars(select(Customer).where(Customer.clinic_id == clinic_id, Customer.id > last_id)
                                            .order_by(Customer.id).limit(batch)))
        if not customers:
            return checked
        results = check_many([customer_record(c) for c in customers], reqs)
        ids = [c.id for c in customers]
        db.session.execute(delete(CustomerProblem).where(CustomerProblem.customer_id.in_(ids)))
        rows = []
        for c, problems in zip(customers, results):
            for p in _apply(c, problems):
                rows.append({"clinic_id": clinic_id, "customer_id": c.id, "field": p["field"], "code": p["code"],
                             "severity": p["severity"]})
        if rows:
            db.session.execute(insert(CustomerProblem), rows)
        db.session.commit()
        forget_health(clinic_id)
        checked += len(customers)
        last_id = ids[-1]


def problem_counts(clinic_id: int) -> list[tuple[str, str, int]]:
    """(code, severity, customers) for the clinic, errors first, most frequent first (computed:
    pages read it through views.health_and_problems, cached)."""
    rows = db.session.execute(select(CustomerProblem.code, CustomerProblem.severity, func.count())
                              .where(CustomerProblem.clinic_id == clinic_id)
                              .group_by(CustomerProblem.code, CustomerProblem.severity)).all()
    return sorted(((r[0], r[1], r[2]) for r in rows), key=lambda t: (t[1] != "error", -t[2], t[0]))


# --------------------------------------------------------------------------- divergence
_DIGITS_ONLY = {"tax_id", "zip_code", "phone"}


def _norm(field: str, value: str) -> str:
    value = (value or "").strip()
    if field in _DIGITS_ONLY:
        return re.sub(r"[^0-9A-Za-z]", "", value).upper()
    folded = unicodedata.normalize("NFKD", value)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(folded.casefold().split())


def divergence(c: Customer, binding: Binding | None) -> list[dict]:
    """Fields where TecPet and the ERP's last seen copy differ (masks, case and accents aside)."""
    if binding is None or not binding.remote_copy:
        return []
    out = []
    for field in COMPARED_CUSTOMER_FIELDS:
        if field not in binding.remote_copy:
            continue
        mine, theirs = getattr(c, field) or "", binding.remote_copy.get(field) or ""
        if _norm(field, mine) != _norm(field, theirs):
            out.append({"field": field, "tecpet": mine, "erp": theirs})
    return out


def records_differ(a, b) -> bool:
    """Two canonical records differ in a compared field (masks, case and accents aside)."""
    return any(_norm(f, getattr(a, f, "") or "") != _norm(f, getattr(b, f, "") or "")
               for f in COMPARED_CUSTOMER_FIELDS)

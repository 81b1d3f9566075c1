"""TecPet core's events: validated, stored with their outbox row in one transaction.

A customer event also re-checks the record's health and releases invoices that were held
because of it. An invoice event for a customer with errors is held as "blocked"."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import select

from .extensions import db
from .models import Customer, Invoice
from .sync import outbox
from .record_health import refresh_health
from .views import active_integration

CUSTOMER_TEXT_LIMITS = {"name": 255, "state_registration": 30, "email": 254, "phone": 30, "street": 255,
                        "number": 60, "complement": 120, "district": 120, "city": 120}


class EventError(ValueError):
    """Bad input: `errors` maps a field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _text(data: dict, key: str, errors: dict, limit: int = 255) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, (str, int)):
        errors[key] = "must be text"
        return ""
    value = str(value).strip()
    if len(value) > limit:
        errors[key] = f"at most {limit} characters"
    return value


def normalize_customer(data: dict) -> dict:
    if not isinstance(data, dict):
        raise EventError({"customer": "must be an object"})
    errors: dict[str, str] = {}
    out = {"external_id": _text(data, "id", errors, 64)}
    if not out["external_id"]:
        errors["id"] = "is required"
    for key, limit in CUSTOMER_TEXT_LIMITS.items():
        out[key] = _text(data, key, errors, limit)
    person_type = _text(data, "person_type", errors, 2).upper()
    if person_type not in ("PF", "PJ"):
        errors["person_type"] = "must be PF or PJ"
    out["person_type"] = person_type
    # Tax IDs are text (alphanumeric CNPJ): keep letters and digits, upper case. Validity is a health
    # question (the record is stored and the owner told what to fix), not an input error.
    out["tax_id"] = re.sub(r"[^0-9A-Za-z]", "", _text(data, "tax_id", errors, 30)).upper()[:20]
    out["zip_code"] = re.sub(r"\D", "", _text(data, "zip_code", errors, 12))[:10]
    out["state"] = _text(data, "state", errors, 2).upper()
    out["city_ibge_code"] = re.sub(r"\D", "", _text(data, "city_ibge_code", errors, 7))[:7]
    if errors:
        raise EventError(errors)
    return out


def upsert_customer(clinic_id: int, data: dict) -> tuple[Customer, bool]:
    """Store the customer and its outbox row (not committed); release held invoices if now valid."""
    fields = normalize_customer(data)
    c = db.session.scalar(select(Customer).where(Customer.clinic_id == clinic_id,
                                                 Customer.external_id == fields["external_id"]))
    created = c is None
    if created:
        c = Customer(clinic_id=clinic_id, external_id=fields["external_id"])
        db.session.add(c)
    for k, v in fields.items():
        setattr(c, k, v)
    refresh_health(c, active_integration(clinic_id))
    db.session.flush()
    outbox.record(clinic_id, "customer.upserted", c.id)
    release_held_invoices(c)
    return c, created


def release_held_invoices(c: Customer) -> int:
    """Invoices held because of this customer's record go out once the record has no error."""
    if c.health_errors:
        return 0
    released = 0
    for inv in db.session.scalars(select(Invoice).where(Invoice.clinic_id == c.clinic_id, Invoice.customer_id == c.id,
                                                        Invoice.status == "blocked")):
        inv.status_reason = "Released: the customer record was fixed"
        outbox.record(c.clinic_id, "invoice.billed", inv.id, trigger="release")
        released += 1
    return released


def _decimal(value, field: str, errors: dict) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors[field] = "must be a number"
        return Decimal("0")
    if not d.is_finite() or d < 0 or d > Decimal("1e10"):
        errors[field] = "must be a non-negative amount"
        return Decimal("0")
    return d.quantize(Decimal("0.0001"))


def _date(value, field: str, errors: dict) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except (TypeError, ValueError):
        errors[field] = "must be a date (YYYY-MM-DD)"
        return None


def bill_invoice(clinic_id: int, data: dict) -> tuple[Invoice, bool]:
    if not isinstance(data, dict):
        raise EventError({"invoice": "must be an object"})
    errors: dict[str, str] = {}
    external_id = _text(data, "id", errors, 64)
    if not external_id:
        errors["id"] = "is required"
    number = _text(data, "number", errors, 40)
    kind = (data.get("kind") or "service")
    if kind not in ("service", "product"):
        errors["kind"] = "must be service or product"
    issue_date = _date(data.get("issue_date"), "issue_date", errors)
    customer = None
    customer_ref = data.get("customer_id")
    if isinstance(customer_ref, (str, int)) and str(customer_ref):
        customer = db.session.scalar(select(Customer).where(Customer.clinic_id == clinic_id,
                                                            Customer.external_id == str(customer_ref)))
    if customer is None:
        errors["customer_id"] = "unknown customer: send the customer.upserted event first"
    items, installments = [], []
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        errors["items"] = "at least one item is required"
    else:
        for n, it in enumerate(raw_items[:500]):
            if not isinstance(it, dict):
                errors[f"items[{n}]"] = "must be an object"
                continue
            desc = _text(it, "description", errors, 500)
            if not desc:
                errors[f"items[{n}].description"] = "is required"
            qty = _decimal(it.get("quantity", 1), f"items[{n}].quantity", errors)
            price = _decimal(it.get("unit_price"), f"items[{n}].unit_price", errors)
            items.append({"description": desc, "quantity": str(qty), "unit_price": str(price),
                          "service_code": _text(it, "service_code", errors, 20),
                          "kind": "product" if kind == "product" else "service"})
    total = sum((Decimal(i["quantity"]) * Decimal(i["unit_price"]) for i in items), Decimal("0")).quantize(Decimal("0.01"))
    raw_inst = data.get("installments") or [{"number": 1, "due_date": str(issue_date or ""), "amount": str(total)}]
    if not isinstance(raw_inst, list):
        errors["installments"] = "must be a list"
        raw_inst = []
    for n, p in enumerate(raw_inst[:120]):
        if not isinstance(p, dict):
            errors[f"installments[{n}]"] = "must be an object"
            continue
        due = _date(p.get("due_date"), f"installments[{n}].due_date", errors)
        amount = _decimal(p.get("amount"), f"installments[{n}].amount", errors).quantize(Decimal("0.01"))
        installments.append({"number": int(p.get("number") or n + 1) if str(p.get("number", n + 1)).isdigit() else n + 1,
                             "due_date": due.isoformat() if due else "", "amount": str(amount),
                             "payment_method": _text(p, "payment_method", errors, 40) or "Boleto"})
    if items and installments and not errors:
        inst_total = sum(Decimal(p["amount"]) for p in installments)
        if inst_total != total:
            errors["installments"] = f"installments add up to {inst_total} but the items total {total}"
    if errors:
        raise EventError(errors)
    inv = db.session.scalar(select(Invoice).where(Invoice.clinic_id == clinic_id, Invoice.external_id == external_id))
    created = inv is None
    if not created:
        return inv, False  # an invoice is billed once; a repeated event changes nothing
    inv = Invoice(clinic_id=clinic_id, external_id=external_id, number=number or external_id, customer_id=customer.id,
                  kind=kind, issue_date=issue_date, total=total, items=items, installments=installments,
                  notes=_text(data, "notes", errors, 2000), status="billed")
    db.session.add(inv)
    db.session.flush()
    if customer.health_errors:
        inv.status = "blocked"
        inv.status_reason = "Blocked: fix the customer record (" + "; ".join(
            p["message"] for p in customer.health_problems if p["severity"] == "error") + ")"
    else:
        outbox.record(clinic_id, "invoice.billed", inv.id)
    return inv, True

"""TecPet rows <-> the canonical records connectors speak."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from integrations.base import CustomerRecord, Installment, InvoiceItem, InvoiceRecord

from ..models import Customer, Invoice


def customer_record(c: Customer) -> CustomerRecord:
    return CustomerRecord(id=c.external_id, **{f: getattr(c, f) or "" for f in Customer.FIELDS})


def customer_dict(c: Customer) -> dict:
    return {"id": c.external_id, **{f: getattr(c, f) or "" for f in Customer.FIELDS}}


def apply_record(c: Customer, record: CustomerRecord) -> None:
    for f in Customer.FIELDS:
        setattr(c, f, getattr(record, f) or "")


def invoice_record(inv: Invoice) -> InvoiceRecord:
    return InvoiceRecord(
        id=inv.external_id,
        number=inv.number,
        customer=customer_record(inv.customer),
        issue_date=inv.issue_date,
        kind=inv.kind,
        notes=inv.notes or "",
        items=[InvoiceItem(description=i["description"], quantity=Decimal(str(i["quantity"])),
                           unit_price=Decimal(str(i["unit_price"])), service_code=i.get("service_code", ""),
                           kind=i.get("kind", inv.kind if inv.kind == "product" else "service"))
               for i in inv.items],
        installments=[Installment(number=int(p["number"]), due_date=date.fromisoformat(p["due_date"]),
                                  amount=Decimal(str(p["amount"])), payment_method=p.get("payment_method", "Boleto"))
                      for p in inv.installments],
    )

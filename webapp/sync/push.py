"""Push jobs: invoices one by one (order, receivables, NFS-e/NF-e), and the customer each one needs
(customers in batches: customer_step.py).

Exactly-once effect on at-least-once delivery: before any create the binding is written as
"pending" (the intent); a retry that finds a pending binding searches the ERP first.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import select

from integrations.base import Capability, ConnectorError, Feature, FinancialResult, FiscalState, PermanentError

from ..extensions import db
from ..health import check_customer
from ..models import Binding, Customer, Integration, Invoice, InvoiceReceivable, SyncRecord, SyncRun, utcnow
from . import runs
from .locks import record_locks
from .connectors import feature_on
from .records import customer_record, invoice_record

log = logging.getLogger(__name__)


def error_summary(problems) -> str:
    return "; ".join(p.message for p in problems if p.severity == "error")


def _bindings(integration_id: int, entity: str, local_ids: list[int]) -> dict[int, Binding]:
    if not local_ids:
        return {}
    rows = db.session.scalars(select(Binding).where(Binding.integration_id == integration_id,
                                                    Binding.entity == entity, Binding.local_id.in_(local_ids)))
    return {b.local_id: b for b in rows}


def _intent(integration: Integration, entity: str, local_id: int, existing: Binding | None) -> Binding:
    if existing is not None:
        return existing
    b = Binding(integration_id=integration.id, entity=entity, local_id=local_id, state="pending")
    db.session.add(b)
    return b


def _bind(b: Binding, remote_id: str, payload_hash: str, remote_copy: dict | None = None) -> None:
    b.remote_id = str(remote_id)
    b.state = "bound"
    b.payload_hash = payload_hash
    if remote_copy:
        b.remote_copy = remote_copy
        b.remote_seen_at = utcnow()


def ensure_customer_bound(integration: Integration, connector, customer: Customer) -> str:
    """The ERP id of the invoice's customer, pushing it first when new or changed."""
    with record_locks(integration.id, "customer", [customer.id]):
        return _ensure_customer_bound(integration, connector, customer)


def _ensure_customer_bound(integration: Integration, connector, customer: Customer) -> str:
    record = customer_record(customer)
    payload_hash = Binding.hash_payload(record.to_dict())
    b = _bindings(integration.id, "customer", [customer.id]).get(customer.id)
    if b is not None and b.state == "bound" and b.payload_hash == payload_hash:
        return b.remote_id
    b = _intent(integration, "customer", customer.id, b)
    db.session.commit()
    result = connector.upsert_customers([(record, b.remote_id if b.state == "bound" else None)])[0]
    if isinstance(result, ConnectorError):
        raise result
    _bind(b, result.remote_id, payload_hash, result.remote_copy or None)
    db.session.commit()
    return b.remote_id


def push_invoice(run: SyncRun, integration: Integration, connector, rec: SyncRecord) -> None:
    with record_locks(integration.id, "invoice", [rec.local_id]):
        db.session.refresh(rec)
        if rec.outcome == "pending":
            _push_invoice(run, integration, connector, rec)


def _push_invoice(run: SyncRun, integration: Integration, connector, rec: SyncRecord) -> None:
    inv = db.session.scalar(select(Invoice).where(Invoice.id == rec.local_id, Invoice.clinic_id == integration.clinic_id))
    if inv is None:
        runs.set_outcome(run, rec, "skipped", "The invoice no longer exists in TecPet")
        return
    problems = check_customer(customer_record(inv.customer), type(connector).record_requirements)
    errors = error_summary(problems)
    if errors:
        inv.status = "blocked"
        inv.status_reason = f"Blocked: fix the customer record ({errors})"
        runs.set_outcome(run, rec, "skipped", inv.status_reason)
        db.session.commit()
        return
    try:
        customer_remote_id = ensure_customer_bound(integration, connector, inv.customer)
        financial = _ensure_financial(integration, connector, inv, customer_remote_id)
        outcome = "created" if financial and run.trigger != "retry" else "updated"
        if feature_on(integration, Feature.ISSUE_INVOICE) and connector.supports(Capability.ISSUE_INVOICE):
            _issue(connector, inv, financial or FinancialResult(order_remote_id=""), customer_remote_id)
        elif financial and connector.supports(Capability.TRACK_INVOICE) and not inv.fiscal_state:
            # the ERP issues inside itself (Conta Azul): track the invoice of the order we created
            inv.fiscal_state, inv.fiscal_remote_id = FiscalState.PENDING.value, financial.order_remote_id
            inv.status = "sent"
            inv.status_reason = "The invoice is issued inside the ERP; TecPet brings it back when it is."
        elif inv.status in ("queued", "billed"):
            inv.status = "sent"
        runs.set_outcome(run, rec, outcome, inv.fiscal_message if inv.fiscal_state == "rejected" else "",
                         inv.order_remote_id)
    except PermanentError as exc:
        inv.status, inv.status_reason = "failed", exc.plain()
        runs.set_outcome(run, rec, "failed", exc.plain())
    db.session.commit()


def _ensure_financial(integration: Integration, connector, inv: Invoice, customer_remote_id: str):
    if not (feature_on(integration, Feature.GENERATE_FINANCIAL) and connector.supports(Capability.GENERATE_FINANCIAL)):
        return None
    record = invoice_record(inv)
    b = _bindings(integration.id, "invoice", [inv.id]).get(inv.id)
    if b is not None and b.state == "bound":
        return FinancialResult(order_remote_id=b.remote_id, order_number=inv.order_number,
                               receivable_remote_ids=list(inv.receivable_remote_ids or []))
    financial = None
    if b is not None:  # a previous attempt may have created the order before dying
        financial = connector.find_invoice(record)
    b = _intent(integration, "invoice", inv.id, b)
    db.session.commit()
    if financial is None:
        financial = connector.push_invoice(record, customer_remote_id)
    _bind(b, financial.order_remote_id, Binding.hash_payload({"invoice": inv.external_id}))
    inv.order_remote_id = financial.order_remote_id
    inv.order_number = financial.order_number
    inv.receivable_remote_ids = list(financial.receivable_remote_ids)
    known = set(db.session.scalars(select(InvoiceReceivable.remote_id).where(
        InvoiceReceivable.integration_id == integration.id, InvoiceReceivable.invoice_id == inv.id)))
    for rid in financial.receivable_remote_ids:
        if str(rid) not in known:
            db.session.add(InvoiceReceivable(integration_id=integration.id, remote_id=str(rid), invoice_id=inv.id))
    inv.status = "sent"
    db.session.commit()
    return financial


def _issue(connector, inv: Invoice, financial: FinancialResult, customer_remote_id: str) -> None:
    if not inv.fiscal_remote_id:
        fiscal = connector.issue_invoice(invoice_record(inv), financial, customer_remote_id)
        apply_fiscal(inv, fiscal)
        db.session.commit()
    # A short wait for authorities that answer within seconds; the schedule keeps polling after.
    for delay in (0.2, 0.5, 1.0):
        if inv.fiscal_state != FiscalState.PENDING.value or not connector.supports(Capability.TRACK_INVOICE):
            break
        time.sleep(delay)
        apply_fiscal(inv, connector.invoice_status(inv.fiscal_remote_id))


def apply_fiscal(inv: Invoice, fiscal) -> None:
    inv.fiscal_state = fiscal.state.value
    inv.fiscal_remote_id = fiscal.remote_id or inv.fiscal_remote_id
    inv.fiscal_number = fiscal.number or inv.fiscal_number
    inv.fiscal_message = fiscal.message or ""
    inv.status = {"pending": "issuing", "issued": "issued", "rejected": "rejected",
                  "cancelled": "cancelled"}.get(fiscal.state.value, inv.status)
    inv.status_reason = fiscal.message if fiscal.state == FiscalState.REJECTED else ""

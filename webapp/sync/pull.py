"""Pull jobs: bring customers, counter sales and receipts back from the ERP, page by page from a
stored cursor. A page's records and the advanced cursor commit together, so a crash resumes
where it stopped; sales are acknowledged to the ERP only after they are stored."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from integrations.base import COMPARED_CUSTOMER_FIELDS, Capability, FiscalState

from ..extensions import db
from ..models import Binding, Customer, Integration, Invoice, InvoiceReceivable, PosSale, Receipt, SyncRun, utcnow
from . import outbox, runs
from .push import apply_fiscal
from .records import apply_record, customer_record
from ..record_health import divergence, refresh_health

log = logging.getLogger(__name__)
MAX_PAGES = 1000


def pull_all(run: SyncRun, integration: Integration, connector) -> None:
    steps = [
        (Capability.PULL_CUSTOMERS, "customers", connector.pull_customers, store_customer),
        (Capability.PULL_POS_SALES, "pos_sales", connector.pull_pos_sales, store_pos_sale),
        (Capability.PULL_RECEIPTS, "receipts", connector.pull_receipts, store_receipt),
    ]
    for cap, kind, fetch, store in steps:
        if not connector.supports(cap):
            continue
        for _ in range(MAX_PAGES):
            cursor = (integration.cursors or {}).get(kind)
            page = fetch(cursor)
            for item in page.items:
                store(run, integration, item)
            cursors = dict(integration.cursors or {})
            if page.cursor is not None:
                cursors[kind] = page.cursor
            integration.cursors = cursors
            flag_modified(integration, "cursors")
            run.heartbeat_at = utcnow()
            db.session.commit()
            if kind == "pos_sales" and page.items:
                connector.acknowledge_pos_sales([s.remote_id for s in page.items])
            if not page.more:
                break
    if connector.supports(Capability.TRACK_INVOICE):
        track_invoices(run, integration, connector)
    integration.last_pull_at = utcnow()
    db.session.commit()


def track_invoices(run: SyncRun, integration: Integration, connector) -> None:
    """Poll the issuing outcome of invoices still pending at the authority."""
    pending = db.session.scalars(select(Invoice).where(Invoice.clinic_id == integration.clinic_id,
                                                       Invoice.fiscal_state == FiscalState.PENDING.value,
                                                       Invoice.fiscal_remote_id != "").limit(200))
    for inv in list(pending):
        before = inv.fiscal_state
        apply_fiscal(inv, connector.invoice_status(inv.fiscal_remote_id))
        if inv.fiscal_state != before:
            runs.add_record(run, "invoice", inv.id, f"Invoice {inv.number}", "updated",
                            f"Invoice {inv.fiscal_state}" + (f": {inv.fiscal_message}" if inv.fiscal_message else ""),
                            inv.fiscal_remote_id)
        db.session.commit()


def store_customer(run: SyncRun, integration: Integration, remote) -> None:
    """Bound: keep the ERP's copy for the divergence view; take it when TecPet did not change
    since our last push. Unbound: a customer born in the ERP becomes a TecPet customer."""
    b = db.session.scalar(select(Binding).where(Binding.integration_id == integration.id,
                                                Binding.entity == "customer", Binding.remote_id == str(remote.remote_id)))
    copy = {f: getattr(remote.record, f) or "" for f in COMPARED_CUSTOMER_FIELDS}
    label = remote.record.name
    if b is not None:
        c = db.session.get(Customer, b.local_id)
        b.remote_copy, b.remote_seen_at = copy, utcnow()
        if c is None:
            return
        if not divergence(c, b):
            runs.add_record(run, "customer", c.id, label, "unchanged", "", remote.remote_id)
            return
        local_unchanged_since_push = Binding.hash_payload(customer_record(c).to_dict()) == b.payload_hash
        if local_unchanged_since_push:
            take_erp_version(integration, c, b)
            runs.add_record(run, "customer", c.id, label, "updated", "Updated from the ERP", remote.remote_id)
        else:
            runs.add_record(run, "customer", c.id, label, "skipped",
                            "Changed in both TecPet and the ERP: see the divergence on the customer's page",
                            remote.remote_id)
        return
    external_id = f"{integration.erp}:{remote.remote_id}"
    c = db.session.scalar(select(Customer).where(Customer.clinic_id == integration.clinic_id,
                                                 Customer.external_id == external_id))
    created = c is None
    if created:
        c = Customer(clinic_id=integration.clinic_id, external_id=external_id)
        db.session.add(c)
    apply_record(c, remote.record)
    refresh_health(c, integration)
    db.session.flush()
    b = Binding(integration_id=integration.id, entity="customer", local_id=c.id, remote_id=str(remote.remote_id),
                state="bound", payload_hash=Binding.hash_payload(customer_record(c).to_dict()),
                remote_copy=copy, remote_seen_at=utcnow())
    db.session.add(b)
    outbox.record(integration.clinic_id, "customer.changed_in_erp", c.id, integration_id=integration.id,
                  trigger="pull")
    runs.add_record(run, "customer", c.id, label, "created" if created else "updated", "New customer from the ERP",
                    remote.remote_id)


def take_erp_version(integration: Integration, c: Customer, b: Binding) -> None:
    """Apply the ERP's copy to TecPet's record and tell TecPet core (an outbox event)."""
    for f in COMPARED_CUSTOMER_FIELDS:
        if f in (b.remote_copy or {}):
            setattr(c, f, b.remote_copy[f])
    refresh_health(c, integration)
    b.payload_hash = Binding.hash_payload(customer_record(c).to_dict())
    outbox.record(integration.clinic_id, "customer.changed_in_erp", c.id, integration_id=integration.id,
                  trigger="pull")


def store_pos_sale(run: SyncRun, integration: Integration, sale) -> None:
    row = db.session.scalar(select(PosSale).where(PosSale.integration_id == integration.id,
                                                  PosSale.remote_id == str(sale.remote_id)))
    created = row is None
    if created:
        row = PosSale(clinic_id=integration.clinic_id, integration_id=integration.id, remote_id=str(sale.remote_id))
        db.session.add(row)
    row.sold_at = sale.sold_at if isinstance(sale.sold_at, datetime) else None
    row.total = sale.total
    row.customer_name = sale.customer_name or ""
    row.payment_method = sale.payment_method or ""
    row.status = sale.status or ""
    row.items = [{k: str(v) for k, v in i.items()} for i in (sale.items or [])]
    if sale.customer_remote_id:
        b = db.session.scalar(select(Binding).where(Binding.integration_id == integration.id, Binding.entity == "customer",
                                                    Binding.remote_id == str(sale.customer_remote_id)))
        row.customer_id = b.local_id if b else None
    runs.add_record(run, "pos_sale", None, f"Counter sale {sale.remote_id}", "created" if created else "updated",
                    "", str(sale.remote_id))


def store_receipt(run: SyncRun, integration: Integration, receipt) -> None:
    row = db.session.scalar(select(Receipt).where(Receipt.integration_id == integration.id,
                                                  Receipt.remote_id == str(receipt.remote_id)))
    created = row is None
    if created:
        row = Receipt(clinic_id=integration.clinic_id, integration_id=integration.id, remote_id=str(receipt.remote_id))
        db.session.add(row)
    row.amount = receipt.amount
    row.paid_at = receipt.paid_at
    row.payment_method = receipt.payment_method or ""
    row.origin = receipt.origin or ""
    row.receivable_remote_id = str(receipt.receivable_remote_id or receipt.remote_id)
    inv = _invoice_of_receipt(integration, row)
    if inv is not None:
        row.invoice_id = inv.id
    runs.add_record(run, "receipt", row.invoice_id, f"Receipt {receipt.remote_id}",
                    "created" if created else "updated", "", str(receipt.remote_id))


def _invoice_of_receipt(integration: Integration, row: Receipt):
    link = db.session.scalar(select(InvoiceReceivable).where(InvoiceReceivable.integration_id == integration.id,
                                                             InvoiceReceivable.remote_id == row.receivable_remote_id))
    return db.session.get(Invoice, link.invoice_id) if link else None

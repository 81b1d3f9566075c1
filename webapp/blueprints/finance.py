"""Invoices and what came back from the ERP: counter sales and receipts."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from sqlalchemy import select

from ..access import clinic_scope
from ..extensions import db
from ..models import Invoice, PosSale, Receipt
from ..views import keyset
from ..params import row_id

bp = Blueprint("finance", __name__)
PER_PAGE = 50


@bp.route("/c/<int:clinic_id>/invoices")
@login_required
def invoices(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    q = select(Invoice).where(Invoice.clinic_id == clinic.id)
    rows, next_after = keyset(q, Invoice.id, request.args.get("after", type=row_id), PER_PAGE)
    return render_template("finance/invoices.html", clinic=clinic, invoices=rows, next_after=next_after)


@bp.route("/c/<int:clinic_id>/invoices/<int:invoice_id>")
@login_required
def invoice(clinic_id: int, invoice_id: int):
    clinic = clinic_scope(clinic_id)
    inv = db.session.scalar(select(Invoice).where(Invoice.id == invoice_id, Invoice.clinic_id == clinic.id))
    if inv is None:
        abort(404)
    receipts = db.session.scalars(select(Receipt).where(Receipt.clinic_id == clinic.id, Receipt.invoice_id == inv.id)).all()
    return render_template("finance/invoice.html", clinic=clinic, invoice=inv, receipts=receipts)


@bp.route("/c/<int:clinic_id>/pos-sales")
@login_required
def pos_sales(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    rows, next_after = keyset(select(PosSale).where(PosSale.clinic_id == clinic.id), PosSale.id,
                              request.args.get("after", type=row_id), PER_PAGE)
    return render_template("finance/pos_sales.html", clinic=clinic, sales=rows, next_after=next_after)


@bp.route("/c/<int:clinic_id>/receipts")
@login_required
def receipts(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    rows, next_after = keyset(select(Receipt).where(Receipt.clinic_id == clinic.id), Receipt.id,
                              request.args.get("after", type=row_id), PER_PAGE)
    return render_template("finance/receipts.html", clinic=clinic, receipts=rows, next_after=next_after)

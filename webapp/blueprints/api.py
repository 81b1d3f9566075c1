"""JSON API for TecPet core: customer upserted, invoice billed. Authenticated by a per-clinic
bearer token; CSRF does not apply (no cookies are used)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy import select

from ..events import EventError, bill_invoice, upsert_customer
from ..extensions import csrf, db
from ..models import ApiToken, Customer, OutboxEvent
from ..sync.records import customer_dict
from ..sync import outbox
from ..params import row_id

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
MAX_EVENTS = 1000


def _clinic_id() -> int | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(header[7:].strip())))
    return token.clinic_id if token else None


def _error(status: int, message: str, errors: dict | None = None):
    body = {"error": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), status


@bp.route("/events", methods=["POST"])
def events():
    clinic_id = _clinic_id()
    if clinic_id is None:
        return _error(401, "missing or invalid API token (Authorization: Bearer <token>)")
    payload = request.get_json(silent=True)
    if payload is None:
        return _error(400, "the body must be JSON")
    batch = payload.get("events") if isinstance(payload, dict) and "events" in payload else [payload]
    if not isinstance(batch, list) or not batch or len(batch) > MAX_EVENTS:
        return _error(400, f"send one event object or {{\"events\": [...]}} with 1 to {MAX_EVENTS} events")
    results = []
    try:
        for n, event in enumerate(batch):
            if not isinstance(event, dict):
                raise EventError({f"events[{n}]": "must be an object"})
            kind = event.get("type")
            try:
                if kind == "customer.upserted":
                    c, created = upsert_customer(clinic_id, event.get("customer"))
                    results.append({"type": kind, "id": c.external_id, "created": created,
                                    "health": {"errors": c.health_errors, "warnings": c.health_warnings}})
                elif kind == "invoice.billed":
                    inv, created = bill_invoice(clinic_id, event.get("invoice"))
                    results.append({"type": kind, "id": inv.external_id, "created": created, "status": inv.status,
                                    "reason": inv.status_reason})
                else:
                    raise EventError({"type": "must be customer.upserted or invoice.billed"})
            except EventError as exc:
                prefix = f"events[{n}]." if len(batch) > 1 else ""
                raise EventError({prefix + k: v for k, v in exc.errors.items()}) from None
    except EventError as exc:
        db.session.rollback()  # all or nothing: a batch is never half-written
        return _error(422, "the event was not accepted", exc.errors)
    db.session.commit()
    try:
        outbox.dispatch()
    except RedisError:
        pass  # stored with its outbox row: the sweeper/dispatcher in the worker sends it later
    return jsonify({"accepted": len(results), "results": results}), 202


@bp.route("/changes", methods=["GET"])
def changes():
    """Changes TecPet core must apply: customers created or changed on the ERP side (pulls,
    "take the ERP's version"). Poll with ?after=<last id seen>; at most 500 per answer."""
    clinic_id = _clinic_id()
    if clinic_id is None:
        return _error(401, "missing or invalid API token (Authorization: Bearer <token>)")
    after = request.args.get("after", default=0, type=row_id)
    rows = db.session.execute(
        select(OutboxEvent, Customer).join(Customer, Customer.id == OutboxEvent.subject_id)
        .where(OutboxEvent.clinic_id == clinic_id, OutboxEvent.topic == "customer.changed_in_erp",
               OutboxEvent.id > after, Customer.clinic_id == clinic_id)
        .order_by(OutboxEvent.id).limit(500)).all()
    return jsonify({"changes": [{"id": ev.id, "type": ev.topic, "at": ev.created_at.isoformat(),
                                 "customer": customer_dict(c)} for ev, c in rows],
                    "next_after": rows[-1][0].id if rows else after})

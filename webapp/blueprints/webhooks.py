"""ERP webhooks: verified with the ERP's signature, then turned into a pull of what changed.
No cookies, no CSRF: the signature is the authentication."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy import select

from integrations.base import Capability, ConnectorError

from ..extensions import csrf, db
from ..models import Integration, SyncRun
from ..sync import outbox
from ..sync.connectors import build_connector

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)
log = logging.getLogger(__name__)
MAX_BODY = 1_000_000


@bp.route("/<erp>/<int:integration_id>", methods=["POST"])
def receive(erp: str, integration_id: int):
    integration = db.session.scalar(select(Integration).where(Integration.id == integration_id, Integration.erp == erp))
    if integration is None or not integration.enabled:
        abort(404)
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        abort(413)
    connector = build_connector(integration)
    if not connector.supports(Capability.WEBHOOKS):
        abort(404)
    headers = {k: v for k, v in request.headers.items()}
    try:
        if not connector.verify_webhook(headers, body):
            log.warning("webhook for integration %s refused: bad signature", integration.id)
            return jsonify({"error": "invalid signature"}), 401
        changes = connector.webhook_changes(body)
    except ConnectorError as exc:
        return jsonify({"error": exc.plain()}), 400
    pending = db.session.scalar(select(SyncRun.id).where(SyncRun.integration_id == integration.id,
                                                         SyncRun.direction == "pull",
                                                         SyncRun.status == "queued").limit(1))
    if changes and not pending and not integration.paused:
        outbox.request_pull(integration, trigger="webhook")
        db.session.commit()
        try:
            outbox.dispatch()
        except RedisError:
            pass  # the outbox row is stored; the worker's tick sends it
    return jsonify({"accepted": len(changes)}), 202

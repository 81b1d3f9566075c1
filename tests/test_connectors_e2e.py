"""Every registered ERP, end to end through the real RQ worker against its sandbox: support sets
it up through the pages (OAuth included), customers and an invoice flow in, a second identical
push writes nothing, and a pull runs where the ERP offers one."""
from __future__ import annotations

import importlib
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import pytest
import requests
from sqlalchemy import select

from integrations.base import Capability, Feature
from integrations.registry import CONNECTORS, SANDBOXES, connector_class, sandbox_demo_settings
from webapp.models import Integration, Invoice, SyncRun

from .helpers import INVALID_CUSTOMER, VALID_CUSTOMERS, customer_event, invoice_event, post_events


class _FormReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action, self.method, self.fields = "", "get", {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and not self.action:
            self.action, self.method = attrs.get("action", ""), (attrs.get("method") or "get").lower()
        if tag in ("input", "button") and attrs.get("name"):
            self.fields.setdefault(attrs["name"], attrs.get("value", ""))


def sandbox_module(erp):
    return importlib.import_module(SANDBOXES[erp].partition(":")[0])


def writes(server) -> int:
    routes = requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()["by_route"]
    return sum(n for route, n in routes.items() if not route.startswith("GET"))


def approve_oauth(support, cid, erp):
    """Press "Connect", approve on the ERP's authorize page, follow the redirect back."""
    start = support.post(f"/c/{cid}/integration/oauth/start?erp={erp}", {"erp": erp})
    assert start.status_code == 302, start.get_data(as_text=True)[:300]
    page = requests.get(start.headers["Location"], timeout=5)
    assert page.status_code == 200
    form = _FormReader()
    form.feed(page.text)
    send = requests.post if form.method == "post" else requests.get
    kwargs = {"data": form.fields} if form.method == "post" else {"params": form.fields}
    answer = send(urljoin(page.url, form.action), allow_redirects=False, timeout=5, **kwargs)
    assert answer.status_code in (302, 303), answer.text[:300]
    back = urlparse(answer.headers["Location"])
    done = support.get(f"{back.path}?{back.query}")
    assert done.status_code == 302, done.get_data(as_text=True)[:300]


@pytest.mark.parametrize("erp", list(CONNECTORS))
def test_erp_end_to_end_through_the_worker(erp, world, web, api, work, serve_sandbox, db_session):
    cls = connector_class(erp)
    module = sandbox_module(erp)
    server = serve_sandbox(module.Sandbox())
    cid = world["clinic_a"].id
    support = web("support@test")
    creds = {f"cred_{f.name}": module.DEMO_CREDENTIALS[f.name] for f in cls.credential_fields
             if f.name in module.DEMO_CREDENTIALS}
    settings = {f"set_{k}": v for k, v in sandbox_demo_settings(erp, server.url).items()}
    features = {f"feat_{f.value}": "y" for f in Feature if cls.offers(f)}
    form = {"erp": erp, **creds, **settings, **features}
    if cls.auth_kind == "oauth2":
        assert support.post(f"/c/{cid}/integration/setup?erp={erp}", {**form, "action": "save_disabled"}).status_code == 302
        approve_oauth(support, cid, erp)
    assert support.post(f"/c/{cid}/integration/test?erp={erp}", form).get_data(as_text=True).count("Connection OK") == 1
    assert support.post(f"/c/{cid}/integration/setup?erp={erp}", {**form, "action": "save_enabled"}).status_code == 302
    integration = db_session.scalar(select(Integration).where(Integration.erp == erp))
    assert integration.enabled

    post_events(api, world["token_a"], *[customer_event(c) for c in VALID_CUSTOMERS + [INVALID_CUSTOMER]])
    work()
    if cls.supports(Capability.PUSH_CUSTOMERS):
        pushed = db_session.scalars(select(SyncRun).where(SyncRun.entity == "customer")).all()
        assert sum(r.created + r.updated for r in pushed) == len(VALID_CUSTOMERS), [(r.status, r.error) for r in pushed]
        assert sum(r.skipped for r in pushed) >= 1
        assert all(r.failed == 0 for r in pushed), [r.error for r in pushed]

    if cls.supports(Capability.GENERATE_FINANCIAL):
        post_events(api, world["token_a"], invoice_event("f-e2e", VALID_CUSTOMERS[0]["id"], "300.00", 2))
        work()
        inv = db_session.scalar(select(Invoice).where(Invoice.external_id == "f-e2e"))
        assert inv.order_remote_id, (inv.status, inv.status_reason)
        if cls.supports(Capability.ISSUE_INVOICE):
            assert inv.fiscal_state in ("pending", "issued", "rejected"), (inv.fiscal_state, inv.fiscal_message)
            if inv.fiscal_state == "rejected":  # the authority's reason reaches the invoice page
                page = web("owner-a@test").get(f"/c/{cid}/invoices/{inv.id}").get_data(as_text=True)
                assert inv.fiscal_message and inv.fiscal_message[:30] in page

    # the same events again: nothing is written to the ERP
    before = writes(server)
    post_events(api, world["token_a"], *[customer_event(c) for c in VALID_CUSTOMERS])
    if cls.supports(Capability.GENERATE_FINANCIAL):
        post_events(api, world["token_a"], invoice_event("f-e2e", VALID_CUSTOMERS[0]["id"], "300.00", 2))
    work()
    assert writes(server) == before

    if cls.offers(Feature.PULL_BACK):
        support.post(f"/c/{cid}/integration/{integration.id}/pull")
        work()
        pull = db_session.scalar(select(SyncRun).where(SyncRun.direction == "pull").order_by(SyncRun.id.desc()))
        assert pull.status == "succeeded", pull.error

    run = db_session.scalar(select(SyncRun).order_by(SyncRun.id))
    page = web("owner-a@test").get(f"/c/{cid}/runs/{run.id}").get_data(as_text=True)
    assert "fix the customer record" in page

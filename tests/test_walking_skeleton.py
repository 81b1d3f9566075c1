"""The whole flow for VHSYS, end to end: support sets up the integration through the pages,
TecPet core posts events, the real RQ worker pushes to the VHSYS sandbox, pages show the outcome,
and the pull brings counter sales, receipts and customers back."""
from __future__ import annotations

import requests
from sqlalchemy import select

from integrations.vhsys.sandbox import DEMO_CREDENTIALS
from webapp.models import AuditLog, Customer, Integration, Invoice, PosSale, Receipt, SyncRecord, SyncRun

from .helpers import erp_call, INVALID_CUSTOMER, VALID_CUSTOMERS, customer_event, invoice_event, post_events


def sandbox_state(sandbox):
    return requests.get(f"{sandbox.url}/__sandbox__/state", timeout=5).json()


def writes(sandbox) -> int:
    routes = requests.get(f"{sandbox.url}/__sandbox__/stats", timeout=5).json()["by_route"]
    return sum(n for route, n in routes.items() if not route.startswith("GET"))


def setup_vhsys(support, clinic_id, sandbox, features=("sync_customers", "generate_financial", "issue_invoice", "pull_back")):
    form = {"erp": "vhsys", "cred_access_token": DEMO_CREDENTIALS["access_token"],
            "cred_secret_access_token": DEMO_CREDENTIALS["secret_access_token"], "set_base_url": sandbox.url,
            "action": "save_enabled", **{f"feat_{f}": "y" for f in features}}
    return support.post(f"/c/{clinic_id}/integration/setup?erp=vhsys", form)


def test_support_tests_connection_in_place_and_owner_cannot_reach_setup(world, web, vhsys_sandbox):
    cid = world["clinic_a"].id
    support = web("support@test")
    page = support.get(f"/c/{cid}/integration/setup?erp=vhsys")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Access-Token" in html and "Secret-Access-Token" in html and 'hx-post="/c/' in html
    ok = support.post(f"/c/{cid}/integration/test?erp=vhsys", {
        "erp": "vhsys", "cred_access_token": DEMO_CREDENTIALS["access_token"],
        "cred_secret_access_token": DEMO_CREDENTIALS["secret_access_token"], "set_base_url": vhsys_sandbox.url},
        headers={"HX-Request": "true"})
    assert ok.status_code == 200 and "Connection OK" in ok.get_data(as_text=True)
    bad = support.post(f"/c/{cid}/integration/test?erp=vhsys", {
        "erp": "vhsys", "cred_access_token": "wrong", "cred_secret_access_token": "wrong",
        "set_base_url": vhsys_sandbox.url})
    assert "Connection failed" in bad.get_data(as_text=True)
    # found by R4: a pasted token with an accent or an emoji never reaches an HTTP header (it was a 500)
    for garbled in ("tok\u00e9n", "abc\U000aab2f", "two words"):
        refused = support.post(f"/c/{cid}/integration/test?erp=vhsys", {
            "erp": "vhsys", "cred_access_token": garbled,
            "cred_secret_access_token": DEMO_CREDENTIALS["secret_access_token"], "set_base_url": vhsys_sandbox.url})
        assert refused.status_code < 500 and "copy it again from the ERP" in refused.get_data(as_text=True)
    assert web("owner-a@test").get(f"/c/{cid}/integration/setup?erp=vhsys").status_code == 403


def test_event_to_erp_and_back(world, web, api, work, vhsys_sandbox, db_session):
    cid, token = world["clinic_a"].id, world["token_a"]
    assert post_events(api, token, *[customer_event(c) for c in VALID_CUSTOMERS + [INVALID_CUSTOMER]]).status_code == 202

    support = web("support@test")
    resp = setup_vhsys(support, cid, vhsys_sandbox)
    assert resp.status_code == 302
    integration = db_session.scalar(select(Integration).where(Integration.clinic_id == cid))
    assert integration.enabled and "sync_customers" in integration.features
    # credentials are stored encrypted, never in clear
    assert DEMO_CREDENTIALS["secret_access_token"] not in integration.credentials_encrypted
    initial = db_session.scalar(select(SyncRun).where(SyncRun.trigger == "initial"))
    assert initial.status == "queued" and initial.total == 4

    work()
    db_session.expire_all()
    initial = db_session.get(SyncRun, initial.id)
    assert (initial.status, initial.created, initial.skipped, initial.failed) == ("succeeded", 3, 1, 0)
    state = sandbox_state(vhsys_sandbox)
    assert sorted(c["razao_cliente"] for c in state["clientes"]) == sorted(c["name"] for c in VALID_CUSTOMERS)
    skipped = db_session.scalar(select(SyncRecord).where(SyncRecord.run_id == initial.id, SyncRecord.outcome == "skipped"))
    assert "fix the customer record" in skipped.message and "CPF" in skipped.message

    owner = web("owner-a@test")
    warnings = owner.get(f"/c/{cid}/customers/warnings").get_data(as_text=True)
    assert "Bruno Sem Documento" in warnings and "Ana Conceição" not in warnings
    run_page = owner.get(f"/c/{cid}/runs/{initial.id}").get_data(as_text=True)
    assert "skipped" in run_page and "Bruno Sem Documento" in run_page
    history = owner.get(f"/c/{cid}/runs").get_data(as_text=True)
    assert f"#{initial.id}" in history and "initial" in history

    # the invoice becomes the service order, installments, receivables and the NFS-e
    assert post_events(api, token, invoice_event("f-1", "c-ana", "250.00", 2)).status_code == 202
    work()
    inv = db_session.scalar(select(Invoice).where(Invoice.external_id == "f-1"))
    db_session.refresh(inv)
    state = sandbox_state(vhsys_sandbox)
    assert len(state["ordens_servico"]) == 1
    order = state["ordens_servico"][0]
    assert len(order["parcelas"]) == 2 and len(order["servicos"]) == 1
    assert len(state["contas_receber"]) == 2
    assert len(state["notas_servico"]) == 1
    assert inv.order_remote_id and len(inv.receivable_remote_ids) == 2
    assert inv.fiscal_state in ("issued", "pending")
    if inv.fiscal_state == "pending":  # the municipality answers later: the scheduled pull tracks it
        support.post(f"/c/{cid}/integration/{integration.id}/pull")
        work()
        db_session.refresh(inv)
    assert inv.fiscal_state == "issued" and inv.fiscal_number
    page = owner.get(f"/c/{cid}/invoices/{inv.id}").get_data(as_text=True)
    assert "issued" in page and inv.fiscal_number in page

    # the same events again change nothing in the ERP
    before = writes(vhsys_sandbox)
    post_events(api, token, *[customer_event(c) for c in VALID_CUSTOMERS])
    post_events(api, token, invoice_event("f-1", "c-ana", "250.00", 2))
    work()
    assert writes(vhsys_sandbox) == before
    state = sandbox_state(vhsys_sandbox)
    assert len(state["clientes"]) == 3 and len(state["ordens_servico"]) == 1 and len(state["contas_receber"]) == 2

    # a changed customer updates the ERP's record instead of creating a second one
    changed = dict(VALID_CUSTOMERS[0], street="Rua Augusta", number="500")
    post_events(api, token, customer_event(changed))
    work()
    state = sandbox_state(vhsys_sandbox)
    assert len(state["clientes"]) == 3
    assert any(c["endereco_cliente"] == "Rua Augusta" for c in state["clientes"])

    # pull back: a counter sale made in VHSYS and a receivable paid there come into TecPet
    headers = {"access-token": DEMO_CREDENTIALS["access_token"],
               "secret-access-token": DEMO_CREDENTIALS["secret_access_token"], "User-Agent": "test/1.0"}
    sale = erp_call("POST", f"{vhsys_sandbox.url}/vendas-balcao", json={
        "id_cliente": 0, "valor_total_produtos": "42.50", "valor_total_nota": "42.50", "forma_pagamento": "Dinheiro",
        "status_pedido": "Atendido"}, headers=headers).json()
    assert sale["status"] == "success"
    rec_id = inv.receivable_remote_ids[0]
    paid = erp_call("PUT", f"{vhsys_sandbox.url}/contas-receber/{rec_id}", json={
        "liquidado_rec": "Sim", "valor_pago": "125.00", "data_pagamento": "2026-11-24"}, headers=headers).json()
    assert paid["status"] == "success"
    assert support.post(f"/c/{cid}/integration/{integration.id}/pull").status_code == 302
    work()
    pull = db_session.scalar(select(SyncRun).where(SyncRun.direction == "pull").order_by(SyncRun.id.desc()))
    assert pull.status == "succeeded", pull.error
    assert db_session.scalar(select(PosSale).where(PosSale.clinic_id == cid)) is not None
    receipt = db_session.scalar(select(Receipt).where(Receipt.clinic_id == cid, Receipt.remote_id == str(rec_id)))
    assert receipt is not None and receipt.invoice_id == inv.id
    assert "42,50" in owner.get(f"/c/{cid}/pos-sales").get_data(as_text=True)
    assert "125,00" in owner.get(f"/c/{cid}/receipts").get_data(as_text=True)

    # a second pull from the stored cursor brings nothing new
    support.post(f"/c/{cid}/integration/{integration.id}/pull")
    work()
    again = db_session.scalar(select(SyncRun).where(SyncRun.direction == "pull").order_by(SyncRun.id.desc()))
    assert again.id != pull.id and again.created == 0

    # audit trail of what support did, without any secret
    actions = [a.action for a in db_session.scalars(select(AuditLog))]
    assert "credentials.set" in actions and "integration.saved" in actions
    for page in ("/support/audit", f"/c/{cid}/integration", f"/c/{cid}/integration/setup?erp=vhsys"):
        body = support.get(page).get_data(as_text=True)
        assert DEMO_CREDENTIALS["secret_access_token"] not in body
        assert DEMO_CREDENTIALS["access_token"] not in body


def test_progress_partial_polls_until_the_run_ends(world, web, api, work, vhsys_sandbox, db_session):
    cid = world["clinic_a"].id
    post_events(api, world["token_a"], customer_event(VALID_CUSTOMERS[0]))
    setup_vhsys(web("support@test"), cid, vhsys_sandbox)
    run = db_session.scalar(select(SyncRun))
    owner = web("owner-a@test")
    queued = owner.get(f"/c/{cid}/runs/{run.id}/progress").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in queued
    assert 'hx-trigger="every 1s"' in owner.get(f"/c/{cid}/").get_data(as_text=True)
    work()
    done = owner.get(f"/c/{cid}/runs/{run.id}/progress").get_data(as_text=True)
    assert "succeeded" in done and "hx-trigger" not in done


def test_invalid_customer_blocks_its_invoice_until_fixed(world, web, api, work, vhsys_sandbox, db_session):
    cid, token = world["clinic_a"].id, world["token_a"]
    setup_vhsys(web("support@test"), cid, vhsys_sandbox)
    post_events(api, token, customer_event(INVALID_CUSTOMER))
    resp = post_events(api, token, invoice_event("f-9", "c-bad", "100.00", 1))
    assert resp.json["results"][0]["status"] == "blocked"
    work()
    inv = db_session.scalar(select(Invoice).where(Invoice.external_id == "f-9"))
    assert inv.status == "blocked" and "fix the customer record" in inv.status_reason
    assert sandbox_state(vhsys_sandbox)["ordens_servico"] == []
    fixed = dict(VALID_CUSTOMERS[0], id="c-bad", name="Bruno Com Documento")
    post_events(api, token, customer_event(fixed))
    work()
    db_session.refresh(inv)
    assert inv.status in ("issued", "issuing"), inv.status_reason
    assert len(sandbox_state(vhsys_sandbox)["ordens_servico"]) == 1


def test_event_api_rejects_bad_input_and_writes_nothing(world, api, db_session):
    token = world["token_a"]
    bad = post_events(api, token, customer_event({"id": "", "person_type": "XX"}))
    assert bad.status_code == 422
    assert set(bad.json["errors"]) >= {"id", "person_type"}
    # a batch with one bad event is refused whole
    mixed = post_events(api, token, customer_event(VALID_CUSTOMERS[0]), invoice_event("f-2", "nobody"))
    assert mixed.status_code == 422 and "events[1].customer_id" in mixed.json["errors"]
    assert db_session.scalar(select(Customer)) is None
    assert api.post("/api/v1/events", data="nope", headers={"Authorization": f"Bearer {token}"}).status_code == 400

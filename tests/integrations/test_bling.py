"""Bling connector against its sandbox on loopback, with the real Redis and the shared HTTP client.

Every test scales Bling's limits (3/s, 120,000/day) by SCALE on both sides, the connector's
`rate_limit_scale` and the sandbox's `rate_limit`, so runs stay short while the limits still hold.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

from integrations.base import (AuthError, ConnectorContext, CustomerRecord, FiscalState, InvoiceItem, InvoiceRecord,
                               Installment, PermanentError, PushResult, TransientError)
from integrations.bling import BlingConnector
from integrations.bling.sandbox import BLING_RATE_LIMIT, DEMO_CREDENTIALS, Sandbox
from integrations.brazil import cnpj_check_digits, cpf_check_digits
from integrations.http import HttpClient

SCALE = 20
SCALED_LIMITS = [(n * SCALE, s) for n, s in BLING_RATE_LIMIT]
REDIRECT = "https://app.tecpet.test/integrations/bling/callback"


# --------------------------------------------------------------------------- helpers
def cpf(n: int) -> str:
    base = f"{n:09d}"
    return base + cpf_check_digits(base)


def cnpj(n: int) -> str:
    base = f"{n:08d}0001"
    return base + cnpj_check_digits(base)


def customer(n: int, **changes) -> CustomerRecord:
    data = dict(id=f"cust-{n}", person_type="PF", name=f"Tutor {n}", tax_id=cpf(100_000 + n),
                email=f"tutor{n}@example.com", phone="11987654321", zip_code="01310100", street="Av. Paulista",
                number=str(n), district="Bela Vista", city="São Paulo", state="SP")
    data.update(changes)
    return CustomerRecord(**data)


def invoice(n: int, who: CustomerRecord, *, kind: str = "service", methods=("PIX", "Boleto")) -> InvoiceRecord:
    today = date.today()
    items = [InvoiceItem("Consulta veterinária", Decimal("1"), Decimal("150.00"), service_code="0501", kind=kind),
             InvoiceItem("Vacina V10", Decimal("2"), Decimal("45.50"), service_code="0501", kind=kind)]
    total = sum((i.total for i in items), Decimal("0"))
    first = (total / len(methods)).quantize(Decimal("0.01"))
    amounts = [first] * (len(methods) - 1) + [total - first * (len(methods) - 1)]
    installments = [Installment(k + 1, today + timedelta(days=30 * k), amounts[k], method)
                    for k, method in enumerate(methods)]
    return InvoiceRecord(id=f"inv-{n}", number=str(5000 + n), customer=who, issue_date=today, items=items,
                         installments=installments, kind=kind)


class _FormReader(HTMLParser):
    """Reads the authorize page's form like a browser would."""

    def __init__(self):
        super().__init__()
        self.action, self.fields = "", {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action", "")
        if tag in ("input", "button") and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value", "")


def approve(server, connector: BlingConnector, state: str = "xyz") -> str:
    """Open the authorize URL, press Approve, return the code from the redirect."""
    page = requests.get(connector.authorize_url(REDIRECT, state), timeout=5)
    assert page.status_code == 200 and "Approve" in page.text
    form = _FormReader()
    form.feed(page.text)
    answer = requests.post(urljoin(page.url, form.action), data=form.fields, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = urlparse(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def make_connector(server, http, credentials=None, saved=None, account_key="test-acct", **settings) -> BlingConnector:
    base = {"base_url": server.url, "rate_limit_scale": str(SCALE), "pull_lag_seconds": "0"}
    base.update(settings)
    # every connector of one account shares the stored credentials, as workers share the database
    store = _STORES.setdefault((id(server), account_key), {})

    def save(creds):
        store.clear()
        store.update(creds)
        if saved is not None:
            saved.append(dict(creds))

    ctx = ConnectorContext(credentials=dict(credentials or DEMO_CREDENTIALS), settings=base, http=http,
                           account_key=account_key, save_credentials=save, load_credentials=lambda: dict(store))
    return BlingConnector(ctx)


_STORES: dict = {}


def authorized(server, http, **settings) -> BlingConnector:
    connector = make_connector(server, http, **settings)
    connector.exchange_code(approve(server, connector), REDIRECT)
    return connector


def sandbox_state(server) -> dict:
    return requests.get(server.url + "/__sandbox__/state", timeout=5).json()


def sandbox_stats(server) -> dict:
    return requests.get(server.url + "/__sandbox__/stats", timeout=5).json()


def set_faults(server, **faults) -> None:
    assert requests.post(server.url + "/__sandbox__/faults", json=faults, timeout=5).status_code == 200


def contacts_with(server, tax_id: str) -> list[dict]:
    return [c for c in sandbox_state(server)["contacts"] if c.get("numeroDocumento") == tax_id]


@pytest.fixture
def server(serve_sandbox):
    return serve_sandbox(Sandbox(rate_limit=SCALED_LIMITS, issuing_seconds=0.2))


@pytest.fixture
def bling(server, http_client):
    return authorized(server, http_client)


def wait_for_state(connector, remote_id, wanted, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        result = connector.invoice_status(remote_id)
        if result.state == wanted or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


# --------------------------------------------------------------------------- connection and OAuth
def test_connection_succeeds_with_demo_credentials_and_fails_with_wrong_ones(server, http_client):
    saved = []
    connector = make_connector(server, http_client, saved=saved)
    creds = connector.exchange_code(approve(server, connector), REDIRECT)
    assert {"access_token", "refresh_token", "expires_at"} <= set(creds)
    assert float(creds["expires_at"]) - time.time() == pytest.approx(21_600, abs=5)
    assert saved and saved[-1]["refresh_token"] == creds["refresh_token"]
    assert "Clínica Veterinária Demo" in connector.test_connection()

    wrong = make_connector(server, http_client, credentials={
        "client_id": DEMO_CREDENTIALS["client_id"], "client_secret": "not-the-secret",
        "access_token": "f" * 40, "refresh_token": "e" * 40, "expires_at": str(int(time.time()) + 3600)},
        account_key="other")
    with pytest.raises(AuthError) as refused:
        wrong.test_connection()
    assert "client" in refused.value.plain().lower()


def test_authorization_code_is_single_use(server, http_client):
    connector = make_connector(server, http_client)
    code = approve(server, connector)
    connector.exchange_code(code, REDIRECT)
    assert connector.test_connection()
    with pytest.raises(AuthError):
        connector.exchange_code(code, REDIRECT)
    # Re-using a code revokes the grant it produced: the clinic must approve again.
    with pytest.raises(AuthError):
        connector.test_connection()


def test_expired_token_is_refreshed_and_the_old_refresh_token_is_refused(server, http_client, bling):
    old_refresh = bling.ctx.credentials["refresh_token"]
    set_faults(server, expire_tokens=True)
    assert "Demo" in bling.test_connection()
    assert bling.ctx.credentials["refresh_token"] != old_refresh
    assert sandbox_stats(server)["refreshes"] == 1
    stale = make_connector(server, http_client, credentials={**DEMO_CREDENTIALS, "access_token": "x" * 40,
                                                             "refresh_token": old_refresh, "expires_at": "0"},
                           account_key="stale")
    with pytest.raises(AuthError) as refused:
        stale.test_connection()
    assert "approve TecPet in Bling again" in refused.value.plain()
    calls = sandbox_stats(server)["token_calls"]
    for _ in range(25):  # a dead grant never hammers the token endpoint (20 calls/min block the IP)
        with pytest.raises(AuthError):
            stale.test_connection()
    assert sandbox_stats(server)["token_calls"] == calls and sandbox_stats(server)["ip_blocks"] == 0


def test_tokens_dying_as_fast_as_they_come_are_transient_not_a_lost_authorization(serve_sandbox, http_client):
    """Every refresh works but each new token is already refused: the grant is fine, so the sync is
    postponed (TransientError) instead of telling the clinic to approve TecPet again."""
    server = serve_sandbox(Sandbox(rate_limit=SCALED_LIMITS, issuing_seconds=0.2))
    connector = authorized(server, http_client)
    server.app.token_lifetime = 0.0  # tokens minted from now on are expired on arrival
    set_faults(server, expire_tokens=True)
    with pytest.raises(TransientError) as refused:
        connector.find_customer(customer(9))
    assert "freshly refreshed" in refused.value.plain() and "approve" not in refused.value.plain()
    assert sandbox_stats(server)["refreshes"] == 3
    server.app.token_lifetime = 21_600.0
    set_faults(server, expire_tokens=True)
    assert connector.find_customer(customer(9)) is None  # the next attempt goes through


def test_two_workers_refreshing_at_once_keep_the_grant(server, redis_client, http_client, bling):
    creds = dict(bling.ctx.credentials, expires_at="0")  # both copies look expired
    workers = [make_connector(server, HttpClient(redis_client, timeout=5, retries=3, backoff=0.05),
                              credentials=dict(creds)) for _ in range(2)]
    barrier, outcomes = threading.Barrier(2), []

    def run(worker):
        barrier.wait()
        outcomes.append(worker.test_connection())

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 2
    assert sandbox_stats(server)["refreshes"] == 1  # one rotation, adopted by the other worker
    assert workers[0].ctx.credentials["access_token"] == workers[1].ctx.credentials["access_token"]
    # The grant survives: the newest refresh token still rotates.
    set_faults(server, expire_tokens=True)
    assert workers[1].test_connection()
    assert sandbox_stats(server)["refreshes"] == 2


# --------------------------------------------------------------------------- customers
def test_customer_create_then_update_of_a_changed_record(server, bling):
    created = bling.create_customer(customer(1))
    assert created.created
    stored = sandbox_state(server)["contacts"][0]
    assert stored["numeroDocumento"] == cpf(100_001) and stored["endereco"]["geral"]["cep"] == "01310100"
    assert stored["codigo"] == "cust-1" and stored["celular"] == "11987654321"

    result = bling.update_customer(created.remote_id, customer(1, name="Tutor Um", city="Campinas",
                                                               zip_code="13010000"))
    assert result.remote_id == created.remote_id and not result.created
    back = bling.get_customer(created.remote_id).record
    assert (back.name, back.city, back.zip_code) == ("Tutor Um", "Campinas", "13010000")
    assert len(sandbox_state(server)["contacts"]) == 1


def test_repushing_the_same_customer_finds_the_existing_record(server, bling):
    record = customer(2, person_type="PJ", tax_id=cnpj(4242), state_registration="ISENTO")
    first = bling.upsert_customers([(record, None)])[0]
    assert isinstance(first, PushResult) and first.created
    masked = customer(2, person_type="PJ", tax_id=f"{record.tax_id[:2]}.{record.tax_id[2:5]}.{record.tax_id[5:8]}/"
                                                  f"{record.tax_id[8:12]}-{record.tax_id[12:]}",
                      state_registration="ISENTO", email="novo@example.com")
    second = bling.upsert_customers([(masked, None)])[0]
    assert isinstance(second, PushResult) and not second.created and second.remote_id == first.remote_id
    found = contacts_with(server, record.tax_id)
    assert len(found) == 1 and found[0]["email"] == "novo@example.com" and found[0]["indicadorIe"] == 2

    no_tax_id = customer(3, tax_id="")  # found by TecPet's id kept in the contact's code
    assert bling.upsert_customers([(no_tax_id, None)])[0].created
    assert not bling.upsert_customers([(customer(3, tax_id="", name="Tutor 3 B"), None)])[0].created
    assert [c["nome"] for c in sandbox_state(server)["contacts"] if c["codigo"] == "cust-3"] == ["Tutor 3 B"]


def test_bling_validation_errors_become_plain_permanent_errors(bling):
    with pytest.raises(PermanentError) as invalid:
        bling.create_customer(customer(3, tax_id="12345678900"))
    text = invalid.value.plain()
    assert "CPF informado é inválido" in text and "tax_id" in text and "Bling refused the customer" in text

    with pytest.raises(PermanentError) as missing:  # a body missing a spec-required field, sent directly
        bling._api("POST", "/contatos", body={"situacao": "A", "tipo": "F"}, subject="customer")
    assert "name: O campo nome é obrigatório" in missing.value.plain()


def test_sandbox_refuses_request_bodies_the_spec_rejects(server, bling):
    headers = {"Authorization": f"Bearer {bling.ctx.credentials['access_token']}"}
    good = {"nome": "Ana", "situacao": "A", "tipo": "F", "numeroDocumento": cpf(777)}
    assert requests.post(server.url + "/contatos", json=good, headers=headers, timeout=5).status_code == 201

    bad_enum = requests.post(server.url + "/contatos", json={**good, "situacao": "Z"}, headers=headers, timeout=5)
    assert bad_enum.status_code == 400
    error = bad_enum.json()["error"]
    assert error["type"] == "VALIDATION_ERROR" and error["fields"][0]["element"] == "situacao"

    read_only = requests.post(server.url + "/contatos", json={**good, "id": 5}, headers=headers, timeout=5)
    assert read_only.status_code == 400 and read_only.json()["error"]["fields"][0]["element"] == "id"

    order = {"contato": {"id": 1}, "data": "2026-01-10", "dataSaida": "2026-01-10", "dataPrevista": "2026-01-10",
             "itens": [{"quantidade": 1, "valor": 10, "valorLista": 10, "descricao": "x"}],
             "parcelas": [{"id": 0, "dataVencimento": "10/02/2026", "valor": 10}]}
    refused = requests.post(server.url + "/pedidos/vendas", json=order, headers=headers, timeout=5)
    assert refused.status_code == 400
    fields = refused.json()["error"]["fields"]
    assert {f["element"] for f in fields} == {"parcelas"}
    assert {c["element"] for f in fields for c in f["collection"]} == {"dataVencimento", "formaPagamento"}
    assert all(c["index"] == 1 for f in fields for c in f["collection"])
    assert len(sandbox_state(server)["orders"]) == 0


# --------------------------------------------------------------------------- invoices
def test_invoice_becomes_order_with_installments_and_receivables(server, bling):
    who = customer(4)
    contact_id = bling.create_customer(who).remote_id
    bill = invoice(4, who)
    result = bling.push_invoice(bill, contact_id)
    state = sandbox_state(server)
    [order] = state["orders"]
    assert result.order_remote_id == str(order["id"]) and result.order_number == str(order["numero"])
    assert order["numeroLoja"] == "TP-inv-4" and order["total"] == 241.0
    assert [p["formaPagamento"]["id"] for p in order["parcelas"]] == [505, 504]  # PIX, Boleto bancário
    receivables = sorted(state["receivables"], key=lambda r: r["vencimento"])
    assert result.receivable_remote_ids == [str(r["id"]) for r in receivables]
    assert [r["valor"] for r in receivables] == [120.5, 120.5]
    assert all(r["origem"]["id"] == order["id"] for r in receivables)

    again = bling.push_invoice(bill, contact_id)  # a retried push continues, never duplicates
    assert again == result and bling.find_invoice(bill) == result
    state = sandbox_state(server)
    assert len(state["orders"]) == 1 and len(state["receivables"]) == 2


def test_unknown_payment_method_is_a_plain_permanent_error(server, bling):
    who = customer(5)
    contact_id = bling.create_customer(who).remote_id
    with pytest.raises(PermanentError) as refused:
        bling.push_invoice(invoice(5, who, methods=("Crediário da casa",)), contact_id)
    assert "Crediário da casa" in refused.value.plain() and "Formas de pagamento" in refused.value.plain()
    assert sandbox_state(server)["orders"] == []


def test_nfse_is_created_sent_and_tracked_until_issued(server, bling):
    who = customer(6)
    contact_id = bling.create_customer(who).remote_id
    bill = invoice(6, who)
    financial = bling.push_invoice(bill, contact_id)
    fiscal = bling.issue_invoice(bill, financial, contact_id)
    assert fiscal.state == FiscalState.PENDING and fiscal.remote_id.startswith("nfse:")
    issued = wait_for_state(bling, fiscal.remote_id, FiscalState.ISSUED)
    assert issued.state == FiscalState.ISSUED and issued.number and issued.access_key

    assert bling.issue_invoice(bill, financial, contact_id).state == FiscalState.ISSUED  # no second note
    other = invoice(7, who)
    bling.issue_invoice(other, bling.push_invoice(other, contact_id), contact_id)
    notes = sandbox_state(server)["nfse"]
    assert [n["numeroRPS"] for n in notes] == ["1", "2"]  # numbering from Bling's NFS-e setup
    assert notes[0]["contato"]["numeroDocumento"] == who.tax_id and notes[0]["servicos"][1]["valor"] == 91.0


def test_nfse_refused_by_the_municipality_comes_back_rejected_with_the_reason(server, bling):
    who = customer(8, zip_code="")
    contact_id = bling.create_customer(who).remote_id
    bill = invoice(8, who)
    fiscal = bling.issue_invoice(bill, bling.push_invoice(bill, contact_id), contact_id)
    assert fiscal.state == FiscalState.REJECTED
    assert "E058" in fiscal.message and "zip_code" in fiscal.message
    assert sandbox_state(server)["nfse"] == []  # the refused draft is removed for a clean retry


def test_nfe_for_a_product_invoice_is_generated_sent_and_authorized(server, bling):
    who = customer(9)
    contact_id = bling.create_customer(who).remote_id
    bill = invoice(9, who, kind="product")
    financial = bling.push_invoice(bill, contact_id)
    fiscal = bling.issue_invoice(bill, financial, contact_id)
    assert fiscal.state == FiscalState.PENDING and fiscal.remote_id.startswith("nfe:")
    done = wait_for_state(bling, fiscal.remote_id, FiscalState.ISSUED)
    assert done.state == FiscalState.ISSUED and len(done.access_key) == 44
    assert len(sandbox_state(server)["nfe"]) == 1


def test_settle_receivable_records_the_payment_once(server, bling):
    who = customer(10)
    contact_id = bling.create_customer(who).remote_id
    financial = bling.push_invoice(invoice(10, who), contact_id)
    first, second = financial.receivable_remote_ids
    paid_on = date.today()
    bling.settle_receivable(first, Decimal("120.50"), paid_on)
    bling.settle_receivable(first, Decimal("120.50"), paid_on)  # a retry must not pay twice
    bling.settle_receivable(second, Decimal("20.50"), paid_on)
    state = sandbox_state(server)
    by_id = {str(r["id"]): r for r in state["receivables"]}
    assert (by_id[first]["situacao"], by_id[first]["saldo"]) == (2, 0)
    assert (by_id[second]["situacao"], by_id[second]["saldo"]) == (3, 100.0)
    assert len(state["borderos"]) == 2
    assert state["borderos"][0]["portador"]["id"] == 7001 and state["borderos"][0]["data"] == paid_on.isoformat()


# --------------------------------------------------------------------------- pulls
def pull_all(pull, cursor):
    items, calls = [], 0
    while True:
        page = pull(cursor)
        items.extend(page.items)
        cursor, calls = page.cursor, calls + 1
        assert calls < 50
        if not page.more:
            return items, cursor


def test_pull_customers_continues_from_the_cursor_without_redelivering(server, http_client):
    bling = authorized(server, http_client, page_size="2")
    ids = [bling.create_customer(customer(20 + k)).remote_id for k in range(5)]
    time.sleep(1.2)  # changes are pulled once they are at least a second old
    first_page = bling.pull_customers(None)
    assert len(first_page.items) == 2 and first_page.more  # a page of full records per call
    rest, cursor = pull_all(bling.pull_customers, first_page.cursor)
    delivered = [c.remote_id for c in first_page.items + rest]
    assert sorted(delivered) == sorted(ids)
    assert {c.record.tax_id for c in first_page.items + rest} == {cpf(100_020 + k) for k in range(5)}

    bling.update_customer(ids[0], customer(20, name="Tutor Renomeado"))
    newer = bling.create_customer(customer(30)).remote_id
    time.sleep(1.2)
    changed, cursor = pull_all(bling.pull_customers, cursor)
    assert sorted(c.remote_id for c in changed) == sorted([ids[0], newer])
    assert next(c for c in changed if c.remote_id == ids[0]).record.name == "Tutor Renomeado"
    time.sleep(1.1)
    assert pull_all(bling.pull_customers, cursor)[0] == []


def test_pull_receipts_delivers_each_receipt_once(server, http_client):
    bling = authorized(server, http_client, page_size="1")
    who = customer(40)
    contact_id = bling.create_customer(who).remote_id
    financial = bling.push_invoice(invoice(40, who), contact_id)
    first, second = financial.receivable_remote_ids
    today = date.today()
    assert pull_all(bling.pull_receipts, None)[0] == []
    bling.settle_receivable(first, Decimal("120.50"), today)
    bling.settle_receivable(second, Decimal("20.00"), today)
    page = bling.pull_receipts(None)
    assert len(page.items) == 1 and page.more  # one receivable per call with page_size 1
    rest, cursor = pull_all(bling.pull_receipts, page.cursor)
    got = sorted(page.items + rest, key=lambda r: r.amount, reverse=True)
    assert [(r.receivable_remote_id, r.amount, r.paid_at, r.payment_method) for r in got] == \
        [(first, Decimal("120.50"), today, "PIX"), (second, Decimal("20.00"), today, "Boleto bancário")]
    assert got[0].origin.startswith("venda_") and got[0].customer_remote_id == contact_id
    bling.settle_receivable(second, Decimal("100.50"), today)
    newer, cursor = pull_all(bling.pull_receipts, cursor)
    assert [(r.receivable_remote_id, r.amount) for r in newer] == [(second, Decimal("100.50"))]
    assert pull_all(bling.pull_receipts, cursor)[0] == []


# --------------------------------------------------------------------------- webhooks
def test_webhooks_are_verified_and_name_the_changed_records(server, bling):
    contact_id = bling.create_customer(customer(50)).remote_id
    bling.update_customer(contact_id, customer(50, name="Outro Nome"))
    deliveries = requests.get(server.url + "/__sandbox__/webhooks", timeout=5).json()
    assert len(deliveries) == 2
    for delivery in deliveries:
        body = delivery["body"].encode("utf-8")
        assert bling.verify_webhook(delivery["headers"], body)
        assert not bling.verify_webhook(delivery["headers"], body.replace(b"contact", b"contacT"))
        assert bling.webhook_changes(body) == [("customer", contact_id)]
    assert not bling.verify_webhook({"X-Bling-Signature-256": "sha256=" + "0" * 64}, deliveries[0]["body"].encode())
    assert not bling.verify_webhook({}, deliveries[0]["body"].encode())
    batch = json.dumps([json.loads(d["body"]) for d in deliveries] + [{"event": "order.created", "data": {"id": 9}}])
    assert bling.webhook_changes(batch.encode()) == [("customer", contact_id), ("order", "9")]


# --------------------------------------------------------------------------- faults and limits
def test_transient_errors_still_land_every_push_once(server, bling):
    set_faults(server, error_rate=0.3, seed=11)
    records = [customer(60 + k) for k in range(12)]
    for record in records:
        for attempt in range(10):  # what the sync layer does: retry the record later
            try:
                outcome = bling.upsert_customers([(record, None)])[0]
                assert isinstance(outcome, PushResult)
                break
            except Exception as exc:  # TransientError after the client's own retries
                assert getattr(exc, "retryable", False), exc
        else:
            pytest.fail(f"{record.id} never landed")
    set_faults(server, error_rate=0.0)
    for record in records:
        assert len(contacts_with(server, record.tax_id)) == 1
    stats = sandbox_stats(server)
    assert stats["by_route"].get("POST /contatos", 0) > 12  # some creates failed first and were retried
    assert stats["ip_blocks"] == 0


def test_sandbox_enforces_blings_limits_by_default(serve_sandbox):
    server = serve_sandbox(Sandbox())
    answers = [requests.get(server.url + "/empresas/me/dados-basicos", timeout=5) for _ in range(8)]
    throttled = [a for a in answers if a.status_code == 429]
    assert throttled and throttled[0].json()["error"]["type"] == "TOO_MANY_REQUESTS"
    assert sandbox_stats(server)["over_limit"] == len(throttled)


def test_four_workers_share_the_accounts_rate_limit(server, redis_client, bling):
    creds = dict(bling.ctx.credentials)
    errors: list[Exception] = []

    def worker(start: int):
        client = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
        connector = make_connector(server, client, credentials=dict(creds))
        try:
            for k in range(start, 200, 4):
                outcome = connector.upsert_customers([(customer(1000 + k), None)])[0]
                assert isinstance(outcome, PushResult), outcome
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    stats = sandbox_stats(server)
    assert stats["over_limit"] == 0 and stats["ip_blocks"] == 0
    tax_ids = [c["numeroDocumento"] for c in sandbox_state(server)["contacts"]]
    assert len(tax_ids) == 200 and set(tax_ids) == {cpf(101_000 + k) for k in range(200)}

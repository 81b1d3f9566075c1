"""iClub connector (proposed contract) against its sandbox on loopback, with the real Redis and HTTP client."""
from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
import requests

from integrations.base import (AuthError, Capability, ConnectorContext, CustomerRecord, FiscalState, InvoiceItem,
                               InvoiceRecord, Installment, NotFoundError, PermanentError, PushResult, TransientError,
                               capability_panel)
from integrations.http import HttpClient
from integrations.iclub import IClubConnector
from integrations.iclub.sandbox import DEMO_CREDENTIALS, Sandbox
from integrations.sandbox_kit import SandboxServer

SCALE = 5           # proposed limits (10/s, 300/min) x 5 keep the load tests short


def cpf(n: int) -> str:
    """A valid CPF built from a sequence number (check digits computed as the Receita does)."""
    base = [int(d) for d in f"{200000000 + n:09d}"[-9:]]
    for length in (9, 10):
        remainder = sum(d * w for d, w in zip(base, range(length + 1, 1, -1))) % 11
        base.append(0 if remainder < 2 else 11 - remainder)
    return "".join(map(str, base))


def customer(n: int, **changes) -> CustomerRecord:
    data = dict(id=f"tp-{n}", person_type="PF", name=f"Tutora {n}", tax_id=cpf(n), email=f"tutora{n}@example.com",
                phone="(41) 99876-5432", zip_code="80010-000", street="Rua XV de Novembro", number=str(n),
                district="Centro", city="Curitiba", city_ibge_code="4106902", state="PR")
    data.update(changes)
    return CustomerRecord(**data)


def invoice(n: int, client: CustomerRecord, kind: str = "service") -> InvoiceRecord:
    today = date.today()
    return InvoiceRecord(
        id=f"inv-{n}", number=str(n), customer=client, issue_date=today, kind=kind,
        items=[InvoiceItem("Consulta veterinária", Decimal("1"), Decimal("150.00"), service_code="05.08"),
               InvoiceItem("Vacina V10", Decimal("2"), Decimal("45.00"))],
        installments=[Installment(1, today + timedelta(days=30), Decimal("120.00"), "Boleto"),
                      Installment(2, today + timedelta(days=60), Decimal("120.00"), "PIX")])


def make_sandbox(**kwargs) -> Sandbox:
    kwargs.setdefault("rate_limit", [(10 * SCALE, 1.0), (300 * SCALE, 60.0)])
    return Sandbox(**kwargs)


def connect(server, http, credentials=None, **settings) -> IClubConnector:
    values = {"base_url": server.url, "rate_limit_scale": str(SCALE)}
    values.update(settings)
    creds = dict(DEMO_CREDENTIALS if credentials is None else credentials)
    return IClubConnector(ConnectorContext(credentials=creds, settings=values, http=http, account_key="test-acct"))


def state(server) -> dict:
    return requests.get(f"{server.url}/__sandbox__/state", timeout=5).json()


def stats(server) -> dict:
    return requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()


def pull_all(pull, cursor=None):
    """Pull pages until the ERP says there is no more; returns (items, last cursor)."""
    items = []
    while True:
        page = pull(cursor)
        items += page.items
        cursor = page.cursor
        if not page.more:
            return items, cursor


# --------------------------------------------------------------------------- declarations
def test_declared_as_a_pending_contract_with_every_capability():
    assert IClubConnector.contract_pending is True
    assert "Contract pending vendor confirmation: enable only after iClub confirms the API." in IClubConnector.notes
    assert IClubConnector.capabilities == frozenset(Capability)
    assert all(row["supported"] for row in capability_panel(IClubConnector))


# --------------------------------------------------------------------------- connection and auth
@pytest.mark.parametrize("style", ["bearer", "api_key", "client_credentials"])
def test_connection_with_demo_credentials(serve_sandbox, http_client, style):
    server = serve_sandbox(make_sandbox())
    assert connect(server, http_client, auth_style=style).test_connection().startswith("Connected to iClub")


@pytest.mark.parametrize("style, wrong", [("bearer", {"api_token": "nope"}), ("api_key", {"api_token": "nope"}),
                                          ("client_credentials", {"client_secret": "nope"})])
def test_connection_with_wrong_credentials_is_an_auth_error(serve_sandbox, http_client, style, wrong):
    server = serve_sandbox(make_sandbox())
    with pytest.raises(AuthError):
        connect(server, http_client, credentials=dict(DEMO_CREDENTIALS, **wrong), auth_style=style).test_connection()


def test_expired_client_credentials_token_is_renewed_once_and_saved(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    saved = []
    connector = connect(server, http_client, auth_style="client_credentials")
    connector.ctx.save_credentials = saved.append
    connector.create_customer(customer(1))
    first = connector.ctx.credentials["access_token"]
    requests.post(f"{server.url}/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    connector.update_customer(state(server)["clientes"][0]["id"], customer(1, name="Tutora Renomeada"))
    assert connector.ctx.credentials["access_token"] != first
    assert [s["access_token"] for s in saved] == [first, connector.ctx.credentials["access_token"]]
    assert stats(server)["by_route"]["POST /oauth/token"] == 2
    assert state(server)["clientes"][0]["nome"] == "Tutora Renomeada"


def test_expired_static_token_cannot_be_renewed(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    connector.test_connection()
    requests.post(f"{server.url}/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    with pytest.raises(AuthError) as caught:
        connector.create_customer(customer(2))
    assert "Token expirado" in caught.value.plain()


# --------------------------------------------------------------------------- customers
def test_create_customer(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    result = connect(server, http_client).create_customer(customer(3, person_type="PJ", tax_id="12ABC34501DE35",
                                                                   name="Clínica Pet Ltda"))
    assert result.created
    [stored] = state(server)["clientes"]
    assert str(stored["id"]) == result.remote_id
    assert (stored["tipo_pessoa"], stored["cpf_cnpj"], stored["razao_social"]) == ("J", "12ABC34501DE35", "Clínica Pet Ltda")
    assert stored["endereco"] == {"cep": "80010000", "logradouro": "Rua XV de Novembro", "numero": "3",
                                  "complemento": "", "bairro": "Centro", "cidade": "Curitiba",
                                  "codigo_ibge": "4106902", "uf": "PR"}
    assert stored["telefone"] == "41998765432" and stored["codigo_externo"] == "tp-3"


def test_update_of_a_changed_record(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    created = connector.create_customer(customer(4))
    updated = connector.update_customer(created.remote_id, customer(4, street="Avenida Batel", number="S/N"))
    assert not updated.created and updated.remote_id == created.remote_id
    read = connector.get_customer(created.remote_id).record
    assert (read.street, read.number, read.tax_id) == ("Avenida Batel", "S/N", cpf(4))


def test_repush_finds_the_existing_record_and_keeps_one(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    [first] = connector.upsert_customers([(customer(5), None)])
    [second] = connector.upsert_customers([(customer(5, email="nova@example.com"), None)])
    # a blind second create (lost response, no remote id kept) adopts the record through the 409
    third = connector.create_customer(customer(5, id="tp-5-other", email="nova@example.com", phone="4133334444"))
    assert first.created and not second.created and not third.created
    assert first.remote_id == second.remote_id == third.remote_id
    rows = [c for c in state(server)["clientes"] if c["cpf_cnpj"] == cpf(5)]
    assert len(rows) == 1 and rows[0]["email"] == "nova@example.com" and rows[0]["telefone"] == "4133334444"


def test_invalid_cpf_is_a_permanent_error_in_plain_words(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    with pytest.raises(PermanentError) as caught:
        connect(server, http_client).create_customer(customer(6, tax_id="52998224724", city_ibge_code=""))
    text = caught.value.plain()
    assert "Cliente inválido" in text and "tax_id: CPF inválido" in text and "city_ibge_code" in text
    assert state(server)["clientes"] == []


def test_unknown_customer_is_not_found(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    with pytest.raises(NotFoundError):
        connect(server, http_client).get_customer("999999")


# --------------------------------------------------------------------------- financial and fiscal
def test_invoice_becomes_sale_with_installments_and_receivables(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    client = connector.create_customer(customer(7))
    bill = invoice(7, customer(7))
    assert connector.find_invoice(bill) is None
    result = connector.push_invoice(bill, client.remote_id)
    again = connector.push_invoice(bill, client.remote_id)  # a retry after a lost answer
    assert again == result and connector.find_invoice(bill) == result
    assert len(result.receivable_remote_ids) == 2
    data = state(server)
    [venda] = data["vendas"]
    assert venda["codigo_externo"] == "inv-7" and venda["tipo"] == "servico"
    assert [i["valor_unitario"] for i in venda["itens"]] == ["150.00", "45.00"]
    contas = sorted(data["contas"], key=lambda c: c["numero"])
    assert [str(c["id"]) for c in contas] == result.receivable_remote_ids
    assert [(c["valor"], c["forma_pagamento"]) for c in contas] == [("120.00", "Boleto"), ("120.00", "PIX")]


def test_installments_that_do_not_add_up_are_refused_in_plain_words(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    client = connector.create_customer(customer(8))
    bill = invoice(8, customer(8))
    bill.installments[1].amount = Decimal("100.00")
    with pytest.raises(PermanentError) as caught:
        connector.push_invoice(bill, client.remote_id)
    assert "difere do total" in caught.value.plain()


def test_invoice_issuing_and_status(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    client = connector.create_customer(customer(9))
    bill = invoice(9, customer(9))
    financial = connector.push_invoice(bill, client.remote_id)
    pending = connector.issue_invoice(bill, financial, client.remote_id)
    assert pending.state == FiscalState.PENDING and pending.remote_id
    assert connector.issue_invoice(bill, financial, client.remote_id).remote_id == pending.remote_id
    issued = connector.invoice_status(pending.remote_id)
    assert issued.state == FiscalState.ISSUED and issued.number == "1" and len(issued.access_key) == 44
    assert state(server)["notas"][0]["modelo"] == "nfse"


def test_rejected_invoice_brings_the_reason_back(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    client = connector.create_customer(customer(10, district=""))
    bill = invoice(10, customer(10, district=""), kind="product")
    financial = connector.push_invoice(bill, client.remote_id)
    fiscal = connector.invoice_status(connector.issue_invoice(bill, financial, client.remote_id).remote_id)
    assert fiscal.state == FiscalState.REJECTED and "bairro" in fiscal.message


def test_settle_receivable_once_and_receipt_comes_back(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    client = connector.create_customer(customer(11))
    financial = connector.push_invoice(invoice(11, customer(11)), client.remote_id)
    receivable = financial.receivable_remote_ids[0]
    paid_on = date.today()
    connector.settle_receivable(receivable, Decimal("120.00"), paid_on)
    connector.settle_receivable(receivable, Decimal("120.00"), paid_on)  # retried: replayed, not paid twice
    data = state(server)
    assert [c["status"] for c in data["contas"] if str(c["id"]) == receivable] == ["pago"]
    assert len(data["recebimentos"]) == 1
    receipts, _ = pull_all(connector.pull_receipts)
    [receipt] = receipts
    assert (receipt.receivable_remote_id, receipt.amount, receipt.paid_at) == (receivable, Decimal("120.00"), paid_on)
    assert receipt.payment_method == "Boleto" and receipt.origin == f"venda {financial.order_remote_id}"
    with pytest.raises(PermanentError) as caught:  # settled already, by another payment
        connector.settle_receivable(receivable, Decimal("120.00"), paid_on + timedelta(days=1))
    assert "já baixada" in caught.value.plain()


# --------------------------------------------------------------------------- pulls
def test_customer_pull_continues_from_the_cursor_and_delivers_nothing_twice(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client, page_size="2")
    created = [connector.create_customer(customer(n)).remote_id for n in range(20, 25)]
    pulled, cursor = pull_all(connector.pull_customers)
    assert [c.remote_id for c in pulled] == created
    assert pull_all(connector.pull_customers, cursor)[0] == []
    connector.update_customer(created[2], customer(22, name="Tutora Alterada"))
    changed, cursor = pull_all(connector.pull_customers, cursor)
    assert [(c.remote_id, c.record.name) for c in changed] == [(created[2], "Tutora Alterada")]
    assert pull_all(connector.pull_customers, cursor)[0] == []


def test_pos_sales_pull_continues_from_the_cursor(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    connector = connect(server, http_client, page_size="2")
    first = [app.add_pos_sale(items=[("R1", "Ração 1kg", "1", "39.90")], payments=[("PIX", "39.90")])["id"]
             for _ in range(3)]
    pulled, cursor = pull_all(connector.pull_pos_sales)
    assert [s.remote_id for s in pulled] == [str(i) for i in first]
    assert pulled[0].total == Decimal("39.90") and pulled[0].payment_method == "PIX"
    assert pull_all(connector.pull_pos_sales, cursor)[0] == []
    late = app.add_pos_sale(items=[("B2", "Brinquedo", "2", "30.00")], payments=[("Dinheiro", "10.00"), ("PIX", "20.00")],
                            document="52998224725", cancelled=True)
    [sale], _ = pull_all(connector.pull_pos_sales, cursor)
    assert sale.remote_id == str(late["id"]) and sale.status == "cancelled"
    assert sale.payment_method == "Dinheiro + PIX" and sale.customer_remote_id == "52998224725"


# --------------------------------------------------------------------------- webhooks
class Receiver:
    """A tiny WSGI endpoint standing in for TecPet's webhook URL."""

    def __init__(self):
        self.calls: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        self.calls.append((headers, body))
        start_response("204 No Content", [])
        return [b""]


def test_signed_webhooks_are_verified(serve_sandbox, http_client):
    receiver = Receiver()
    with SandboxServer(receiver) as hook:
        server = serve_sandbox(make_sandbox(webhook_url=hook.url + "/webhooks/iclub"))
        connector = connect(server, http_client)
        connector.create_customer(customer(30))
        deadline = time.monotonic() + 5
        while not receiver.calls and time.monotonic() < deadline:
            time.sleep(0.02)
    [(headers, body)] = receiver.calls
    assert b'"cliente.alterado"' in body
    assert connector.verify_webhook(headers, body)
    assert not connector.verify_webhook(headers, body.replace(b"Tutora", b"Tutorx"))
    assert not connector.verify_webhook({}, body)
    other = connect(server, http_client, credentials=dict(DEMO_CREDENTIALS, webhook_secret="another"))
    assert not other.verify_webhook(headers, body)


# --------------------------------------------------------------------------- faults and limits
def test_transient_faults_still_land_every_customer_once(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox(error_rate=0.3, seed=5))
    connector = connect(server, http_client)
    for n in range(100, 130):
        for _attempt in range(8):  # what the outbox does with a TransientError: try again later
            try:
                [outcome] = connector.upsert_customers([(customer(n), None)])
                assert isinstance(outcome, PushResult)
                break
            except TransientError:
                continue
        else:
            pytest.fail(f"customer {n} never landed")
    documents = [c["cpf_cnpj"] for c in state(server)["clientes"]]
    assert sorted(documents) == sorted(cpf(n) for n in range(100, 130))
    assert stats(server)["requests"] > 90 * 1.2  # the faults really happened and were retried


def test_four_workers_share_one_budget(serve_sandbox, redis_client):
    server = serve_sandbox(make_sandbox())
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        http = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
        try:
            connector = connect(server, http)
            for n in range(1000 + offset * 50, 1050 + offset * 50):
                [outcome] = connector.upsert_customers([(customer(n), None)])
                assert isinstance(outcome, PushResult)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            http.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=50)
    assert not errors, errors
    assert stats(server)["over_limit"] == 0, stats(server)
    documents = [c["cpf_cnpj"] for c in state(server)["clientes"]]
    assert len(documents) == len(set(documents)) == 200

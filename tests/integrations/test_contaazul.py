"""Conta Azul connector against its sandbox on loopback, with the real Redis and HTTP client."""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from integrations.base import (AuthError, Capability, ConnectorContext, CustomerRecord, FiscalState, InvoiceItem,
                               InvoiceRecord, Installment, NotFoundError, PermanentError, TransientError)
from integrations.contaazul import ContaAzulConnector
from integrations.contaazul.client import IssuedInvoice, now_sao_paulo
from integrations.contaazul.sandbox import DEMO_CREDENTIALS, Sandbox
from integrations.http import HttpClient

TODAY = now_sao_paulo().date()
FAST = 20   # functional tests scale the documented limits (sandbox and connector alike) to stay short


# --------------------------------------------------------------------------- helpers
def cpf_for(n: int) -> str:
    """A valid CPF built from a number (check digits computed as Receita Federal does)."""
    digits = [int(c) for c in f"{n:09d}"]
    for weight in (10, 11):
        total = sum(d * (weight - i) for i, d in enumerate(digits))
        digits.append(0 if total % 11 < 2 else 11 - total % 11)
    return "".join(map(str, digits))


def cnpj_for(n: int) -> str:
    digits = [int(c) for c in f"11222333{n:04d}"]
    for weights in ([5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]):
        total = sum(d * w for d, w in zip(digits, weights))
        digits.append(0 if total % 11 < 2 else 11 - total % 11)
    return "".join(map(str, digits))


def person(n: int, **changes) -> CustomerRecord:
    record = CustomerRecord(id=str(n), person_type="PF", name=f"Tutor {n}", tax_id=cpf_for(100000 + n),
                            email=f"tutor{n}@example.com", phone="11987654321", zip_code="01310100",
                            street="Avenida Paulista", number=str(1000 + n), district="Bela Vista",
                            city="São Paulo", city_ibge_code="3550308", state="SP")
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def invoice_for(customer: CustomerRecord, number: str = "F-1", installments: int = 2,
                items: list[InvoiceItem] | None = None) -> InvoiceRecord:
    items = items or [InvoiceItem("Consulta veterinária", Decimal("1"), Decimal("150.00")),
                      InvoiceItem("Vacina V10", Decimal("2"), Decimal("45.00"))]
    total = sum((i.total for i in items), Decimal("0"))
    share = (total / installments).quantize(Decimal("0.01"))
    parts = [Installment(n + 1, TODAY + timedelta(days=30 * (n + 1)), share, "PIX") for n in range(installments)]
    parts[-1].amount = total - share * (installments - 1)
    return InvoiceRecord(id=f"inv-{number}", number=number, customer=customer, issue_date=TODAY, items=items,
                         installments=parts)


class Saved(list):
    """Collects what the connector asks the product to store (rotated tokens)."""

    def __call__(self, creds):
        self.append(dict(creds))


def build(server, http, *, creds=None, saved=None, **settings) -> ContaAzulConnector:
    config = {"base_url": server.url, "sale_event_wait_seconds": "0.5", "protocol_timeout_seconds": "10",
              "rate_limit_scale": str(FAST)}
    config.update({k: str(v) for k, v in settings.items()})
    return ContaAzulConnector(ConnectorContext(credentials=dict(creds or DEMO_CREDENTIALS), settings=config,
                                               http=http, account_key="test-acct",
                                               save_credentials=saved if saved is not None else Saved()))


def state(server) -> dict:
    return requests.get(f"{server.url}/__sandbox__/state", timeout=5).json()


def stats(server) -> dict:
    return requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()


def ui(server, what: str, body: dict) -> dict:
    resp = requests.post(f"{server.url}/__sandbox__/ui/{what}", json=body, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


def api(server, method: str, path: str, body=None, **params) -> requests.Response:
    """A raw call with the demo token, as Conta Azul would receive it from any client."""
    return requests.request(method, server.url + path, json=body, params=params, timeout=5,
                            headers={"Authorization": f"Bearer {DEMO_CREDENTIALS['access_token']}"})


def pull_all(pull, cursor=None):
    items, calls = [], 0
    while True:
        page = pull(cursor)
        calls += 1
        items += page.items
        cursor = page.cursor
        if not page.more:
            return items, cursor, calls


@pytest.fixture
def sandbox(serve_sandbox):
    def make(**options):
        options.setdefault("rate_limit", [(10 * FAST, 1.0), (600 * FAST, 60.0)])
        app = Sandbox(**options)
        return app, serve_sandbox(app)
    return make


# --------------------------------------------------------------------------- declarations
def test_declares_what_the_api_allows_and_nothing_else():
    caps = ContaAzulConnector.capabilities
    assert Capability.ISSUE_INVOICE not in caps and Capability.WEBHOOKS not in caps
    assert {Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
            Capability.TRACK_INVOICE, Capability.SETTLE_RECEIVABLE, Capability.PULL_RECEIPTS,
            Capability.PULL_POS_SALES} <= caps
    assert "Invoices are issued inside Conta Azul; TecPet brings the issued invoice back." in ContaAzulConnector.notes
    assert ContaAzulConnector.auth_kind == "oauth2"
    assert ContaAzulConnector.rate_limit.windows == ((10, 1.0), (600, 60.0))
    assert Sandbox().faults.rate_limit == [(10, 1.0), (600, 60.0)]


# --------------------------------------------------------------------------- auth
def test_connection_with_demo_credentials_and_refusal_of_wrong_ones(sandbox, http_client):
    _, server = sandbox()
    assert "Clínica Veterinária Demo Ltda" in build(server, http_client).test_connection()
    wrong = dict(DEMO_CREDENTIALS, access_token="nope", refresh_token="nope-either")
    with pytest.raises(AuthError):
        build(server, http_client, creds=wrong).test_connection()


def test_authorization_code_flow_through_the_approve_page(sandbox, http_client):
    _, server = sandbox()
    creds = {"client_id": DEMO_CREDENTIALS["client_id"], "client_secret": DEMO_CREDENTIALS["client_secret"]}
    saved = Saved()
    connector = build(server, http_client, creds=creds, saved=saved)
    redirect = "https://tecpet.example/oauth/callback"
    url = connector.authorize_url(redirect, "st-42")
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and "Approve" in page.text
    query = parse_qs(urlparse(url).query)
    assert query["scope"] == ["openid profile aws.cognito.signin.user.admin"]
    approved = requests.post(url.split("?")[0], data={k: v[0] for k, v in query.items()}, allow_redirects=False,
                             timeout=5)
    assert approved.status_code == 302
    back = parse_qs(urlparse(approved.headers["Location"]).query)
    assert back["state"] == ["st-42"]
    tokens = connector.exchange_code(back["code"][0], redirect)
    assert tokens["access_token"] and tokens["refresh_token"] and saved[-1] == tokens
    assert "Demo" in connector.test_connection()
    with pytest.raises(AuthError):                        # a code is good for one exchange only
        build(server, http_client, creds=creds).exchange_code(back["code"][0], redirect)


def test_expired_token_is_renewed_and_the_old_refresh_token_dies(sandbox, http_client):
    _, server = sandbox()
    saved = Saved()
    connector = build(server, http_client, saved=saved)
    stale_copy = dict(connector.ctx.credentials)
    requests.post(f"{server.url}/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    assert "Demo" in connector.test_connection()          # 401 -> refresh -> same call again
    assert saved and saved[-1]["refresh_token"] != DEMO_CREDENTIALS["refresh_token"]
    refused = requests.post(f"{server.url}/oauth2/token", timeout=5,
                            auth=(DEMO_CREDENTIALS["client_id"], DEMO_CREDENTIALS["client_secret"]),
                            data={"grant_type": "refresh_token", "refresh_token": DEMO_CREDENTIALS["refresh_token"]})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # a worker still holding the old credentials does not burn the rotated token: it is told to retry
    with pytest.raises(TransientError):
        build(server, http_client, creds=stale_copy).test_connection()
    assert "Demo" in build(server, http_client, creds=saved[-1]).test_connection()


def test_token_near_its_hour_is_renewed_before_the_call(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client, creds=dict(DEMO_CREDENTIALS, expires_at="1"))
    connector.test_connection()
    routes = stats(server)["by_route"]
    assert routes.get("POST /oauth2/token") == 1 and routes.get("GET /v1/pessoas/conta-conectada") == 1


def test_company_without_api_plan_is_an_auth_problem(sandbox, http_client):
    _, server = sandbox()
    ui(server, "plano", {"ativo": False})
    with pytest.raises(AuthError, match="END_TRIAL"):
        build(server, http_client).test_connection()


# --------------------------------------------------------------------------- customers
def test_customer_create_stores_write_names_and_reads_back(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client)
    pf = person(1)
    pj = CustomerRecord(id="2", person_type="PJ", name="Pet Shop Ltda", tax_id=cnpj_for(2), state_registration="110042490114",
                        email="loja@example.com", phone="1133334444", zip_code="01310100", street="Rua Augusta",
                        number="50", district="Consolação", city="São Paulo", state="SP")
    result = connector.create_customer(pf)
    company = connector.create_customer(pj)
    assert result.created and company.created
    people = {p["id"]: p for p in state(server)["people"]}
    stored = people[result.remote_id]
    assert stored["tipo_pessoa"] == "Física" and stored["documento"] == pf.tax_id
    assert stored["perfis"] == [{"tipo_perfil": "Cliente"}] and stored["codigo"] == "1"
    assert stored["enderecos"][0]["cep"] == "01310100" and stored["telefone_celular"] == "11987654321"
    assert people[company.remote_id]["tipo_pessoa"] == "Jurídica"
    assert people[company.remote_id]["inscricoes"][0]["inscricao_estadual"] == "110042490114"
    assert result.remote_copy["tax_id"] == pf.tax_id and result.remote_copy["city"] == "São Paulo"
    assert connector.find_customer(pj).remote_id == company.remote_id


def test_update_of_a_changed_record(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client)
    created = connector.create_customer(person(3))
    changed = person(3, email="novo@example.com", street="Rua Haddock Lobo", number="595")
    result = connector.update_customer(created.remote_id, changed)
    assert not result.created and result.remote_copy["email"] == "novo@example.com"
    stored = next(p for p in state(server)["people"] if p["id"] == created.remote_id)
    assert stored["email"] == "novo@example.com" and stored["enderecos"][0]["logradouro"] == "Rua Haddock Lobo"
    assert stats(server)["by_route"]["PATCH /v1/pessoas/<id>"] == 1


def test_second_push_of_the_same_customer_finds_it(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client)
    first = connector.upsert_customers([(person(4), None)])[0]
    again = connector.upsert_customers([(person(4, name="Tutor Quatro"), None)])[0]
    assert first.created and not again.created and again.remote_id == first.remote_id
    same_cpf = [p for p in state(server)["people"] if p["documento"] == cpf_for(100004)]
    assert len(same_cpf) == 1 and same_cpf[0]["nome"] == "Tutor Quatro"


def test_erp_validation_errors_become_plain_permanent_errors(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client)
    with pytest.raises(PermanentError) as bad_cpf:
        connector.create_customer(person(5, tax_id="52998224724"))
    assert "tax_id" in bad_cpf.value.plain() and "não é um CPF válido" in bad_cpf.value.plain()
    with pytest.raises(PermanentError) as no_name:
        connector.create_customer(person(6, name="  "))
    assert "name" in no_name.value.plain() and "nome" in no_name.value.plain()
    with pytest.raises(PermanentError) as bad_mail:
        connector.create_customer(person(7, email="not-an-email"))
    assert "email" in bad_mail.value.plain()
    assert state(server)["people"] == []


# --------------------------------------------------------------------------- the official spec
def test_requests_the_spec_rejects_fail(sandbox, http_client):
    app, server = sandbox()
    customer = build(server, http_client).create_customer(person(8)).remote_id
    sale = {"id_cliente": customer, "numero": 1, "situacao": "APPROVED", "data_venda": TODAY.isoformat(),
            "itens": [{"id": "0b6f8a1e-1111-4c3b-9a55-000000000001", "quantidade": 1, "valor": 10}],
            "condicao_pagamento": {"opcao_condicao_pagamento": "À vista",
                                   "parcelas": [{"data_vencimento": TODAY.isoformat(), "valor": 10}]}}
    refused = api(server, "POST", "/v1/venda", sale)
    assert refused.status_code == 400 and "situacao" in refused.json()["error"]
    incomplete = api(server, "POST", "/v1/financeiro/eventos-financeiros/contas-a-receber",
                     {"valor": 10, "descricao": "x"})
    assert incomplete.status_code == 400 and "competenceDate" in incomplete.json()["error"]
    baixa = api(server, "POST", f"/v1/financeiro/eventos-financeiros/parcelas/{customer}/baixa", {"observacao": "x"})
    assert baixa.status_code == 400 and "<html>" in baixa.json()["error"]
    assert api(server, "GET", "/v1/venda/busca", tamanho_pagina=15).status_code == 400
    assert api(server, "GET", "/v1/pessoas", data_alteracao_de="2026-01-01T00:00:00Z",
               data_alteracao_ate="2026-01-02T00:00:00").status_code == 400
    assert app.sales == {} and app.protocols == {}
    # through the connector: a malformed setting reaches the spec check and comes back in plain words
    with pytest.raises(PermanentError, match="id_conta_financeira"):
        build(server, http_client, financial_account_id="conta-1").push_invoice(invoice_for(person(8)), customer)


# --------------------------------------------------------------------------- invoice -> sale + receivables
def test_invoice_becomes_an_approved_sale_with_its_receivables(sandbox, http_client):
    app, server = sandbox()
    connector = build(server, http_client)
    customer = connector.create_customer(person(9)).remote_id
    invoice = invoice_for(person(9), "F-9", installments=2)
    result = connector.push_invoice(invoice, customer)
    data = state(server)
    sale = next(s for s in data["sales"] if s["id"] == result.order_remote_id)
    assert sale["situacao"] == "APROVADO" and "[tecpet:inv-F-9]" in sale["observacoes"]
    assert sale["condicao_pagamento"]["opcao_condicao_pagamento"] == "30,60"
    assert sale["condicao_pagamento"]["tipo_pagamento"] == "PIX_PAGAMENTO_INSTANTANEO"
    assert result.order_number == str(sale["numero"]) and len(result.receivable_remote_ids) == 2
    parcels = {p["id"]: p for p in data["installments"]}
    assert [parcels[r]["total"] for r in result.receivable_remote_ids] == [120.0, 120.0]
    assert {s["descricao"] for s in data["services"]} == {"Consulta veterinária", "Vacina V10"}
    assert data["protocols"] == []                       # the sale brought its own receivable
    second = connector.push_invoice(invoice_for(person(9), "F-10", installments=1), customer)
    assert len(state(server)["services"]) == 2 and second.order_number == str(int(result.order_number) + 1)
    assert connector.find_invoice(invoice) == result


def test_sale_without_its_own_receivable_gets_one_through_the_protocol(sandbox, http_client):
    app, server = sandbox(sales_create_financial_event=False, protocol_delay=0.4)
    connector = build(server, http_client)
    customer = connector.create_customer(person(10)).remote_id
    invoice = invoice_for(person(10), "F-11", installments=3)
    result = connector.push_invoice(invoice, customer)
    data = state(server)
    assert len(data["protocols"]) == 1 and data["protocols"][0]["status"] == "SUCCESS"
    assert stats(server)["by_route"]["GET /v1/protocolo/<id>"] >= 2      # polled until processed
    event = data["events"][0]
    assert "[tecpet:inv-F-11]" in event["descricao"] and event["contato"] == customer
    assert result.receivable_remote_ids == event["parcelas"]
    found = connector.find_invoice(invoice)                               # crash recovery finds, not re-creates
    assert found == result and len(state(server)["events"]) == 1


def test_receivable_refused_while_processing_is_a_permanent_error(sandbox, http_client):
    _, server = sandbox(sales_create_financial_event=False, protocol_delay=0.1)
    connector = build(server, http_client, financial_account_id="6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f")
    customer = connector.create_customer(person(11)).remote_id
    with pytest.raises(PermanentError) as refused:
        connector.push_invoice(invoice_for(person(11), "F-12"), customer)
    assert "Conta financeira não encontrada" in refused.value.plain()
    assert "financial_account" in refused.value.plain()


# --------------------------------------------------------------------------- payment
def test_settle_receivable_registers_one_baixa(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client)
    customer = connector.create_customer(person(12)).remote_id
    result = connector.push_invoice(invoice_for(person(12), "F-13", installments=2), customer)
    first, second = result.receivable_remote_ids
    connector.settle_receivable(first, Decimal("120.00"), TODAY)
    connector.settle_receivable(first, Decimal("120.00"), TODAY)          # a retry must not pay twice
    connector.settle_receivable(second, Decimal("50.00"), TODAY)
    data = state(server)
    assert len(data["settlements"]) == 2
    parcels = {p["id"]: p for p in data["installments"]}
    assert parcels[first]["pago"] == 120.0 and parcels[second]["pago"] == 50.0
    assert data["settlements"][0]["metodo_pagamento"] == "PIX_PAGAMENTO_INSTANTANEO"
    with pytest.raises(PermanentError, match="more than"):
        connector.settle_receivable(second, Decimal("500.00"), TODAY)
    with pytest.raises(NotFoundError):
        connector.settle_receivable("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", Decimal("1"), TODAY)


# --------------------------------------------------------------------------- invoices issued in Conta Azul
def test_invoice_status_follows_the_invoice_conta_azul_issues(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client)
    customer = connector.create_customer(person(13)).remote_id
    service_sale = connector.push_invoice(invoice_for(person(13), "F-14"), customer)
    product_sale = connector.push_invoice(invoice_for(person(13), "F-15", items=[
        InvoiceItem("Ração 10kg", Decimal("1"), Decimal("200.00"), kind="product")]), customer)
    failed_sale = connector.push_invoice(invoice_for(person(13), "F-16"), customer)
    pending = connector.invoice_status(service_sale.order_remote_id)
    assert pending.state is FiscalState.PENDING and pending.remote_id == service_sale.order_remote_id
    nfse = ui(server, "nota", {"id_venda": service_sale.order_remote_id, "tipo": "NFSE"})
    nfe = ui(server, "nota", {"id_venda": product_sale.order_remote_id, "tipo": "NFE"})
    ui(server, "nota", {"id_venda": failed_sale.order_remote_id, "tipo": "NFSE", "status": "FALHA"})
    issued = connector.invoice_status(service_sale.order_remote_id)
    assert issued.state is FiscalState.ISSUED and issued.number == str(nfse["numero_nfse"])
    assert issued.remote_id == nfse["id"]
    product = connector.invoice_status(product_sale.order_remote_id)
    assert product.state is FiscalState.ISSUED and product.access_key == nfe["chave_acesso"]
    assert product.number == str(nfe["numero_nota"])
    rejected = connector.invoice_status(failed_sale.order_remote_id)
    assert rejected.state is FiscalState.REJECTED and "FALHA" in rejected.message
    with pytest.raises(NotFoundError):
        connector.invoice_status("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f")


def test_pull_invoices_brings_each_issued_invoice_once(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client)
    customer = connector.create_customer(person(14)).remote_id
    one = connector.push_invoice(invoice_for(person(14), "F-17"), customer)
    two = connector.push_invoice(invoice_for(person(14), "F-18"), customer)
    ui(server, "nota", {"id_venda": one.order_remote_id, "tipo": "NFSE"})
    items, cursor, _ = pull_all(connector.pull_invoices)
    assert [(i.order_remote_id, i.fiscal.state) for i in items] == [(one.order_remote_id, FiscalState.ISSUED)]
    assert isinstance(items[0], IssuedInvoice) and items[0].order_number == one.order_number
    assert pull_all(connector.pull_invoices, cursor)[0] == []
    ui(server, "nota", {"id_venda": two.order_remote_id, "tipo": "NFE"})
    later, _, _ = pull_all(connector.pull_invoices, cursor)
    assert [(i.order_remote_id, i.kind) for i in later] == [(two.order_remote_id, "nfe")]


# --------------------------------------------------------------------------- pulls
def test_pull_customers_pages_and_never_redelivers(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client, page_size=10)
    ids = [connector.create_customer(person(100 + n)).remote_id for n in range(23)]
    items, cursor, calls = pull_all(connector.pull_customers)
    assert calls == 3 and sorted(i.remote_id for i in items) == sorted(ids)
    assert pull_all(connector.pull_customers, cursor)[0] == []
    ui(server, "pessoa", {"id": ids[5], "email": "mudou@example.com"})
    changed, cursor, _ = pull_all(connector.pull_customers, cursor)
    assert [(c.remote_id, c.record.email) for c in changed] == [(ids[5], "mudou@example.com")]
    assert changed[0].record.tax_id == cpf_for(100105) and changed[0].record.id == "105"
    assert pull_all(connector.pull_customers, cursor)[0] == []


def test_pull_pos_sales_brings_counter_sales_only(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client, page_size=10)
    customer = connector.create_customer(person(15)).remote_id
    connector.push_invoice(invoice_for(person(15), "F-19"), customer)        # TecPet's own sale
    counter = [ui(server, "venda", {"id_cliente": customer, "tipo_pagamento": "DINHEIRO",
                                    "itens": [{"descricao": "Banho", "quantidade": 1, "valor": 60 + n}]})
               for n in range(12)]
    items, cursor, calls = pull_all(connector.pull_pos_sales)
    assert calls == 2 and sorted(s.remote_id for s in items) == sorted(c["id"] for c in counter)
    sale = next(s for s in items if s.remote_id == counter[0]["id"])
    assert sale.total == Decimal("60.00") and sale.payment_method == "Dinheiro" and sale.customer_remote_id == customer
    assert sale.items[0]["quantity"] == 1 and sale.items[0]["unit_price"] == 60
    assert pull_all(connector.pull_pos_sales, cursor)[0] == []


def test_pull_receipts_brings_payments_made_in_conta_azul_once(sandbox, http_client):
    _, server = sandbox()
    connector = build(server, http_client, page_size=10)
    customer = connector.create_customer(person(16)).remote_id
    result = connector.push_invoice(invoice_for(person(16), "F-20", installments=3), customer)
    first, second, third = result.receivable_remote_ids
    connector.settle_receivable(first, Decimal("80.00"), TODAY)             # TecPet's own: not echoed back
    paid = ui(server, "baixa", {"parcela_id": second, "valor": 30, "metodo_pagamento": "CARTAO_DEBITO"})
    items, cursor, _ = pull_all(connector.pull_receipts)
    assert [(r.remote_id, r.amount, r.receivable_remote_id) for r in items] == [(paid["id"], Decimal("30.00"), second)]
    assert items[0].payment_method == "Cartão de Débito" and items[0].customer_remote_id == customer
    assert items[0].origin == f"Venda {result.order_number}"          # the sale the receivable belongs to
    assert pull_all(connector.pull_receipts, cursor)[0] == []
    later = ui(server, "baixa", {"parcela_id": second, "valor": 50})
    more, _, _ = pull_all(connector.pull_receipts, cursor)
    assert [r.remote_id for r in more] == [later["id"]]


# --------------------------------------------------------------------------- resilience
def test_pushes_land_once_despite_errors_and_lost_responses(sandbox, http_client):
    app, server = sandbox(error_rate=0.3, lost_response_rate=0.15, seed=7)
    connector = build(server, http_client, max_retries=8)
    remote = {}
    for n in range(15):
        record = person(200 + n)
        for _ in range(5):                                   # what the sync layer does on a transient error
            try:
                outcome = connector.upsert_customers([(record, None)])[0]
                break
            except TransientError:
                continue
        assert not isinstance(outcome, Exception), outcome
        remote[n] = outcome.remote_id
    invoice = invoice_for(person(200), "F-21")
    for _ in range(5):
        try:
            financial = connector.find_invoice(invoice) or connector.push_invoice(invoice, remote[0])
            break
        except TransientError:
            continue
    data = state(server)
    documents = [p["documento"] for p in data["people"]]
    assert len(documents) == 15 and len(set(documents)) == 15
    assert len(data["sales"]) == 1 and financial.receivable_remote_ids == data["events"][0]["parcelas"]
    assert len(data["events"]) == 1
    assert stats(server)["requests"] > 60                   # the faults were really in the way


def test_lost_answers_are_reconciled_instead_of_repeated(sandbox, http_client):
    """Every write is stored but its answer lost (a dropped connection): nothing may land twice."""
    _, server = sandbox(sales_create_financial_event=False, protocol_delay=0.3)
    connector = build(server, http_client, protocol_timeout_seconds=5)
    customer = connector.create_customer(person(17)).remote_id
    requests.post(f"{server.url}/__sandbox__/faults", json={"lost_response_rate": 1.0}, timeout=5)
    again = connector.create_customer(person(18))
    result = connector.push_invoice(invoice_for(person(17), "F-22"), customer)
    connector.settle_receivable(result.receivable_remote_ids[0], Decimal("120.00"), TODAY)
    data = state(server)
    assert [p["id"] for p in data["people"] if p["documento"] == cpf_for(100018)] == [again.remote_id]
    assert len(data["sales"]) == 1 and len(data["protocols"]) == 1 and len(data["events"]) == 1
    assert result.receivable_remote_ids == data["events"][0]["parcelas"] and len(data["settlements"]) == 1
    routes = stats(server)["by_route"]
    assert routes["POST /v1/venda"] == 1 and routes["POST /v1/financeiro/eventos-financeiros/contas-a-receber"] == 1


def test_four_workers_share_the_company_rate_limit(sandbox, redis_client):
    scale = 10
    app, server = sandbox(rate_limit=[(10 * scale, 1.0), (600 * scale, 60.0)])
    errors = []

    def worker(offset: int) -> None:
        client = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
        connector = build(server, client, rate_limit_scale=scale)
        try:
            for outcome in connector.upsert_customers([(person(1000 + offset + n), None) for n in range(50)]):
                if isinstance(outcome, Exception):
                    errors.append(outcome)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k * 50,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert stats(server)["over_limit"] == 0
    assert len({p["documento"] for p in state(server)["people"]}) == 200


def test_sandbox_enforces_the_documented_limit_by_default(serve_sandbox):
    server = serve_sandbox(Sandbox())
    answers = [api(server, "GET", "/v1/pessoas/conta-conectada").status_code for _ in range(14)]
    assert answers.count(429) >= 1 and stats(server)["over_limit"] == answers.count(429)

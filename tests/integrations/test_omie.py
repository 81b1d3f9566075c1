"""The Omie connector against its sandbox on loopback, with the real Redis behind the shared client.

Things done "inside Omie" (a clerk typing a customer, the cashier ringing up a sale, another
integration misbehaving) are real API calls or sandbox control calls made by the test itself.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo
from decimal import Decimal

import pytest
import requests

from integrations.base import (
    AuthError,
    ConnectorContext,
    CustomerRecord,
    FiscalState,
    Installment,
    InvoiceItem,
    InvoiceRecord,
    NotFoundError,
    PermanentError,
    PushResult,
    RateLimitedError,
    TransientError,
)
from integrations.http import HttpClient
from integrations.omie import OmieConnector
from integrations.omie import mapping as m
from integrations.omie.sandbox import DEMO_CREDENTIALS, DEMO_SETTINGS, Sandbox

ACCOUNT = "test-acct"


# --------------------------------------------------------------------------- helpers
def cpf(seed: int) -> str:
    """A valid CPF built from nine digits (Receita's check-digit rule)."""
    base = [int(c) for c in f"{seed % 10**9:09d}"]
    if len(set(base)) == 1:
        base[-1] = (base[-1] + 1) % 10
    for weight_start in (10, 11):
        total = sum(d * w for d, w in zip(base, range(weight_start, 1, -1)))
        rest = total % 11
        base.append(0 if rest < 2 else 11 - rest)
    return "".join(map(str, base))


def customer(n: int, **changes) -> CustomerRecord:
    fields = dict(id=f"tp-{n}", person_type="PF", name=f"Tutor Número {n}", tax_id=cpf(100_000 + n),
                  email=f"tutor{n}@example.com", phone="11987654321", zip_code="01310100", street="Avenida Paulista",
                  number="1000", complement="", district="Bela Vista", city="São Paulo", city_ibge_code="3550308",
                  state="SP")
    fields.update(changes)
    return CustomerRecord(**fields)


def invoice(owner: CustomerRecord, number: str = "INV-1", service_code: str = "") -> InvoiceRecord:
    today = date.today()
    return InvoiceRecord(
        id=f"inv-{number}", number=number, customer=owner, issue_date=today,
        items=[InvoiceItem("Consulta veterinária", Decimal("1"), Decimal("180.00"), service_code=service_code),
               InvoiceItem("Vacina V10", Decimal("2"), Decimal("60.00"), service_code=service_code)],
        installments=[Installment(1, today + timedelta(days=30), Decimal("150.00"), "Boleto"),
                      Installment(2, today + timedelta(days=60), Decimal("150.00"), "PIX")],
        notes="Paciente: Rex")


def connect(server, http, credentials=None, **settings) -> OmieConnector:
    merged = {"base_url": server.url + "/api/v1/", **DEMO_SETTINGS, **settings}
    return OmieConnector(ConnectorContext(credentials=dict(credentials or DEMO_CREDENTIALS), settings=merged,
                                          http=http, account_key=ACCOUNT))


def omie_api(server, area: str, call: str, param: dict, credentials=None) -> dict:
    """A call made by someone else with the clinic's keys (Omie's own screens, another tool)."""
    creds = credentials or DEMO_CREDENTIALS
    resp = requests.post(f"{server.url}/api/v1/{area}", timeout=5,
                         json={"call": call, "app_key": creds["app_key"], "app_secret": creds["app_secret"], "param": [param]})
    return resp.json()


def state(server) -> dict:
    return requests.get(server.url + "/__sandbox__/state", timeout=5).json()


def stats(server) -> dict:
    return requests.get(server.url + "/__sandbox__/stats", timeout=5).json()


def customers_with_tax_id(server, tax_id: str) -> list[dict]:
    return [c for c in state(server)["customers"] if m.tax_id_key(c["cnpj_cpf"]) == tax_id]


def retry_like_the_sync_layer(action, later: float, attempts: int = 8):
    """Jobs retry transient failures later: after Omie's repeat window, as the queue would."""
    for attempt in range(attempts):
        try:
            return action()
        except (TransientError, RateLimitedError):
            if attempt + 1 == attempts:
                raise
            time.sleep(later)


def short_window_sandbox(serve_sandbox, **options):
    """Omie's 60-second repeat window scaled down (like the rate limits) so re-asks fit in a test."""
    server = serve_sandbox(Sandbox(redundancy_seconds=1.0, **options))
    return server, {"redundancy_window_seconds": "1"}


REPEAT_WINDOW_PASSED = 1.7      # the window plus the connector's safety margin


@pytest.fixture
def omie(serve_sandbox):
    app = Sandbox(nfse_seconds=0.2)
    return serve_sandbox(app)


@pytest.fixture
def conn(omie, http_client) -> OmieConnector:
    return connect(omie, http_client)


# --------------------------------------------------------------------------- connection
def test_connection_names_the_company_and_refuses_wrong_keys(omie, conn, http_client):
    assert "Clinica Veterinaria Sandbox Ltda" in conn.test_connection()

    wrong = connect(omie, http_client, credentials={"app_key": DEMO_CREDENTIALS["app_key"], "app_secret": "nope"})
    with pytest.raises(AuthError) as refused:
        wrong.test_connection()
    assert "App Key" in refused.value.plain()

    sent = stats(omie)["requests"]
    with pytest.raises(AuthError):
        wrong.test_connection()          # a refused call is never repeated unchanged (misuse rule)
    assert stats(omie)["requests"] == sent


# --------------------------------------------------------------------------- customers
def test_customer_is_created_then_its_changes_are_updated(omie, conn):
    rex_owner = customer(1)
    created = conn.create_customer(rex_owner)
    assert created.created and created.remote_id

    [stored] = state(omie)["customers"]
    assert stored["codigo_cliente_integracao"] == "tp-1"
    assert stored["cnpj_cpf"] == m.format_tax_id(rex_owner.tax_id)
    assert (stored["telefone1_ddd"], stored["telefone1_numero"]) == ("11", "987654321")

    moved = customer(1, street="Rua Augusta", number="500", district="Consolação", phone="11912345678")
    updated = conn.update_customer(created.remote_id, moved)
    assert updated.remote_id == created.remote_id and not updated.created

    [stored] = state(omie)["customers"]
    assert (stored["endereco"], stored["endereco_numero"], stored["bairro"]) == ("Rua Augusta", "500", "Consolação")
    assert conn.get_customer(created.remote_id).record.street == "Rua Augusta"


def test_repushing_a_customer_finds_the_existing_record(omie, conn):
    first = conn.create_customer(customer(2))
    [again] = conn.upsert_customers([(customer(2, email="novo@example.com"), None)])
    assert isinstance(again, PushResult)
    assert again.remote_id == first.remote_id and not again.created
    assert len(customers_with_tax_id(omie, customer(2).tax_id)) == 1
    assert customers_with_tax_id(omie, customer(2).tax_id)[0]["email"] == "novo@example.com"

    # typed by hand in Omie (no integration code), then pushed from TecPet: adopted, not duplicated
    typed = omie_api(omie, m.AREA_CUSTOMERS, "IncluirCliente",
                     {"razao_social": "Maria Digitada", "cnpj_cpf": m.format_tax_id(cpf(777))})
    adopted = conn.create_customer(customer(3, tax_id=cpf(777), name="Maria da Silva"))
    assert adopted.remote_id == str(typed["codigo_cliente_omie"]) and not adopted.created
    [maria] = customers_with_tax_id(omie, cpf(777))
    assert (maria["codigo_cliente_integracao"], maria["razao_social"]) == ("tp-3", "Maria da Silva")
    assert conn.find_customer(customer(3, tax_id=cpf(777))).remote_id == adopted.remote_id


def test_omie_validation_errors_read_as_plain_words_with_the_field(omie, conn):
    with pytest.raises(PermanentError) as bad_tax_id:
        conn.create_customer(customer(4, tax_id="52998224724"))
    assert not isinstance(bad_tax_id.value, NotFoundError)
    assert "tax_id" in bad_tax_id.value.plain() and "inválido" in bad_tax_id.value.plain()
    assert bad_tax_id.value.field_errors[0].field == "tax_id"

    requests.post(omie.url + "/__sandbox__/faults", json={"reject_rate": 1.0}, timeout=5)
    with pytest.raises(PermanentError) as injected:
        conn.create_customer(customer(6))
    assert injected.value.field_errors[0].field == "name" and "falha injetada" in injected.value.plain()
    assert conn.find_customer(customer(6)) is None       # reads are not refused
    requests.post(omie.url + "/__sandbox__/faults", json={"reject_rate": 0.0}, timeout=5)

    with pytest.raises(PermanentError) as no_name:
        conn.create_customer(customer(5, name="  "))
    assert "name:" in no_name.value.plain() and "razao_social" in no_name.value.plain()

    sent = stats(omie)["requests"]
    with pytest.raises(PermanentError):
        conn.create_customer(customer(4, tax_id="52998224724"))   # same refused payload: not sent again
    assert stats(omie)["requests"] == sent
    assert stats(omie)["over_limit"] == 0 and state(omie)["customers"] == []


def test_a_thousand_customers_take_at_most_25_requests(omie, conn):
    batch = [(customer(n), None) for n in range(1000)]
    before = stats(omie)["requests"]
    outcomes = conn.upsert_customers(batch)
    assert stats(omie)["requests"] - before <= 25
    assert all(isinstance(o, PushResult) and o.created for o in outcomes)
    assert len({o.remote_id for o in outcomes}) == 1000
    assert len(state(omie)["customers"]) == 1000
    assert stats(omie)["by_call"]["UpsertClientesPorLote"] == 20


def test_one_bad_customer_does_not_hold_back_its_lote(omie, conn):
    batch = [(customer(n), None) for n in range(10)]
    batch[4] = (customer(4, email="not-an-email"), None)
    outcomes = conn.upsert_customers(batch)
    assert isinstance(outcomes[4], PermanentError) and outcomes[4].field_errors[0].field == "email"
    assert all(isinstance(o, PushResult) for i, o in enumerate(outcomes) if i != 4)
    assert sorted(c["codigo_cliente_integracao"] for c in state(omie)["customers"]) == \
        sorted(f"tp-{n}" for n in range(10) if n != 4)


# --------------------------------------------------------------------------- invoices
def test_invoice_becomes_service_order_with_installments_and_receivables(omie, conn):
    owner = customer(10)
    remote = conn.create_customer(owner).remote_id
    bill = invoice(owner)
    result = conn.push_invoice(bill, remote)

    [order] = state(omie)["service_orders"]
    assert order["nCodOS"] == int(result.order_remote_id) and order["cNumOS"] == result.order_number
    assert [p["nValor"] for p in order["Parcelas"]] == [150.0, 150.0]
    receivables = state(omie)["receivables"]
    assert sorted(str(r["codigo_lancamento_omie"]) for r in receivables) == sorted(result.receivable_remote_ids)
    assert {(r["valor_documento"], r["nCodOS"], r["codigo_tipo_documento"]) for r in receivables} == \
        {(150.0, order["nCodOS"], "BOL"), (150.0, order["nCodOS"], "PIX")}

    assert conn.find_invoice(bill) == result
    assert conn.push_invoice(bill, remote) == result      # a re-run (crash recovery) creates nothing new
    assert len(state(omie)["service_orders"]) == 1 and len(state(omie)["receivables"]) == 2
    assert conn.find_invoice(invoice(owner, number="never-sent")) is None
    assert stats(omie)["over_limit"] == 0


def test_issuing_bills_the_order_and_the_nfse_outcome_comes_back(omie, conn):
    owner = customer(11)
    remote = conn.create_customer(owner).remote_id
    bill = invoice(owner)
    financial = conn.push_invoice(bill, remote)

    pending = conn.issue_invoice(bill, financial, remote)
    assert pending.state == FiscalState.PENDING
    time.sleep(0.3)                                        # the city hall answers
    issued = conn.invoice_status(pending.remote_id)
    assert issued.state == FiscalState.ISSUED and issued.number and issued.access_key
    assert len(state(omie)["receivables"]) == 2            # billing did not add a second set

    rejected_bill = invoice(owner, number="INV-2", service_code="99.99")
    financial = conn.push_invoice(rejected_bill, remote)
    fiscal = conn.issue_invoice(rejected_bill, financial, remote)
    time.sleep(0.3)
    rejected = conn.invoice_status(fiscal.remote_id)
    assert rejected.state == FiscalState.REJECTED
    assert "99.99" in rejected.message and "incompatível" in rejected.message


def test_missing_setup_codes_are_named_for_support(omie, http_client):
    bare = connect(omie, http_client, category_code="", bank_account_id="")
    owner = customer(12)
    with pytest.raises(PermanentError) as missing:
        bare.push_invoice(invoice(owner), bare.create_customer(owner).remote_id)
    assert {fe.field for fe in missing.value.field_errors} == {"category_code", "bank_account_id"}

    wrong = connect(omie, http_client, category_code="9.99.99")
    with pytest.raises(PermanentError) as unknown:
        wrong.push_invoice(invoice(owner, number="INV-3"), wrong.find_customer(owner).remote_id)
    assert "category_code:" in unknown.value.plain() and "9.99.99" in unknown.value.plain()


def test_settling_a_receivable_and_pulling_its_receipt_back_once(omie, conn):
    owner = customer(13)
    remote = conn.create_customer(owner).remote_id
    financial = conn.push_invoice(invoice(owner), remote)
    first, second = financial.receivable_remote_ids

    conn.settle_receivable(first, Decimal("150.00"), date.today())
    conn.settle_receivable(first, Decimal("150.00"), date.today())          # a retried job: still one baixa
    by_id = {str(r["codigo_lancamento_omie"]): r for r in state(omie)["receivables"]}
    assert by_id[first]["status_titulo"] == "RECEBIDO" and by_id[second]["status_titulo"] == "A VENCER"
    assert stats(omie)["over_limit"] == 0       # the repeat was answered from the kept answer, not resent

    with pytest.raises(PermanentError) as over:
        conn.settle_receivable(second, Decimal("999.00"), date.today())
    assert "999" in over.value.plain()

    page = conn.pull_receipts(None)
    assert [(r.remote_id, r.amount, r.origin) for r in page.items] == \
        [(first, Decimal("150.00"), f"OS_{financial.order_remote_id}")]
    # the receipt's day is Omie's own (Brasília time): from 21:00 there it is already tomorrow in UTC
    brasilia_today = datetime.now(ZoneInfo("America/Sao_Paulo")).date()
    assert page.items[0].paid_at == brasilia_today and page.items[0].customer_remote_id == remote
    assert conn.pull_receipts(page.cursor).items == []


# --------------------------------------------------------------------------- pulls
def test_customers_changed_in_omie_come_back_page_by_page_once(serve_sandbox, http_client):
    omie, window = short_window_sandbox(serve_sandbox)
    conn = connect(omie, http_client, list_page_size="2", **window)
    assert conn.pull_customers(None).items == []          # fault 5113 on an empty page is just empty
    time.sleep(REPEAT_WINDOW_PASSED)
    ids = [omie_api(omie, m.AREA_CUSTOMERS, "IncluirCliente",
                    {"razao_social": f"Cliente Omie {n}", "cnpj_cpf": m.format_tax_id(cpf(500 + n))})["codigo_cliente_omie"]
           for n in range(3)]

    first = conn.pull_customers(None)
    assert first.more and len(first.items) == 2
    second = conn.pull_customers(first.cursor)
    assert not second.more
    assert sorted(int(c.remote_id) for c in first.items + second.items) == sorted(ids)
    assert all(c.record.name.startswith("Cliente Omie") and c.modified_at for c in first.items + second.items)
    assert conn.pull_customers(second.cursor).items == []

    omie_api(omie, m.AREA_CUSTOMERS, "AlterarCliente", {"codigo_cliente_omie": ids[1], "email": "mudou@example.com"})
    time.sleep(REPEAT_WINDOW_PASSED)
    changed = conn.pull_customers(second.cursor)
    assert [(c.remote_id, c.record.email) for c in changed.items] == [(str(ids[1]), "mudou@example.com")]
    time.sleep(REPEAT_WINDOW_PASSED)
    assert conn.pull_customers(changed.cursor).items == []


def test_counter_sales_come_back_page_by_page_once(serve_sandbox, http_client):
    omie, window = short_window_sandbox(serve_sandbox)
    conn = connect(omie, http_client, list_page_size="2", **window)
    assert conn.pull_pos_sales(None).items == []
    time.sleep(REPEAT_WINDOW_PASSED)
    for total, kind in ((Decimal("50.00"), "DIN"), (Decimal("89.90"), "PIX"), (Decimal("20.00"), "CRC")):
        requests.post(omie.url + "/__sandbox__/cupons", timeout=5,
                      json={"itens": [{"xProd": "Ração 1kg", "nQuant": 1, "vUnit": float(total)}],
                            "pagamentos": [{"cTipoDoc": kind}]})
    seen, cursor = [], None
    for _ in range(3):
        page = conn.pull_pos_sales(cursor)
        seen += page.items
        cursor = page.cursor
        if not page.more:
            break
    assert sorted((s.total, s.payment_method) for s in seen) == [
        (Decimal("20.00"), "Cartão de Crédito"), (Decimal("50.00"), "Dinheiro"), (Decimal("89.90"), "PIX")]
    assert all(s.status == "completed" and s.items[0]["description"] == "Ração 1kg" for s in seen)
    time.sleep(REPEAT_WINDOW_PASSED)
    assert conn.pull_pos_sales(cursor).items == []


# --------------------------------------------------------------------------- webhooks
def test_webhooks_are_verified_and_forgeries_refused(omie, conn, serve_sandbox):
    received, arrived = [], threading.Event()

    def receiver(environ, start_response):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        received.append(({"Content-Type": environ.get("CONTENT_TYPE", "")}, environ["wsgi.input"].read(size)))
        arrived.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pong"]

    hook = serve_sandbox(receiver)
    requests.post(omie.url + "/__sandbox__/webhooks", json={"url": hook.url}, timeout=5)
    created = conn.create_customer(customer(20))

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(b"ClienteFornecedor.Incluido" in body for _, body in received):
        arrived.wait(0.1)
    bodies = [body for _, body in received]
    assert any(json.loads(b).get("ping") == "omie" for b in bodies)
    event_body = next(b for b in bodies if b"ClienteFornecedor.Incluido" in b)
    assert all(conn.verify_webhook(headers, body) for headers, body in received)

    envelope = json.loads(event_body)
    assert str(envelope["event"]["codigo_cliente_omie"]) == created.remote_id
    assert conn.get_customer(str(envelope["event"]["codigo_cliente_omie"])).record.id == "tp-20"

    forged = dict(envelope, appKey="0000000000000")
    assert not conn.verify_webhook({}, json.dumps(forged).encode())
    assert not conn.verify_webhook({}, b"not json")


# --------------------------------------------------------------------------- auth, faults, limits
def test_a_revoked_secret_is_an_auth_error_until_support_pastes_the_new_one(omie, conn, http_client):
    conn.create_customer(customer(30))
    requests.post(omie.url + "/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    with pytest.raises(AuthError) as revoked:
        conn.create_customer(customer(31))
    assert "App Key" in revoked.value.plain()

    sent = stats(omie)["requests"]
    with pytest.raises(AuthError):
        conn.find_customer(customer(32))                 # Omie has no refresh: stop calling with these keys
    assert stats(omie)["requests"] == sent

    new_secret = state(omie)["apps"][DEMO_CREDENTIALS["app_key"]]
    renewed = connect(omie, http_client, credentials={**DEMO_CREDENTIALS, "app_secret": new_secret})
    assert renewed.create_customer(customer(31)).created


def test_pushes_survive_server_errors_and_lost_answers_without_duplicates(serve_sandbox, http_client):
    omie, window = short_window_sandbox(serve_sandbox, error_rate=0.3, lost_response_rate=0.1, seed=11)
    conn = connect(omie, http_client, **window)
    later = REPEAT_WINDOW_PASSED
    singles = [retry_like_the_sync_layer(lambda n=n: conn.create_customer(customer(n)), later) for n in range(15)]
    batch = retry_like_the_sync_layer(lambda: conn.upsert_customers([(customer(n), None) for n in range(15, 40)]), later)
    owner_id = singles[0].remote_id
    financial = retry_like_the_sync_layer(lambda: conn.push_invoice(invoice(customer(0)), owner_id), later)

    stored = state(omie)["customers"]
    assert sorted(c["codigo_cliente_integracao"] for c in stored) == sorted(f"tp-{n}" for n in range(40))
    assert len({m.tax_id_key(c["cnpj_cpf"]) for c in stored}) == 40
    assert all(isinstance(o, PushResult) for o in singles + batch)
    assert len(state(omie)["service_orders"]) == 1 and len(state(omie)["receivables"]) == 2
    assert len(financial.receivable_remote_ids) == 2
    assert stats(omie)["over_limit"] == 0


def push_from_workers(omie, redis_client, workers: int, per_worker: int, scale: int) -> list[Exception]:
    """Each worker has its own HttpClient and connector on the same account, as separate RQ workers do."""
    errors: list[Exception] = []

    def worker(first: int) -> None:
        http = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
        try:
            conn = connect(omie, http, rate_limit_scale=str(scale))
            for n in range(first, first + per_worker):
                conn.create_customer(customer(n))
        except Exception as exc:  # surfaced by the caller's assertion
            errors.append(exc)
        finally:
            http.close()

    threads = [threading.Thread(target=worker, args=(k * per_worker,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_four_workers_share_omie_limits(serve_sandbox, redis_client):
    scale = 4
    omie = serve_sandbox(Sandbox(rate_limit=[(240 * scale, 60.0)], ip_rate_limit=[(960 * scale, 60.0)],
                                 latency_ms=15))
    assert push_from_workers(omie, redis_client, workers=4, per_worker=50, scale=scale) == []
    figures = stats(omie)
    assert figures["over_limit"] == 0 and figures["max_inflight"] <= 4
    stored = state(omie)["customers"]
    assert len(stored) == 200 and len({c["codigo_cliente_integracao"] for c in stored}) == 200

    # one budget for the four clients: the method's window in Redis holds all 200 calls
    prefix = HttpClient(redis_client).limiter.prefix
    assert redis_client.zcard(f"{prefix}:{ACCOUNT}:IncluirCliente:{240 * scale}/60.0") == 200
    assert redis_client.zcard(f"{prefix}:omie:egress:default:{960 * scale}/60.0") == 200


def test_workers_beyond_four_wait_for_a_free_slot(serve_sandbox, redis_client):
    # the limiter paces requests evenly (25 ms apart at scale 10); a slow ERP (300 ms) makes more
    # than four want to be in flight at once, and the cap must hold them at four
    omie = serve_sandbox(Sandbox(latency_ms=300))
    assert push_from_workers(omie, redis_client, workers=6, per_worker=5, scale=10) == []
    figures = stats(omie)
    assert figures["max_inflight"] == 4 and figures["over_limit"] == 0
    assert len(state(omie)["customers"]) == 30


def test_the_sandbox_enforces_omie_limits_and_the_connector_stops_when_blocked(serve_sandbox, http_client):
    default = Sandbox()
    assert default.faults.rate_limit == [(240, 60.0)] and default.faults.max_concurrency == 4
    assert default.ip_rate_limit == [(960, 60.0)] and default.redundancy_seconds == 60

    omie = serve_sandbox(Sandbox(latency_ms=150))
    answers: list[int] = []

    def list_companies(page: int) -> None:
        answers.append(requests.post(f"{omie.url}/api/v1/{m.AREA_COMPANIES}", timeout=5, json={
            "call": "ListarEmpresas", **DEMO_CREDENTIALS, "param": [{"pagina": page}]}).status_code)

    burst = [threading.Thread(target=list_companies, args=(page,)) for page in range(1, 7)]
    for t in burst:
        t.start()
    for t in burst:
        t.join()
    assert answers.count(429) >= 2                                          # more than 4 in flight

    empty = omie_api(omie, m.AREA_CUSTOMERS, "ListarClientes", {"pagina": 1})
    assert m.is_empty_page(m.fault_of(empty))
    repeat = omie_api(omie, m.AREA_CUSTOMERS, "ListarClientes", {"pagina": 1})
    assert m.is_redundant(m.fault_of(repeat))                                # same call within 60 s
    assert stats(omie)["over_limit"] >= 3

    narrow = serve_sandbox(Sandbox(rate_limit=[(3, 60.0)]))
    statuses = [requests.post(f"{narrow.url}/api/v1/{m.AREA_COMPANIES}", timeout=5, json={
        "call": "ListarEmpresas", **DEMO_CREDENTIALS, "param": [{"pagina": page}]}).status_code for page in range(1, 5)]
    assert statuses[3] == 429 and stats(narrow)["over_limit"] == 1           # 4th call of the method in a minute

    # another tool repeating a failing call gets the app key blocked; the connector backs off
    for _ in range(3):
        omie_api(omie, m.AREA_CUSTOMERS, "IncluirCliente", {"razao_social": ""})
    conn = connect(omie, http_client)
    with pytest.raises(RateLimitedError) as blocked:
        conn.create_customer(customer(40))
    assert blocked.value.retry_after > 1000
    sent = stats(omie)["requests"]
    with pytest.raises(RateLimitedError):
        conn.find_customer(customer(41))
    assert stats(omie)["requests"] == sent

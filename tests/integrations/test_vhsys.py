"""VHSYS connector against its sandbox on loopback, with the real Redis behind the shared HTTP client."""
from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
import requests

from integrations.base import (AuthError, Capability, ConnectorContext, CustomerRecord, FiscalState, InvoiceItem,
                               InvoiceRecord, Installment, NotFoundError, PermanentError, TransientError)
from integrations.http import HttpClient
from integrations.vhsys import VhsysConnector
from integrations.vhsys.sandbox import DEMO_CREDENTIALS, Sandbox

SCALE = 20  # the documented (assumed) limits times this, on both sides, so tests stay short


def scaled_limits(factor: float) -> list[tuple[int, float]]:
    """The limits the sandbox enforces by default (what VHSYS is assumed to enforce), scaled."""
    return [(int(n * factor), s) for n, s in Sandbox.default_rate_limit]


def cpf(seed: int) -> str:
    """A valid CPF built from a seed (check digits computed), so each test customer is distinct."""
    base = [int(c) for c in f"{seed % 10 ** 9:09d}"]
    if len(set(base)) == 1:
        base[0] = (base[0] + 1) % 10
    for weight_start in (10, 11):
        total = sum(d * w for d, w in zip(base, range(weight_start, 1, -1)))
        r = total % 11
        base.append(0 if r < 2 else 11 - r)
    return "".join(map(str, base))


def customer(seed: int = 1, **changes) -> CustomerRecord:
    data = dict(id=f"tp-{seed}", person_type="PF", name=f"Tutor {seed}", tax_id=cpf(seed), email=f"t{seed}@ex.com.br",
                phone="11987654321", zip_code="01310100", street="Avenida Paulista", number="1000",
                district="Bela Vista", city="São Paulo", city_ibge_code="3550308", state="SP")
    data.update(changes)
    return CustomerRecord(**data)


def invoice(cust: CustomerRecord, inv_id: str = "inv-1", installments: int = 2, **changes) -> InvoiceRecord:
    today = date(2026, 7, 1)
    items = [InvoiceItem("Consulta veterinária", Decimal("1"), Decimal("150.00"), service_code="05.08"),
             InvoiceItem("Vacina V10", Decimal("2"), Decimal("45.50"), service_code="05.08")]
    total = sum((i.total for i in items), Decimal("0"))
    share = (total / max(installments, 1)).quantize(Decimal("0.01"))
    parts = [Installment(n + 1, today + timedelta(days=30 * (n + 1)), share, "PIX") for n in range(installments)]
    if parts:
        parts[-1].amount = total - share * (installments - 1)
    data = dict(id=inv_id, number="F-" + inv_id, customer=cust, issue_date=today, items=items, installments=parts)
    data.update(changes)
    return InvoiceRecord(**data)


def build(server, http, credentials=None, **settings) -> VhsysConnector:
    merged = {"base_url": server.url, "rate_limit_scale": str(SCALE)}
    merged.update(settings)
    return VhsysConnector(ConnectorContext(credentials=dict(credentials or DEMO_CREDENTIALS), settings=merged,
                                           http=http, account_key="test-acct"))


def erp(server, method: str, path: str, body=None, credentials=None) -> dict:
    """A call made "from the ERP side" (the clinic working in VHSYS), through the ERP's own API."""
    creds = credentials or DEMO_CREDENTIALS
    resp = requests.request(method, server.url + path, json=body, timeout=5, headers={
        "access-token": creds["access_token"], "secret-access-token": creds["secret_access_token"],
        "User-Agent": "vhsys-web/1.0"})
    return resp.json()


def state(server) -> dict:
    return requests.get(server.url + "/__sandbox__/state", timeout=5).json()


def stats(server) -> dict:
    return requests.get(server.url + "/__sandbox__/stats", timeout=5).json()


def customers_with(server, tax_id: str) -> list[dict]:
    return [c for c in state(server)["clientes"] if "".join(ch for ch in c.get("cnpj_cliente", "") if ch.isalnum()) == tax_id]


def drain(pull, cursor=None, max_pages=20):
    """Pull until VHSYS has nothing more; return every item and the final cursor."""
    items = []
    for _ in range(max_pages):
        page = pull(cursor)
        items += page.items
        cursor = page.cursor
        if not page.more:
            break
    return items, cursor


@pytest.fixture
def server(serve_sandbox):
    return serve_sandbox(Sandbox(rate_limit=scaled_limits(SCALE)))


@pytest.fixture
def vhsys(server, http_client):
    return build(server, http_client)


# ---------------------------------------------------------------------- declarations and connection
def test_declarations_match_the_brief():
    assert VhsysConnector.name == "vhsys" and VhsysConnector.label == "VHSYS" and VhsysConnector.two_way
    assert VhsysConnector.capabilities == {
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.ISSUE_INVOICE, Capability.TRACK_INVOICE, Capability.PULL_POS_SALES,
        Capability.PULL_RECEIPTS, Capability.SETTLE_RECEIVABLE}
    defaults = {f.name: f.default for f in VhsysConnector.setting_fields}
    assert defaults["base_url"] == "https://api.vhsys.com/v2"
    limits = {r.field: r.max_length for r in VhsysConnector.record_requirements}
    assert limits == {"name": 255, "number": 7, "district": 45, "complement": 45, "phone": 20}
    erp_limits = dict((s, n) for n, s in Sandbox().faults.rate_limit)
    assert erp_limits == {1.0: 5, 3600.0: 10000}
    # the connector spends at most the assumed budget (the shared limiter paces it and adds its margin)
    assert all(n <= erp_limits[s] for n, s in VhsysConnector.rate_limit.windows)


def test_connection_accepts_demo_tokens_and_refuses_wrong_ones(server, http_client, vhsys):
    assert "Connected to VHSYS" in vhsys.test_connection()
    wrong = build(server, http_client, {"access_token": "nope-nope", "secret_access_token": "wrong-secret"})
    before = stats(server)["requests"]
    with pytest.raises(AuthError) as err:
        wrong.test_connection()
    assert "Token de acesso inválido" in err.value.plain() and "generate a new token pair" in err.value.plain()
    assert stats(server)["requests"] == before + 1  # a refused token is not retried


def test_a_stored_credential_no_header_can_carry_is_a_plain_permanent_error(server, http_client):
    garbled = build(server, http_client, {"access_token": "abc\U000aab2f", "secret_access_token": "x\u00e9"})
    with pytest.raises(PermanentError) as refused:
        garbled.test_connection()
    assert "cannot be sent to the ERP" in refused.value.plain()
    assert stats(server)["requests"] == 0


def test_empty_list_answer_is_an_empty_result_not_an_error(vhsys):
    assert vhsys.find_customer(customer(3)) is None
    page = vhsys.pull_customers(None)
    assert page.items == [] and page.cursor is None and not page.more
    with pytest.raises(NotFoundError):
        vhsys.get_customer("999999")


# ---------------------------------------------------------------------- customers
def test_customer_is_created_then_updated_when_changed(server, vhsys):
    record = customer(10)
    [created] = vhsys.upsert_customers([(record, None)])
    assert created.created
    stored = customers_with(server, record.tax_id)
    assert len(stored) == 1 and stored[0]["cnpj_cliente"] == "000.000.010-" + record.tax_id[-2:]
    assert stored[0]["cidade_cliente_cod"] == "3550308" and stored[0]["celular_cliente"] == "11987654321"

    changed = customer(10, street="Rua Augusta", number="500", district="Consolação")
    [updated] = vhsys.upsert_customers([(changed, created.remote_id)])
    assert not updated.created and updated.remote_id == created.remote_id
    back = vhsys.get_customer(created.remote_id)
    assert (back.record.street, back.record.number, back.record.district) == ("Rua Augusta", "500", "Consolação")
    assert back.record.tax_id == record.tax_id and back.record.zip_code == "01310100"


def test_repush_finds_the_existing_customer_instead_of_duplicating(server, vhsys):
    record = customer(11)
    [first] = vhsys.upsert_customers([(record, None)])
    [second] = vhsys.upsert_customers([(customer(11, name="Tutor Onze"), None)])
    assert not second.created and second.remote_id == first.remote_id
    stored = customers_with(server, record.tax_id)
    assert len(stored) == 1 and stored[0]["razao_cliente"] == "Tutor Onze"


def test_find_matches_a_bare_tax_id_typed_in_vhsys_and_alphanumeric_cnpj(server, vhsys):
    erp(server, "POST", "/clientes", {"razao_cliente": "Clinica Bare", "tipo_pessoa": "PF", "cnpj_cliente": cpf(12)})
    found = vhsys.find_customer(customer(12))
    assert found is not None and found.record.name == "Clinica Bare"

    company = customer(13, person_type="PJ", name="Pet Shop ABC Ltda", tax_id="12ABC34501DE35")
    [pushed] = vhsys.upsert_customers([(company, None)])
    assert customers_with(server, "12ABC34501DE35")[0]["cnpj_cliente"] == "12.ABC.345/01DE-35"
    again = vhsys.find_customer(company)
    assert again.remote_id == pushed.remote_id and again.record.person_type == "PJ"


def test_erp_validation_errors_become_plain_permanent_errors(server, vhsys):
    with pytest.raises(PermanentError) as bad_cpf:
        vhsys.create_customer(customer(14, tax_id="52998224724"))
    assert "CPF/CNPJ inválido" in bad_cpf.value.plain() and "tax_id:" in bad_cpf.value.plain()
    assert [fe.field for fe in bad_cpf.value.field_errors] == ["tax_id"]

    with pytest.raises(PermanentError) as no_name:
        vhsys.create_customer(customer(15, name="  "))
    assert "razao_cliente é obrigatório" in no_name.value.plain() and "name:" in no_name.value.plain()

    with pytest.raises(PermanentError) as long_number:
        vhsys.create_customer(customer(16, number="12345678"))
    assert "no máximo 7" in long_number.value.plain() and "number:" in long_number.value.plain()
    assert state(server)["clientes"] == []


# ---------------------------------------------------------------------- invoice -> OS, parcelas, receivables
def test_invoice_becomes_service_order_with_installments_and_marked_receivables(server, vhsys):
    [cust] = vhsys.upsert_customers([(customer(20), None)])
    inv = invoice(customer(20), "inv-20", installments=3)
    result = vhsys.push_invoice(inv, cust.remote_id)

    [order] = state(server)["ordens_servico"]
    assert str(order["id_ordem"]) == result.order_remote_id and str(order["id_pedido"]) == result.order_number
    assert "[TecPet:inv-20]" in order["obs_pedido"] and order["valor_total_os"] == "241.00"
    assert [s["desc_servico"] for s in order["servicos"]] == ["Consulta veterinária", "Vacina V10"]
    assert [p["valor_parcela"] for p in order["parcelas"]] == ["80.33", "80.33", "80.34"]
    receivables = state(server)["contas_receber"]
    assert sorted(str(r["id_conta_rec"]) for r in receivables) == sorted(result.receivable_remote_ids)
    assert {r["identificacao"] for r in receivables} == {f"OS_{result.order_remote_id}"}
    assert sorted(r["n_documento_rec"] for r in receivables) == ["TPinv-20-1", "TPinv-20-2", "TPinv-20-3"]
    assert all("inv-20" in r["observacoes_rec"] and r["forma_pagamento"] == "PIX" for r in receivables)

    assert vhsys.find_invoice(inv) == result
    assert vhsys.push_invoice(inv, cust.remote_id) == result  # a retried job creates nothing new
    assert len(state(server)["ordens_servico"]) == 1 and len(state(server)["contas_receber"]) == 3
    assert vhsys.find_invoice(invoice(customer(20), "inv-other")) is None


def test_a_job_that_died_halfway_is_completed_on_retry_without_a_second_order(server, http_client):
    broken = build(server, http_client, bank_account_id="999")  # receivables refused after the OS exists
    [cust] = broken.upsert_customers([(customer(21), None)])
    inv = invoice(customer(21), "inv-21")
    with pytest.raises(PermanentError) as err:
        broken.push_invoice(inv, cust.remote_id)
    assert "id_banco" in err.value.plain()
    assert len(state(server)["ordens_servico"]) == 1 and state(server)["contas_receber"] == []

    fixed = build(server, http_client)
    assert fixed.find_invoice(inv) is None  # half-made: the caller must push again
    result = fixed.push_invoice(inv, cust.remote_id)
    [order] = state(server)["ordens_servico"]
    assert result.order_remote_id == str(order["id_ordem"]) and len(order["servicos"]) == 2
    assert len(state(server)["contas_receber"]) == 2 and fixed.find_invoice(inv) == result


def test_settle_receivable_and_receipts_come_back_once(server, vhsys):
    [cust] = vhsys.upsert_customers([(customer(22), None)])
    result = vhsys.push_invoice(invoice(customer(22), "inv-22"), cust.remote_id)
    assert vhsys.pull_receipts(None).items == []

    first, second = result.receivable_remote_ids
    vhsys.settle_receivable(first, Decimal("120.50"), date(2026, 7, 10))
    vhsys.settle_receivable(first, Decimal("120.50"), date(2026, 7, 10))  # retry-safe
    settled = next(r for r in state(server)["contas_receber"] if str(r["id_conta_rec"]) == first)
    assert (settled["liquidado_rec"], settled["valor_pago"], settled["data_pagamento"]) == ("Sim", "120.50", "2026-07-10")

    receipts, cursor = drain(vhsys.pull_receipts)
    assert [(r.remote_id, r.amount, r.paid_at, r.origin) for r in receipts] == [
        (first, Decimal("120.50"), date(2026, 7, 10), f"OS_{result.order_remote_id}")]
    assert vhsys.pull_receipts(cursor).items == []

    erp(server, "PUT", f"/contas-receber/{second}", {"liquidado_rec": "Sim", "valor_pago": "120.50",
                                                     "data_pagamento": "2026-07-11"})  # paid at the desk
    more, cursor = drain(vhsys.pull_receipts, cursor)
    assert [r.remote_id for r in more] == [second]
    assert vhsys.pull_receipts(cursor).items == []
    with pytest.raises(NotFoundError):
        vhsys.settle_receivable("424242", Decimal("1"), date(2026, 7, 1))


# ---------------------------------------------------------------------- NFS-e
def test_nfse_is_pending_then_issued_with_a_number(server, vhsys):
    [cust] = vhsys.upsert_customers([(customer(30), None)])
    inv = invoice(customer(30), "inv-30")
    financial = vhsys.push_invoice(inv, cust.remote_id)
    requested = vhsys.issue_invoice(inv, financial, cust.remote_id)
    assert requested.state == FiscalState.PENDING and requested.remote_id

    assert vhsys.invoice_status(requested.remote_id).state == FiscalState.PENDING
    issued = vhsys.invoice_status(requested.remote_id)
    assert issued.state == FiscalState.ISSUED and issued.number and issued.access_key
    assert vhsys.issue_invoice(inv, financial, cust.remote_id).number == issued.number  # no second note
    [note] = state(server)["notas_servico"]
    assert note["atividade"] == "05.08" and note["valor_total_nota"] == "241.00"


def test_nfse_rejected_with_the_municipal_reason_then_issued_after_the_fix(server, vhsys):
    incomplete = customer(31, district="", number="")
    [cust] = vhsys.upsert_customers([(incomplete, None)])
    inv = invoice(incomplete, "inv-31")
    financial = vhsys.push_invoice(inv, cust.remote_id)
    note_id = vhsys.issue_invoice(inv, financial, cust.remote_id).remote_id
    vhsys.invoice_status(note_id)
    rejected = vhsys.invoice_status(note_id)
    assert rejected.state == FiscalState.REJECTED
    assert rejected.message.startswith("E160") and "bairro" in rejected.message and "número" in rejected.message

    vhsys.upsert_customers([(customer(31), cust.remote_id)])
    assert vhsys.issue_invoice(inv, financial, cust.remote_id).state == FiscalState.PENDING
    vhsys.invoice_status(note_id)
    assert vhsys.invoice_status(note_id).state == FiscalState.ISSUED
    assert len(state(server)["notas_servico"]) == 1


def test_nfse_without_service_code_is_rejected_by_vhsys_in_plain_words(server, vhsys):
    [cust] = vhsys.upsert_customers([(customer(32), None)])
    inv = invoice(customer(32), "inv-32", installments=0,
                  items=[InvoiceItem("Banho e tosa", Decimal("1"), Decimal("80"))])
    outcome = vhsys.issue_invoice(inv, vhsys.push_invoice(inv, cust.remote_id), cust.remote_id)
    assert outcome.state == FiscalState.REJECTED and "atividade" in outcome.message


# ---------------------------------------------------------------------- pulls
def test_pull_customers_pages_with_cursor_and_redelivers_nothing(server, http_client):
    vhsys = build(server, http_client, page_size="2")
    ids = [erp(server, "POST", "/clientes", {"razao_cliente": f"Cliente VHSYS {n}", "tipo_pessoa": "PF",
                                             "cnpj_cliente": cpf(40 + n)})["data"]["id_cliente"] for n in range(5)]
    first = vhsys.pull_customers(None)
    assert len(first.items) == 2 and first.more
    rest, cursor = drain(vhsys.pull_customers, first.cursor)
    assert sorted(int(c.remote_id) for c in first.items + rest) == sorted(ids)
    assert vhsys.pull_customers(cursor).items == []

    erp(server, "PUT", f"/clientes/{ids[2]}", {"razao_cliente": "Renomeado no VHSYS", "bairro_cliente": "Centro"})
    changed, cursor = drain(vhsys.pull_customers, cursor)
    assert [(c.remote_id, c.record.name, c.record.district) for c in changed] == [
        (str(ids[2]), "Renomeado no VHSYS", "Centro")]
    assert changed[0].modified_at is not None and changed[0].modified_at.utcoffset() == timedelta(hours=-3)
    assert vhsys.pull_customers(cursor).items == []


def test_pull_counter_sales_with_items_and_cursor(server, vhsys):
    def sale(total: str, items: list[tuple[str, str, str]]) -> int:
        sale_id = erp(server, "POST", "/vendas-balcao", {"id_cliente": 0, "valor_total_nota": total,
                                                         "forma_pagamento": "PIX"})["data"]["id_frente"]
        for desc, qty, price in items:
            erp(server, "POST", f"/vendas-balcao/{sale_id}/produtos",
                {"id_produto": 7, "desc_produto": desc, "qtde_produto": qty, "valor_unit_produto": price})
        return sale_id

    first_id = sale("95.00", [("Ração 1kg", "1", "45.00"), ("Petisco", "2", "25.00")])
    sales, cursor = drain(vhsys.pull_pos_sales)
    assert [(s.remote_id, s.total, s.payment_method) for s in sales] == [(str(first_id), Decimal("95.00"), "PIX")]
    assert [(i["description"], i["quantity"]) for i in sales[0].items] == [("Ração 1kg", 1), ("Petisco", 2)]
    assert vhsys.pull_pos_sales(cursor).items == []

    second_id = sale("30.00", [("Coleira", "1", "30.00")])
    more, cursor = drain(vhsys.pull_pos_sales, cursor)
    assert [s.remote_id for s in more] == [str(second_id)]
    assert vhsys.pull_pos_sales(cursor).items == []


# ---------------------------------------------------------------------- auth, faults, limits
def test_regenerated_tokens_raise_auth_error_and_the_new_pair_recovers(server, http_client, vhsys):
    vhsys.upsert_customers([(customer(50), None)])
    requests.post(server.url + "/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    with pytest.raises(AuthError) as err:
        vhsys.find_customer(customer(50))
    assert "generate a new token pair" in err.value.plain()
    with pytest.raises(AuthError):
        vhsys.test_connection()  # the old pair stays dead: VHSYS has no refresh

    renewed = build(server, http_client, state(server)["credentials"])
    assert renewed.find_customer(customer(50)) is not None


def test_one_job_overlaps_its_customer_calls_and_keeps_their_order(server, http_client):
    """push_concurrency: the calls of one batch overlap (the sandbox sees them in flight together),
    the outcomes come back in the batch's order, and a permanent error stays that record's outcome."""
    requests.post(server.url + "/__sandbox__/faults", json={"latency_ms": 40}, timeout=5)
    vhsys = build(server, http_client)
    assert vhsys.concurrency == VhsysConnector.push_concurrency == 3
    batch = [(customer(70 + n), "") for n in range(9)]
    batch[4] = (customer(74, name="  "), "")  # VHSYS refuses it: razao_cliente is required
    results = vhsys.upsert_customers(batch)
    assert isinstance(results[4], PermanentError) and "razao_cliente" in results[4].plain()
    ok = [r for i, r in enumerate(results) if i != 4]
    assert all(r.created for r in ok)
    by_id = {c["id_cliente"]: c for c in state(server)["clientes"]}
    assert [by_id[int(r.remote_id)]["razao_cliente"] for r in ok] == [f"Tutor {70 + n}" for n in range(9) if n != 4]
    assert stats(server)["max_inflight"] == 3
    serial = build(server, http_client, push_concurrency="1")
    requests.post(server.url + "/__sandbox__/reset", timeout=5)
    requests.post(server.url + "/__sandbox__/faults", json={"latency_ms": 40}, timeout=5)
    serial.upsert_customers([(customer(80 + n), "") for n in range(4)])
    assert stats(server)["max_inflight"] == 1


def test_an_overlapped_batch_stops_on_a_transient_error_and_a_rerun_duplicates_nothing(server, http_client):
    vhsys = build(server, http_client)
    records = [customer(90 + n) for n in range(12)]
    requests.post(server.url + "/__sandbox__/faults", json={"error_rate": 1.0}, timeout=5)
    with pytest.raises(TransientError):
        vhsys.upsert_customers([(r, None) for r in records])
    requests.post(server.url + "/__sandbox__/faults", json={"error_rate": 0.0}, timeout=5)
    results = vhsys.upsert_customers([(r, None) for r in records])  # the retry searches first (hint None)
    assert all(not isinstance(r, Exception) for r in results)
    stored = [c["cnpj_cliente"] for c in state(server)["clientes"]]
    assert len(stored) == 12 and len(set(stored)) == 12


def test_transient_errors_are_absorbed_and_nothing_is_duplicated(server, http_client, vhsys):
    requests.post(server.url + "/__sandbox__/faults", json={"error_rate": 0.3, "seed": 7}, timeout=5)
    records = [customer(60 + n) for n in range(20)]

    def as_a_job_would(action):
        """The job queue re-runs a job that failed with a retryable error."""
        for _ in range(6):
            try:
                return action()
            except TransientError:
                continue
        raise AssertionError("still failing after 6 job attempts")

    results = [as_a_job_would(lambda r=r: vhsys.upsert_customers([(r, None)])[0]) for r in records]
    assert all(not isinstance(r, Exception) for r in results)
    stored = [c["cnpj_cliente"] for c in state(server)["clientes"]]
    assert len(stored) == 20 and len(set(stored)) == 20

    inv = invoice(records[0], "inv-60", installments=3)
    financial = as_a_job_would(lambda: vhsys.push_invoice(inv, results[0].remote_id))
    assert len(state(server)["ordens_servico"]) == 1 and len(state(server)["contas_receber"]) == 3
    assert len(financial.receivable_remote_ids) == 3


def test_four_workers_share_one_rate_limit_budget(serve_sandbox_process, redis_client):
    """Four workers (threads here) on one account never exceed its limit at the ERP. The sandbox
    runs in its own process: in this one, its clock would be read whenever its thread got the
    interpreter lock from the four senders, tens of milliseconds late on a loaded machine."""
    server = serve_sandbox_process("vhsys", rate_limit=scaled_limits(SCALE))
    total, workers = 200, 4
    records = [customer(1000 + n) for n in range(total)]
    errors: list[BaseException] = []

    def worker(chunk: list[CustomerRecord]) -> None:
        client = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
        try:
            connector = build(server, client)
            for outcome in connector.upsert_customers([(r, None) for r in chunk]):
                if isinstance(outcome, Exception):
                    errors.append(outcome)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(records[i::workers],)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert stats(server)["over_limit"] == 0
    stored = {c["cnpj_cliente"] for c in state(server)["clientes"]}
    assert len(state(server)["clientes"]) == total and len(stored) == total

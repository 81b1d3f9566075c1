"""Gestão Click connector against its sandbox on loopback, with the real Redis limiter."""
from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.base import (
    COMPARED_CUSTOMER_FIELDS, AuthError, Capability, ConnectorContext, CustomerRecord, FiscalState, Installment, InvoiceItem, InvoiceRecord,
    NotFoundError, NotSupported, PermanentError, PushResult, TransientError,
)
from integrations.gestaoclick import GestaoClickConnector, mapping
from integrations.gestaoclick.client import decode_cursor
from integrations.gestaoclick.sandbox import DEMO_CREDENTIALS, DOCUMENTED_RATE_LIMIT, LIMIT_MESSAGE, Sandbox
from integrations.http import HttpClient

SCALE = 20  # the sandbox and the connector both allow 20x the documented limits, so runs stay short

SETUP = {"os_situacao_id": "11", "plano_contas_id": "41", "conta_bancaria_id": "31", "forma_pagamento_id": "23",
         "payment_method_ids": "Dinheiro=21; PIX=22; Boleto=23; Cartão de Crédito=24",
         "nfse_codigo_atividade": "0501", "nfse_cidade_incidencia": "São Paulo", "nfse_estado_incidencia": "SP"}


def scaled_limits(scale: float) -> list[tuple[int, float]]:
    return [(int(n * scale), seconds) for n, seconds in DOCUMENTED_RATE_LIMIT]


def make_cpf(n: int) -> str:
    """A valid CPF built from a 9-digit base (check digits per Receita Federal's rule)."""
    base = [int(c) for c in f"{n:09d}"]
    for weight_start in (10, 11):
        total = sum(d * (weight_start - i) for i, d in enumerate(base))
        rest = total % 11
        base.append(0 if rest < 2 else 11 - rest)
    return "".join(map(str, base))


def person(cpf: str = "52998224725", name: str = "Maria da Silva", **overrides) -> CustomerRecord:
    fields = dict(id="tp-" + cpf, person_type="PF", name=name, tax_id=cpf, email="maria@example.com",
                  phone="11987654321", zip_code="01310100", street="Avenida Paulista", number="1000",
                  complement="ap 12", district="Bela Vista", city="São Paulo", city_ibge_code="3550308", state="SP")
    fields.update(overrides)
    return CustomerRecord(**fields)


def invoice_for(customer: CustomerRecord, inv_id: str = "inv-1", number: str = "501",
                amounts=("100.00", "100.00", "50.00"), methods=("PIX", "Boleto", "Cartão de Crédito"),
                kind: str = "service") -> InvoiceRecord:
    issue = date(2025, 3, 10)
    installments = [Installment(number=i + 1, due_date=issue + timedelta(days=30 * (i + 1)), amount=Decimal(a),
                                payment_method=m) for i, (a, m) in enumerate(zip(amounts, methods))]
    items = [InvoiceItem("Consulta veterinária", Decimal("1"), Decimal("150.00")),
             InvoiceItem("Vacina V10", Decimal("2"), Decimal("50.00"))]
    return InvoiceRecord(id=inv_id, number=number, customer=customer, issue_date=issue, items=items,
                         installments=installments, kind=kind, notes="Paciente: Rex")


def connector(server, http, credentials=None, **settings) -> GestaoClickConnector:
    all_settings = {"base_url": server.url, "rate_limit_scale": str(SCALE), **SETUP, **settings}
    return GestaoClickConnector(ConnectorContext(credentials=dict(credentials or DEMO_CREDENTIALS),
                                                 settings=all_settings, http=http, account_key="test-acct"))


def stats(server) -> dict:
    return requests.get(server.url + "/__sandbox__/stats", timeout=5).json()


@pytest.fixture
def env(serve_sandbox, http_client):
    """A scaled sandbox on loopback and a connector for the demo company."""
    app = Sandbox(rate_limit=scaled_limits(SCALE))
    server = serve_sandbox(app)
    return app, server, connector(server, http_client)


def customers_with(app: Sandbox, tax_digits: str) -> list[dict]:
    return [c for c in app.state()["clientes"]
            if "".join(ch for ch in c["cpf"] + c["cnpj"] if ch.isalnum()).upper() == tax_digits]


# --------------------------------------------------------------------------- connection & limits
def test_connection_accepts_demo_credentials_and_refuses_wrong_ones(env, http_client):
    app, server, gc = env
    assert "Clínica Demo" in gc.test_connection()
    assert "Clínica Demo" in connector(server, http_client, base_url=server.url + "/api").test_connection()
    wrong = connector(server, http_client, credentials={"access_token": "nope-1234", "secret_access_token": "x-5678"})
    with pytest.raises(AuthError) as err:
        wrong.test_connection()
    assert "new tokens" in err.value.plain()
    with pytest.raises(PermanentError) as err:
        connector(server, http_client, base_url=server.url + "/v2").test_connection()
    assert "base URL" in err.value.plain()


def test_connection_refuses_an_order_status_that_launches_receivables(env, http_client):
    app, server, _ = env
    with pytest.raises(PermanentError) as err:
        connector(server, http_client, os_situacao_id="12").test_connection()
    assert "launches receivables" in err.value.plain()


def test_sandbox_enforces_documented_limits_by_default_and_counts_excess(serve_sandbox):
    app = Sandbox()
    server = serve_sandbox(app)
    assert app.faults.rate_limit == DOCUMENTED_RATE_LIMIT
    assert GestaoClickConnector.rate_limit.windows == tuple(DOCUMENTED_RATE_LIMIT)
    headers = {"access-token": DEMO_CREDENTIALS["access_token"],
               "secret-access-token": DEMO_CREDENTIALS["secret_access_token"]}
    answers = [requests.get(server.url + "/clientes", headers=headers, timeout=5) for _ in range(6)]
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) >= 3
    assert refused[0].json()["data"]["mensagem"] == LIMIT_MESSAGE
    assert stats(server)["over_limit"] == len(refused)


# --------------------------------------------------------------------------- customers
def test_create_customer_sends_gestaoclick_fields(env):
    app, server, gc = env
    result = gc.create_customer(person())
    assert result.created and result.remote_id
    stored = app.clientes[result.remote_id]
    assert stored["cpf"] == "529.982.247-25" and stored["tipo_pessoa"] == "PF"
    assert stored["enderecos"][0]["endereco"]["cep"] == "01310-100"
    assert stored["enderecos"][0]["endereco"]["nome_cidade"] == "São Paulo"
    back = gc.get_customer(result.remote_id).record
    assert (back.tax_id, back.zip_code, back.street, back.city, back.state) == (
        "52998224725", "01310100", "Avenida Paulista", "São Paulo", "SP")

    company = person("12ABC34501DE35", name="Pet Shop Ltda", person_type="PJ", id="tp-pj")
    pj = gc.create_customer(company)
    assert app.clientes[pj.remote_id]["cnpj"] == "12.ABC.345/01DE-35"
    assert app.clientes[pj.remote_id]["razao_social"] == "Pet Shop Ltda"
    assert gc.find_customer(company).remote_id == pj.remote_id


def test_update_of_a_changed_customer_keeps_what_only_the_erp_holds(env):
    app, server, gc = env
    remote_id = gc.create_customer(person()).remote_id
    app.erp_user_edits_customer(remote_id, rg="12.345.678-9", celular="(11) 91234-5678")
    gc.update_customer(remote_id, person(email="maria.nova@example.com", street="Rua Augusta"))
    stored = app.clientes[remote_id]
    assert stored["email"] == "maria.nova@example.com"
    assert stored["enderecos"][0]["endereco"]["logradouro"] == "Rua Augusta"
    assert stored["rg"] == "12.345.678-9" and stored["celular"] == "(11) 91234-5678"

    puts = stats(server)["by_route"].get("PUT /clientes/<cid>", 0)
    gc.update_customer(remote_id, person(email="maria.nova@example.com", street="Rua Augusta"))
    assert stats(server)["by_route"].get("PUT /clientes/<cid>", 0) == puts  # nothing changed: no PUT


def test_repush_of_the_same_customer_finds_the_existing_record(env):
    app, server, gc = env
    first = gc.upsert_customers([(person(), None)])[0]
    second = gc.upsert_customers([(person(tax_id="529.982.247-25", phone="11911112222"), None)])[0]
    assert isinstance(first, PushResult) and first.created
    assert isinstance(second, PushResult) and not second.created
    assert second.remote_id == first.remote_id
    assert len(customers_with(app, "52998224725")) == 1
    assert app.clientes[first.remote_id]["telefone"] == "11911112222"

    no_tax_id = person("", name="João Conceição", email="joao@example.com", id="tp-joao")
    created = gc.upsert_customers([(no_tax_id, None)])[0]
    again = gc.upsert_customers([(no_tax_id, None)])[0]
    assert again.remote_id == created.remote_id and not again.created
    assert sum(1 for c in app.state()["clientes"] if c["nome"] == "João Conceição") == 1


def test_erp_validation_refusal_becomes_a_plain_permanent_error(env):
    app, server, gc = env
    with pytest.raises(PermanentError) as err:
        gc.create_customer(person("52998224724"))
    assert not isinstance(err.value, NotFoundError)
    assert err.value.status == 404
    plain = err.value.plain()
    assert "CPF inválido" in plain and "tax_id" in plain
    assert "{" not in plain and "Not Found" not in plain

    with pytest.raises(PermanentError) as err:
        gc.create_customer(person(name=" "))
    assert "O campo nome é obrigatório" in err.value.plain() and "name" in err.value.plain()

    outcome = gc.upsert_customers([(person("11111111111"), None), (person(), None)])
    assert isinstance(outcome[0], PermanentError) and isinstance(outcome[1], PushResult)
    assert len(app.clientes) == 1


# --------------------------------------------------------------------------- financial
def test_invoice_becomes_service_order_with_installments_and_receivables(env):
    app, server, gc = env
    customer_id = gc.create_customer(person()).remote_id
    invoice = invoice_for(person())
    result = gc.push_invoice(invoice, customer_id)

    order = app.ordens[result.order_remote_id]
    assert result.order_number == order["codigo"] == "1"
    assert order["cliente_id"] == customer_id and order["valor_total"] == "250.00"
    assert [p["pagamento"]["valor"] for p in order["pagamentos"]] == ["100.00", "100.00", "50.00"]
    assert order["condicao_pagamento"] == "parcelado"
    receivables = [app.recebimentos[r] for r in result.receivable_remote_ids]
    assert [r["valor"] for r in receivables] == ["100.00", "100.00", "50.00"]
    assert [r["forma_pagamento_id"] for r in receivables] == ["22", "23", "24"]
    assert [r["data_vencimento"] for r in receivables] == [i.due_date.isoformat() for i in invoice.installments]
    assert all(r["cliente_id"] == customer_id and r["liquidado"] == "0" for r in receivables)

    assert gc.push_invoice(invoice, customer_id) == result  # a re-push adopts what exists
    assert gc.find_invoice(invoice) == result
    assert len(app.ordens) == 1 and len(app.recebimentos) == 3

    other = gc.push_invoice(invoice_for(person(), inv_id="inv-2", number="502"), customer_id)
    assert other.order_number == "2"
    assert gc.find_invoice(invoice_for(person(), inv_id="inv-404")) is None


def test_invoice_push_resumes_after_a_crash_between_receivables(env):
    app, server, gc = env
    customer_id = gc.create_customer(person()).remote_id
    invoice = invoice_for(person())
    first = gc.push_invoice(invoice, customer_id)
    with app.lock:  # as if the worker died before creating the third receivable
        del app.recebimentos[first.receivable_remote_ids[2]]
    resumed = gc.push_invoice(invoice, customer_id)
    assert resumed.order_remote_id == first.order_remote_id
    assert resumed.receivable_remote_ids[:2] == first.receivable_remote_ids[:2]
    assert len(app.ordens) == 1 and len(app.recebimentos) == 3


def test_installments_that_do_not_add_up_are_refused_in_plain_words(env, http_client):
    app, server, gc = env
    customer_id = gc.create_customer(person()).remote_id
    with pytest.raises(PermanentError) as err:
        gc.push_invoice(invoice_for(person(), amounts=("100.00", "100.00", "10.00")), customer_id)
    assert "O valor do pedido não pode ser diferente do valor das parcelas" in err.value.plain()
    assert "installments" in err.value.plain()
    assert not app.ordens and not app.recebimentos

    unset = connector(server, http_client, plano_contas_id="")
    with pytest.raises(PermanentError) as err:
        unset.push_invoice(invoice_for(person()), customer_id)
    assert "plano_contas_id" in err.value.plain()


def test_settling_a_receivable_sends_the_whole_record_marked_paid(env):
    app, server, gc = env
    customer_id = gc.create_customer(person()).remote_id
    result = gc.push_invoice(invoice_for(person()), customer_id)
    first, second = result.receivable_remote_ids[:2]
    description = app.recebimentos[first]["descricao"]

    gc.settle_receivable(first, Decimal("105.00"), date(2025, 4, 12))
    settled = app.recebimentos[first]
    assert settled["liquidado"] == "1" and settled["data_liquidacao"] == "2025-04-12"
    assert settled["juros"] == "5.00" and settled["valor_total"] == "105.00"
    assert settled["descricao"] == description and settled["plano_contas_id"] == "41"

    puts = stats(server)["by_route"].get("PUT /recebimentos/<rid>", 0)
    gc.settle_receivable(first, Decimal("105.00"), date(2025, 4, 12))
    assert stats(server)["by_route"].get("PUT /recebimentos/<rid>", 0) == puts

    with pytest.raises(PermanentError) as err:
        gc.settle_receivable(second, Decimal("40.00"), date(2025, 4, 12))
    assert "partial payment" in err.value.plain()
    assert app.recebimentos[second]["liquidado"] == "0"


# --------------------------------------------------------------------------- NFS-e
def outcome_of(gc: GestaoClickConnector, note_id: str):
    """Poll like the sync layer does; the city hall answers on a later read."""
    readings = [gc.invoice_status(note_id)]
    while readings[-1].state == FiscalState.PENDING and len(readings) < 5:
        readings.append(gc.invoice_status(note_id))
    return readings


def test_nfse_is_created_sent_and_tracked_until_authorised(env):
    app, server, gc = env
    customer_id = gc.create_customer(person()).remote_id
    invoice = invoice_for(person())
    financial = gc.push_invoice(invoice, customer_id)

    sent = gc.issue_invoice(invoice, financial, customer_id)
    assert sent.state == FiscalState.PENDING and sent.remote_id
    note = app.nfse[sent.remote_id]
    assert note["valor_servico"] == "250.00" and note["codigo_atividade"] == "0501"
    assert note["destinatario_id_cliente"] == customer_id

    readings = outcome_of(gc, sent.remote_id)
    assert readings[0].state == FiscalState.PENDING  # still with the city hall on the first read
    done = readings[-1]
    assert done.state == FiscalState.ISSUED and done.number and done.access_key
    again = gc.issue_invoice(invoice, financial, customer_id)
    assert again.state == FiscalState.ISSUED and again.remote_id == sent.remote_id
    assert len(app.nfse) == 1

    with pytest.raises(NotSupported):
        gc.issue_invoice(invoice_for(person(), inv_id="inv-p", kind="product"), financial, customer_id)


def test_rejected_nfse_reports_the_reason_and_is_resent_after_the_fix(env):
    app, server, gc = env
    bare = person(zip_code="", street="", number="", complement="", district="", city="", state="")
    customer_id = gc.create_customer(bare).remote_id
    invoice = invoice_for(bare)
    financial = gc.push_invoice(invoice, customer_id)

    sent = gc.issue_invoice(invoice, financial, customer_id)
    rejected = outcome_of(gc, sent.remote_id)[-1]
    assert rejected.state == FiscalState.REJECTED
    assert "Endereço do tomador incompleto" in rejected.message

    gc.update_customer(customer_id, person())
    resent = gc.issue_invoice(invoice, financial, customer_id)
    assert resent.remote_id == sent.remote_id and resent.state == FiscalState.PENDING
    assert outcome_of(gc, sent.remote_id)[-1].state == FiscalState.ISSUED
    assert len(app.nfse) == 1


# --------------------------------------------------------------------------- pulls
def test_customer_pull_continues_its_cursor_and_never_redelivers(env, http_client):
    app, server, _ = env
    gc = connector(server, http_client, pull_pages_per_call="1")
    for i in range(150):
        app.erp_user_adds_customer(tipo_pessoa="PF", nome=f"Tutor {i}", cpf=make_cpf(200000000 + i * 7919))

    first = gc.pull_customers(None)
    second = gc.pull_customers(first.cursor)
    assert (len(first.items), first.more, len(second.items), second.more) == (100, True, 50, False)
    delivered = {c.remote_id for c in first.items + second.items}
    assert len(delivered) == 150

    quiet = gc.pull_customers(second.cursor)
    quiet = gc.pull_customers(quiet.cursor) if quiet.more else quiet
    assert quiet.items == []

    some_id = first.items[10].remote_id
    app.erp_user_edits_customer(some_id, nome="Tutor renomeado")
    app.erp_user_edits_customer(first.items[11].remote_id, rg="99.999.999-9")  # not a field TecPet reads
    added = app.erp_user_adds_customer(tipo_pessoa="PF", nome="Tutor novo", cpf="52998224725")
    changed, cursor = [], quiet.cursor
    for _ in range(3):
        page = gc.pull_customers(cursor)
        changed += page.items
        cursor = page.cursor
    assert sorted(c.remote_id for c in changed) == sorted([some_id, added["id"]])
    assert next(c for c in changed if c.remote_id == some_id).record.name == "Tutor renomeado"
    assert len(decode_cursor(cursor)["seen"]) == 151


def test_receipt_pull_brings_each_payment_back_once(env):
    app, server, gc = env
    customer_id = gc.create_customer(person()).remote_id
    ids = gc.push_invoice(invoice_for(person()), customer_id).receivable_remote_ids
    assert gc.pull_receipts(None).items == []

    gc.settle_receivable(ids[0], Decimal("100.00"), date(2025, 4, 10))
    app.erp_user_settles(ids[1], "2025-05-09")
    page = gc.pull_receipts(None)
    by_id = {r.remote_id: r for r in page.items}
    assert set(by_id) == {ids[0], ids[1]}
    assert by_id[ids[0]].amount == Decimal("100.00") and by_id[ids[0]].paid_at == date(2025, 4, 10)
    assert by_id[ids[1]].paid_at == date(2025, 5, 9) and by_id[ids[1]].customer_remote_id == customer_id
    assert by_id[ids[1]].payment_method == "Boleto"

    assert gc.pull_receipts(page.cursor).items == []
    app.erp_user_settles(ids[2], "2025-06-08")
    later = gc.pull_receipts(page.cursor)
    assert [r.remote_id for r in later.items] == [ids[2]]


def test_counter_sale_pull_sees_new_and_changed_sales_only(env):
    app, server, gc = env
    recent = [app.erp_user_sells_at_counter(total) for total in ("35.90", "120.00", "8.50")]
    app.erp_user_sells_at_counter("99.00", sold_on=(date.today() - timedelta(days=60)).isoformat())

    page = gc.pull_pos_sales(None)
    assert sorted(s.remote_id for s in page.items) == sorted(s["id"] for s in recent)
    sale = next(s for s in page.items if s.remote_id == recent[1]["id"])
    assert sale.total == Decimal("120.00") and sale.payment_method == "PIX"
    assert sale.items[0]["description"] == "Ração 1kg"

    assert gc.pull_pos_sales(page.cursor).items == []
    app.erp_user_edits_sale(recent[0]["id"], nome_situacao="Cancelada")
    newer = app.erp_user_sells_at_counter("15.00", forma="Dinheiro")
    changed = gc.pull_pos_sales(page.cursor)
    assert sorted(s.remote_id for s in changed.items) == sorted([recent[0]["id"], newer["id"]])
    assert gc.pull_pos_sales(changed.cursor).items == []


# --------------------------------------------------------------------------- auth and faults
def test_revoked_tokens_raise_auth_error_and_new_tokens_recover(env, http_client):
    app, server, gc = env
    remote_id = gc.create_customer(person()).remote_id
    requests.post(server.url + "/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    before = stats(server)["requests"]
    with pytest.raises(AuthError):
        gc.get_customer(remote_id)
    assert stats(server)["requests"] == before + 1  # a refusal of the tokens is not retried
    with pytest.raises(AuthError):
        gc.test_connection()

    # Static tokens cannot be refreshed: the owner generates a new pair and support saves it.
    fresh = connector(server, http_client, credentials=app.issue_tokens())
    assert fresh.get_customer(remote_id).record.name == "Maria da Silva"


def test_transient_faults_and_lost_answers_still_land_everything_once(serve_sandbox, http_client):
    app = Sandbox(rate_limit=scaled_limits(SCALE), error_rate=0.3, lost_response_rate=0.3, seed=11)
    server = serve_sandbox(app)
    gc = connector(server, http_client)
    people = [person(make_cpf(300000000 + i * 104729), name=f"Cliente {i}", id=f"tp-{i}") for i in range(15)]

    def until_done(action):
        """What the sync layer does with a TransientError: run the same job again later."""
        for _ in range(20):
            try:
                return action()
            except TransientError:
                continue
        raise AssertionError("never landed")

    bindings = {}
    for record in people:
        outcome = until_done(lambda: gc.upsert_customers([(record, bindings.get(record.id))])[0])
        assert isinstance(outcome, PushResult)
        bindings[record.id] = outcome.remote_id
    for i, record in enumerate(people[:3]):
        until_done(lambda: gc.push_invoice(invoice_for(record, inv_id=f"inv-{i}", number=str(700 + i)),
                                           bindings[record.id]))

    state = app.state()
    assert len(state["clientes"]) == 15
    assert all(len(customers_with(app, r.tax_id)) == 1 for r in people)
    assert len(state["ordens_servicos"]) == 3 and len(state["recebimentos"]) == 9
    counters = stats(server)
    assert counters["errors_injected"] > counters["lost_responses"] > 0  # both kinds of fault really bit


def test_four_workers_share_one_rate_budget(serve_sandbox, redis_client):
    app = Sandbox(rate_limit=scaled_limits(SCALE))
    server = serve_sandbox(app)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        client = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
        try:
            gc = connector(server, client)
            batch = [(person(make_cpf(400000000 + (n * 50 + i) * 6007), name=f"Tutor {n}-{i}", id=f"w{n}-{i}"),
                      None) for i in range(50)]
            for start in range(0, 50, 10):
                outcome = gc.upsert_customers(batch[start:start + 10])
                errors.extend(o for o in outcome if not isinstance(o, PushResult))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert stats(server)["over_limit"] == 0
    assert len({c["cpf"] for c in app.state()["clientes"]}) == 200 == len(app.clientes)


def test_declarations_match_what_is_implemented():
    caps = GestaoClickConnector.capabilities
    assert Capability.WEBHOOKS not in caps  # the public API has none: changes are polled
    assert {Capability.PUSH_CUSTOMERS, Capability.GENERATE_FINANCIAL, Capability.ISSUE_INVOICE,
            Capability.TRACK_INVOICE, Capability.SETTLE_RECEIVABLE, Capability.PULL_CUSTOMERS,
            Capability.PULL_RECEIPTS, Capability.PULL_POS_SALES} <= caps
    defaults = {f.name: f.default for f in GestaoClickConnector.setting_fields}
    assert defaults["base_url"] == "https://api.gestaoclick.com/api"


@settings(max_examples=60, deadline=None)
@given(amount=st.decimals(min_value=0, max_value=10_000_000, places=2, allow_nan=False, allow_infinity=False))
def test_money_reads_back_in_every_spelling_the_erp_uses(amount):
    plain = f"{amount:.2f}"
    whole, cents = plain.split(".")
    brazilian = f"{int(whole):,}".replace(",", ".") + "," + cents
    assert mapping.parse_money(plain) == mapping.parse_money(brazilian) == amount


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=100_000_000, max_value=999_999_998), number=st.text("0123456789", min_size=1, max_size=5))
def test_customer_fields_survive_the_round_trip_through_erp_shapes(n, number):
    original = person(make_cpf(n), number=number)
    back = mapping.customer_from_gc(mapping.customer_payload(original))
    assert all(getattr(back, f) == getattr(original, f) for f in COMPARED_CUSTOMER_FIELDS)

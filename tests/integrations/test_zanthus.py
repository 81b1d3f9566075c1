"""Zanthus connector against its sandbox on loopback, with the real Redis and HTTP client."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import requests

from integrations.base import (AuthError, Capability, ConnectorContext, CustomerRecord, InvoiceRecord, NotSupported,
                               PermanentError, PushResult, TransientError, capability_panel)
from integrations.http import HttpClient
from integrations.zanthus import ZanthusConnector
from integrations.zanthus.sandbox import DEMO_CREDENTIALS, Sandbox

SCALE = 20          # documented budget (5/s) x 20 keeps the load tests short
STORE_TZ = ZoneInfo("America/Sao_Paulo")


def cpf(n: int) -> str:
    """A valid CPF built from a sequence number (check digits computed as the Receita does)."""
    base = [int(d) for d in f"{100000000 + n:09d}"[-9:]]
    for length in (9, 10):
        total = sum(d * w for d, w in zip(base, range(length + 1, 1, -1)))
        remainder = total % 11
        base.append(0 if remainder < 2 else 11 - remainder)
    return "".join(map(str, base))


def customer(n: int, **changes) -> CustomerRecord:
    data = dict(id=f"tp-{n}", person_type="PF", name=f"Tutor {n}", tax_id=cpf(n), email=f"tutor{n}@example.com",
                phone="11987654321", zip_code="01310100", street="Avenida Paulista", number=str(100 + n),
                district="Bela Vista", city="São Paulo", city_ibge_code="3550308", state="SP")
    data.update(changes)
    return CustomerRecord(**data)


def make_sandbox(**kwargs) -> Sandbox:
    kwargs.setdefault("rate_limit", [(5 * SCALE, 1.0)])
    return Sandbox(demo_sales=False, **kwargs)


def connect(server, http, credentials=None, **settings) -> ZanthusConnector:
    values = {"base_url": server.url, "rate_limit_scale": str(SCALE), "pos_lookback_days": "0"}
    values.update(settings)
    creds = dict(DEMO_CREDENTIALS if credentials is None else credentials)
    return ZanthusConnector(ConnectorContext(credentials=creds, settings=values, http=http, account_key="test-acct"))


def clientes(server) -> list[dict]:
    return requests.get(f"{server.url}/__sandbox__/state", timeout=5).json()["clientes"]


def stats(server) -> dict:
    return requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()


def store_today():
    return datetime.now(STORE_TZ).date()


# --------------------------------------------------------------------------- connection and auth
def test_connection_with_demo_credentials_and_auth_error_with_wrong_ones(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    assert "Zanthus Manager" in connect(server, http_client).test_connection()
    wrong = connect(server, http_client, credentials=dict(DEMO_CREDENTIALS, senha="wrong"))
    with pytest.raises(AuthError) as caught:
        wrong.test_connection()
    assert "Usuário ou senha inválidos" in caught.value.plain()


def test_expired_session_logs_in_again_and_saves_it(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    saved = []
    connector = connect(server, http_client)
    connector.ctx.save_credentials = saved.append
    connector.create_customer(customer(1))
    first_session = connector.ctx.credentials["session_id"]
    requests.post(f"{server.url}/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    connector.update_customer(cpf(1), customer(1, name="Tutor Renomeado"))
    assert app.logins == 2
    assert connector.ctx.credentials["session_id"] != first_session
    assert [s["session_id"] for s in saved] == [first_session, connector.ctx.credentials["session_id"]]
    assert clientes(server)[0]["DES_CLIENTE"] == "Tutor Renomeado"


def test_session_lifetime_runs_out_and_is_renewed(serve_sandbox, http_client):
    app = make_sandbox(session_ttl=0.3)
    server = serve_sandbox(app)
    connector = connect(server, http_client)
    connector.test_connection()
    threading.Event().wait(0.4)
    connector.test_connection()
    assert app.logins == 2


def test_expired_session_with_revoked_password_is_an_auth_error(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    connector = connect(server, http_client)
    connector.test_connection()
    app.credentials["senha"] = "changed-in-zanthus"
    requests.post(f"{server.url}/__sandbox__/faults", json={"expire_tokens": True}, timeout=5)
    with pytest.raises(AuthError):
        connector.create_customer(customer(2))
    assert clientes(server) == []


def test_basic_auth_mode_for_on_premise_managers(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox(auth="basic"))
    connect(server, http_client, auth_mode="basic").create_customer(customer(3))
    assert len(clientes(server)) == 1
    with pytest.raises(AuthError):
        connect(server, http_client, credentials=dict(DEMO_CREDENTIALS, senha="x"), auth_mode="basic").test_connection()


# --------------------------------------------------------------------------- customers
def test_create_customer_sends_every_obligatory_field(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    result = connect(server, http_client).create_customer(customer(4))
    assert result.created and result.remote_id == cpf(4)
    [stored] = clientes(server)
    assert stored["COD_CLIENTE"] == cpf(4) and stored["NUM_CGC"] == cpf(4)
    assert stored["COD_CLIENTE_INTEGRACAO"] == "tp-4"
    assert stored["NUM_INSC_EST"] == "ISENTO" and stored["ID_MUNICIPIO"] == "3550308"
    assert (stored["DES_CIDADE"], stored["DES_SIGLA"], stored["NUM_CEP"]) == ("São Paulo", "SP", "01310100")


def test_update_of_a_changed_record(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client, municipio_map='{"3550308": "3896"}', ascii_only="1")
    created = connector.create_customer(customer(5))
    updated = connector.update_customer(created.remote_id, customer(5, street="Rua Augusta", number="S/N"))
    assert not updated.created
    [stored] = clientes(server)
    assert (stored["DES_ENDERECO"], stored["NUMERO"], stored["ID_MUNICIPIO"]) == ("Rua Augusta", "S/N", "3896")
    assert stored["DES_CIDADE"] == "Sao Paulo"
    assert connector.get_customer(created.remote_id).record.city_ibge_code == "3550308"


def test_repush_finds_the_existing_record_and_keeps_one(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    [first] = connector.upsert_customers([(customer(6), None)])
    [second] = connector.upsert_customers([(customer(6, email="novo@example.com"), None)])
    assert first.created and not second.created and first.remote_id == second.remote_id
    found = connector.find_customer(customer(6))
    connector.update_customer(found.remote_id, customer(6, email="novo@example.com", phone="1133334444"))
    rows = [c for c in clientes(server) if c["NUM_CGC"] == cpf(6)]
    assert len(rows) == 1 and rows[0]["DES_EMAIL"] == "novo@example.com" and rows[0]["NUM_FONE"] == "1133334444"


def test_customer_registered_at_the_store_is_adopted_not_duplicated(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    app.clientes["777"] = {"COD_CLIENTE": "777", "DES_CLIENTE": "TUTOR 7", "NUM_CGC": cpf(7)}
    [result] = connect(server, http_client).upsert_customers([(customer(7), None)])
    assert result.remote_id == "777" and not result.created
    rows = [c for c in clientes(server) if c["NUM_CGC"] == cpf(7)]
    assert len(rows) == 1 and rows[0]["DES_CLIENTE"] == "Tutor 7"


def test_invalid_cpf_is_a_permanent_error_in_plain_words(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    with pytest.raises(PermanentError) as caught:
        connect(server, http_client).create_customer(customer(8, tax_id="52998224724"))
    text = caught.value.plain()
    assert "CPF/CNPJ inválido" in text and "tax_id" in text and "52998224724" in text
    assert clientes(server) == []


def test_missing_obligatory_field_names_the_canonical_field(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    with pytest.raises(PermanentError) as caught:
        connect(server, http_client).create_customer(customer(9, district=""))
    assert "district" in caught.value.plain() and "Campo obrigatório" in caught.value.plain()


def test_batch_with_one_bad_record_gives_each_record_its_outcome(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    batch = [(customer(10), None), (customer(11, zip_code=""), None), (customer(12), None)]
    good, bad, other = connect(server, http_client).upsert_customers(batch)
    assert isinstance(good, PushResult) and isinstance(other, PushResult)
    assert isinstance(bad, PermanentError) and "zip_code" in bad.plain()
    assert sorted(c["NUM_CGC"] for c in clientes(server)) == sorted([cpf(10), cpf(12)])


def test_unexpected_select_wrapper_is_explained(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox(customer_wrapper="PESSOAS/PESSOA"))
    with pytest.raises(PermanentError) as caught:
        connect(server, http_client).find_customer(customer(13))
    assert "customer_select_wrapper" in caught.value.plain()
    assert connect(server, http_client, customer_select_wrapper="PESSOAS/PESSOA").find_customer(customer(13)) is None


# --------------------------------------------------------------------------- POS sales
def test_unacknowledged_sales_come_back_after_a_crash(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    today = store_today()
    first = app.add_movement(day=today, hour="0930", items=[("789100", "1", "25.00")], tenders=[("1", "25.00")])
    second = app.add_movement(day=today, hour="1000", items=[("789200", "2", "30.00")], tenders=[("2", "30.00")])
    connector = connect(server, http_client)
    page = connector.pull_pos_sales(None)
    assert [s.remote_id for s in page.items] == [first, second]
    # the worker dies before storing: the next run starts from the same (old) cursor
    again = connect(server, http_client).pull_pos_sales(None)
    assert [s.remote_id for s in again.items] == [first, second]
    connector.acknowledge_pos_sales([s.remote_id for s in again.items])
    assert connector.pull_pos_sales(None).items == []


def test_cursor_continuation_delivers_nothing_twice(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    today = store_today()
    first = app.add_movement(day=today, hour="0800", items=[("1", "1", "10.00")], tenders=[("1", "10.00")])
    connector = connect(server, http_client)
    page = connector.pull_pos_sales(None)
    assert [s.remote_id for s in page.items] == [first] and not page.more
    # stored, acknowledgement still on its way: a continued pull does not hand it over again
    assert connector.pull_pos_sales(page.cursor).items == []
    connector.acknowledge_pos_sales([first])
    second = app.add_movement(day=today, hour="0900", items=[("2", "1", "20.00")], tenders=[("1", "20.00")])
    later = connector.pull_pos_sales(page.cursor)
    assert [s.remote_id for s in later.items] == [second]
    connector.acknowledge_pos_sales([second])
    assert connector.pull_pos_sales(later.cursor).items == []
    exported = [m["exportado"] for m in requests.get(f"{server.url}/__sandbox__/state", timeout=5).json()["movimentos"]]
    assert exported == [True, True]


def test_sale_whose_acknowledgement_was_lost_comes_once_more_when_the_window_moves_on(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    yesterday = store_today() - timedelta(days=1)
    sale = app.add_movement(day=yesterday, items=[("1", "1", "7.00")], tenders=[("1", "7.00")])
    connector = connect(server, http_client, pos_lookback_days="1")
    first = connector.pull_pos_sales(None)
    assert [s.remote_id for s in first.items] == [sale] and first.more
    # stored by the sync layer, but the acknowledgement never reached Zanthus
    second = connector.pull_pos_sales(first.cursor)
    assert [s.remote_id for s in second.items] == [sale] and second.more
    connector.acknowledge_pos_sales([sale])
    last = connector.pull_pos_sales(second.cursor)
    assert last.items == [] and not last.more


def test_pull_walks_older_windows_until_today(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    today = store_today()
    old = app.add_movement(day=today - timedelta(days=3), items=[("1", "1", "5.00")], tenders=[("1", "5.00")])
    new = app.add_movement(day=today, items=[("2", "1", "6.00")], tenders=[("1", "6.00")])
    connector = connect(server, http_client, pos_lookback_days="4", pos_window_days="2")
    cursor, delivered, pages = None, [], 0
    while True:
        page = connector.pull_pos_sales(cursor)
        delivered += [s.remote_id for s in page.items]
        connector.acknowledge_pos_sales([s.remote_id for s in page.items])
        cursor, pages = page.cursor, pages + 1
        if not page.more:
            break
    # [t-4, t-3] hands over the old sale, is read once more (nothing new: move on), then
    # [t-2, t-1] is empty, then today hands over the new sale and says there is no more
    assert delivered == [old, new] and pages == 4


def test_sale_fields_and_movements_that_are_not_sales(serve_sandbox, http_client):
    app = make_sandbox()
    server = serve_sandbox(app)
    today = store_today()
    app.add_movement(day=today, hour="0700", function="158", tenders=[("1", "100.00")])  # cash withdrawal
    sale = app.add_movement(day=today, hour="1415", document="52998224725",
                            items=[("789300", "2", "40.00"), ("789400", "1", "9.90")],
                            tenders=[("1", "20.00"), ("5", "29.90")])
    void = app.add_movement(day=today, hour="1500", items=[("789500", "1", "3.00")], tenders=[("1", "3.00")],
                            cancelled=True)
    page = connect(server, http_client, tender_names='{"1": "Dinheiro", "5": "PIX"}').pull_pos_sales(None)
    by_id = {s.remote_id: s for s in page.items}
    assert list(by_id) == [sale, void]
    sold = by_id[sale]
    assert sold.total == Decimal("49.90") and sold.payment_method == "Dinheiro + PIX"
    assert sold.customer_remote_id == "52998224725" and sold.status == "completed"
    assert sold.sold_at == datetime.combine(today, datetime.min.time().replace(hour=14, minute=15), tzinfo=STORE_TZ)
    assert [i["product_code"] for i in sold.items] == ["789300", "789400"]
    assert by_id[void].status == "cancelled"


# --------------------------------------------------------------------------- what Zanthus does not offer
def test_financial_and_invoicing_are_declared_unsupported(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox())
    connector = connect(server, http_client)
    assert ZanthusConnector.capabilities == {Capability.PUSH_CUSTOMERS, Capability.PULL_POS_SALES}
    notes = " ".join(ZanthusConnector.notes)
    assert "orders, installments or receivables" in notes and "NF-e / NFS-e" in notes
    panel = {row["capability"]: row["supported"] for row in capability_panel(ZanthusConnector)}
    assert panel["generate_financial"] is False and panel["pull_pos_sales"] is True
    invoice = InvoiceRecord(id="inv-1", number="1", customer=customer(14), issue_date=store_today(), items=[],
                            installments=[])
    with pytest.raises(NotSupported):
        connector.push_invoice(invoice, cpf(14))
    with pytest.raises(NotSupported):
        connector.settle_receivable("1", Decimal("1.00"), store_today())


# --------------------------------------------------------------------------- faults and limits
def test_transient_faults_still_land_every_customer_once(serve_sandbox, http_client):
    server = serve_sandbox(make_sandbox(error_rate=0.3, seed=11))
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
    documents = [c["NUM_CGC"] for c in clientes(server)]
    assert sorted(documents) == sorted(cpf(n) for n in range(100, 130))
    assert stats(server)["requests"] > 90  # the faults really happened and were retried


def test_four_workers_share_one_budget(serve_sandbox, redis_client):
    server = serve_sandbox(make_sandbox())
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        http = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
        try:
            connector = connect(server, http)
            records = [customer(1000 + offset * 50 + i) for i in range(50)]
            for start in range(0, 50, 10):
                outcomes = connector.upsert_customers([(r, None) for r in records[start:start + 10]])
                assert all(isinstance(o, PushResult) for o in outcomes)
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
    assert stats(server)["over_limit"] == 0
    assert stats(server)["max_inflight"] == 1
    assert len({c["NUM_CGC"] for c in clientes(server)}) == 200 == len(clientes(server))

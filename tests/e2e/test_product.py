"""The product in a real browser, in Portuguese: what support and clinic owners do with it.

Each test is one person's flow through real pages, with the real worker syncing to the VHSYS sandbox.
The screenshots in docs/screenshots/ (shown by the README) are taken along the way."""
from __future__ import annotations

import re
import time

from playwright.sync_api import expect
from sqlalchemy import select

from integrations.vhsys.sandbox import DEMO_CREDENTIALS

from .conftest import (PASSWORD, PHONE, SUPPORT_EMAIL, customer_event, customers, faults, invoice_event, log_in,
                       shot)

SECRET = DEMO_CREDENTIALS["secret_access_token"]


def enable_vhsys(page, clinic_id: int, sandbox, *, test_wrong_first: bool = False, screenshot: str | None = None):
    """Support fills in the VHSYS setup, tests the connection in place and saves it enabled."""
    page.goto(f"/c/{clinic_id}/integration/setup?erp=vhsys")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Integração VHSYS")
    page.get_by_label("Access-Token", exact=True).fill(DEMO_CREDENTIALS["access_token"])
    page.get_by_label("Secret-Access-Token").fill("not-the-secret" if test_wrong_first else SECRET)
    page.locator("details.settings summary").click()
    page.locator("#set_base_url").fill(sandbox.url)
    result = page.locator("#test-result")
    if test_wrong_first:
        page.get_by_role("button", name="Testar conexão").click()
        expect(result).to_contain_text("Falha na conexão")
        page.get_by_label("Secret-Access-Token").fill(SECRET)
    page.get_by_role("button", name="Testar conexão").click()
    expect(result).to_contain_text("Conexão OK")
    expect(page).to_have_url(re.compile(r"/integration/setup\?erp=vhsys$"))  # tested in place, nothing saved
    if screenshot:
        page.locator("details.settings summary").click()  # folded again: a shorter picture
        shot(page, screenshot)
    page.get_by_role("button", name="Salvar e ativar").click()
    expect(page).to_have_url(re.compile(rf"/c/{clinic_id}/integration$"))
    expect(page.locator(".flash.success")).to_contain_text("Integração VHSYS salva e ativada")


def progress_requests(page, run_id: int) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url) if req.url.endswith(f"/runs/{run_id}/progress") else None)
    return seen


def wait_finished(page, run_id: int, timeout: float = 60_000) -> None:
    expect(page.locator(f"#run-{run_id}-progress")).to_have_attribute(
        "data-status", re.compile("succeeded|partial|failed"), timeout=timeout)


def latest_run(stack, clinic_id: int, **where):
    from webapp.models import SyncRun

    def q(session):
        query = select(SyncRun).where(SyncRun.clinic_id == clinic_id)
        for key, value in where.items():
            query = query.where(getattr(SyncRun, key) == value)
        run = session.scalars(query.order_by(SyncRun.id.desc()).limit(1)).first()
        return None if run is None else {c: getattr(run, c) for c in ("id", "status", "total", "done", "created",
                                                                       "updated", "unchanged", "skipped", "failed")}
    return stack.query(q)


# --------------------------------------------------------------------------- language
def test_portuguese_by_default_and_english_on_request(stack, new_page):
    clinic = stack.clinic("Clínica Veterinária Quatro Patas", "dona@quatropatas.test")
    page = new_page()
    page.goto("/login")
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    expect(page.get_by_role("heading", level=1)).to_have_text("Entrar")
    shot(page, "01-login")
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    assert "lang=" not in page.url  # the switch leaves a clean address
    # keyboard only: the e-mail field has the focus, Tab reaches the password, Enter sends
    page.keyboard.type(clinic["owner"])
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/c/{clinic['id']}/$"))
    expect(page.get_by_role("heading", name="Integration status")).to_be_visible()
    expect(page.get_by_text("No integration yet. Contact TecPet support to connect your ERP.")).to_be_visible()
    page.goto(f"/c/{clinic['id']}/runs")  # the choice stays for the session
    expect(page.get_by_role("heading", level=1)).to_have_text("Sync history")
    page.get_by_role("link", name="Português").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Histórico de sincronização")
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    # the choice is remembered after logging out too (cookie)
    page.get_by_role("link", name="English").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    expect(page.get_by_label("Password")).to_be_visible()


# --------------------------------------------------------------------------- setup and live progress
def test_support_enables_vhsys_and_owner_watches_the_initial_sync(stack, new_page, vhsys):
    clinic = stack.clinic("Clínica Veterinária Bicho Feliz", "dono@bichofeliz.test")
    stack.seed_past_runs(clinic["id"], "bling")  # the clinic used Bling until today
    # 4 records with errors (skipped at once: the bar moves) and 8 good ones the worker sends to VHSYS
    good = customers(8, seed=21)
    bad = [dict(c, id=f"cli-bad-{k}") for k, c in enumerate(customers(4, seed=22, start=101))]
    bad[0]["tax_id"] = bad[0]["tax_id"][:-1] + str((int(bad[0]["tax_id"][-1]) + 1) % 10)
    bad[1].update(zip_code="", street="")
    bad[2].update(name=" ")
    bad[3].update(city_ibge_code="3304557" if bad[3]["state"] != "RJ" else "3550308")
    stack.post_events(clinic["token"], *[customer_event(c) for c in bad + good])

    support = new_page()
    log_in(support, SUPPORT_EMAIL)
    expect(support.get_by_role("heading", level=1)).to_have_text("Clínicas")
    support.get_by_label("Buscar clínicas").fill("bicho")
    support.get_by_role("button", name="Buscar").click()
    row = support.get_by_role("row").filter(has_text=clinic["name"])
    expect(row).to_contain_text("desativada")
    row.get_by_role("link", name="Integração").click()
    expect(support.get_by_role("heading", level=1)).to_have_text("Integração")
    support.get_by_role("link", name="VHSYS").click()

    owner = new_page()
    log_in(owner, clinic["owner"])
    enable_vhsys(support, clinic["id"], vhsys, test_wrong_first=True, screenshot="03-setup-vhsys")
    # masked credentials only, never the secret
    expect(support.get_by_role("heading", name="Credenciais guardadas (mascaradas)")).to_be_visible()
    assert SECRET not in support.content() and DEMO_CREDENTIALS["access_token"] not in support.content()
    expect(support.locator(".status-card .badge").first).to_have_text(re.compile("saudável|instável"))

    run = latest_run(stack, clinic["id"], trigger="initial")
    assert run is not None and run["total"] == 12
    polls = progress_requests(owner, run["id"])
    answers = []
    owner.on("response", lambda resp: answers.append(resp) if resp.url.endswith(f"/runs/{run['id']}/progress") else None)
    owner.goto(f"/c/{clinic['id']}/")
    bar = owner.locator(f"#run-{run['id']}-progress")
    expect(bar).to_have_attribute("hx-trigger", "every 1s")
    assert bar.get_attribute("data-status") in ("queued", "running")
    # mid-run: done/total, the rate and the time left
    expect(bar).to_have_attribute("data-done", "4", timeout=30_000)
    expect(bar).to_contain_text("4/12")
    expect(bar.locator(".progress-pace")).to_contain_text(re.compile(r"registros/s|aguardando|começando"))
    shot(owner, "05-dashboard-sync-running")
    wait_finished(owner, run["id"])
    expect(bar.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(bar).to_contain_text("12/12")
    expect(bar).not_to_have_attribute("hx-trigger", re.compile(".*"))
    polled = len(polls)
    assert polled >= 2, polls
    seen_values = [int(v) for a in answers for v in re.findall(r'aria-valuenow="(\d+)"', a.text())]
    assert any(0 < v < 100 for v in seen_values), seen_values
    assert seen_values == sorted(seen_values), seen_values
    time.sleep(3.5)  # polling stopped: no request for the finished run's progress any more
    assert len(polls) == polled, polls[polled:]
    done = latest_run(stack, clinic["id"], trigger="initial")
    assert (done["status"], done["created"], done["skipped"], done["failed"]) == ("succeeded", 8, 4, 0)

    owner.reload()
    expect(owner.locator(".status-card .badge").first).to_have_text("saudável")
    expect(owner.locator(".chart-svg")).to_be_visible()
    expect(owner.locator(".legend")).to_contain_text("criados")
    expect(owner.get_by_text("Os clientes cadastrados no TecPet são criados e atualizados no ERP.")).to_be_visible()
    shot(owner, "04-dashboard")
    phone = new_page(viewport=PHONE)
    log_in(phone, clinic["owner"])
    shot(phone, "13-dashboard-phone", full_page=False)

    # history: the filters by ERP, status and period
    owner.get_by_role("link", name="Histórico de sincronização").click()
    owner.get_by_label("ERP").select_option("vhsys")
    owner.get_by_label("Período").select_option("24h")
    owner.get_by_label("Sentido").select_option("push")
    owner.get_by_role("button", name="Filtrar").click()
    rows = owner.locator("table.runs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("inicial")
    owner.get_by_label("ERP").select_option("bling")
    owner.get_by_label("Período").select_option("30d")
    owner.get_by_label("Sentido").select_option("")
    owner.get_by_role("button", name="Filtrar").click()
    assert rows.count() > 5
    expect(rows.first).to_contain_text("BLING")
    owner.get_by_label("Situação").select_option("partial")
    owner.get_by_role("button", name="Filtrar").click()
    for k in range(rows.count()):
        expect(rows.nth(k)).to_contain_text("parcial")
    owner.get_by_role("link", name="Limpar filtros").click()
    shot(owner, "08-sync-history", full_page=False)

    owner.get_by_role("link", name="Avisos de cadastro").click()
    expect(owner.locator("table.warnings tbody tr")).to_have_count(4)
    expect(owner.get_by_text(re.compile(r"O CPF \d{3}\.\d{3}\.\d{3}-\d{2} não é válido"))).to_be_visible()
    shot(owner, "09-record-warnings")


# --------------------------------------------------------------------------- failed records
def test_failed_records_are_retried_from_the_run_page(stack, new_page, vhsys):
    clinic = stack.clinic("Hospital Veterinário Patas & Cia", "dono@patasecia.test")
    people = customers(3, seed=31, start=12)  # n=12: a company with an alphanumeric CNPJ
    stack.post_events(clinic["token"], *[customer_event(c) for c in people])
    support = new_page()
    log_in(support, SUPPORT_EMAIL)
    faults(vhsys, reject_rate=1.0, seed=1)
    enable_vhsys(support, clinic["id"], vhsys)

    owner = new_page()
    log_in(owner, clinic["owner"])
    first = latest_run(stack, clinic["id"], trigger="initial")
    owner.goto(f"/c/{clinic['id']}/runs/{first['id']}")
    wait_finished(owner, first["id"])
    owner.reload()
    expect(owner.locator(".badge.b-failed").first).to_have_text("falhou")
    expect(owner.get_by_text("recusado pela validação do VHSYS").first).to_be_visible()
    expect(owner.get_by_role("button", name="Tentar de novo os 3 registro(s) com falha")).to_be_visible()
    expect(owner.get_by_text(re.compile(r"\d{2}\.[0-9A-Z]{3}\.[0-9A-Z]{3}/[0-9A-Z]{4}-\d{2}"))).to_have_count(0)
    shot(owner, "07-run-failed-records")

    faults(vhsys, reject_rate=0)
    name = people[0]["name"]
    owner.get_by_role("button", name=f"Tentar de novo: {name}").click()
    expect(owner.locator(".flash.success")).to_contain_text("Tentando de novo 1 registro(s)")
    retry = latest_run(stack, clinic["id"], trigger="retry")
    assert retry["id"] != first["id"] and retry["total"] == 1
    expect(owner).to_have_url(re.compile(rf"/runs/{retry['id']}$"))
    wait_finished(owner, retry["id"])
    expect(owner.locator(f"#run-{retry['id']}-progress")).to_have_attribute("data-status", "succeeded")
    expect(owner.get_by_role("link", name="Concluída: veja o resultado de cada registro")).to_be_visible()

    owner.goto(f"/c/{clinic['id']}/runs/{first['id']}")
    owner.get_by_role("button", name="Tentar de novo os 3 registro(s) com falha").click()
    expect(owner.locator(".flash.success")).to_contain_text("Tentando de novo 3 registro(s)")
    again = latest_run(stack, clinic["id"], trigger="retry")
    wait_finished(owner, again["id"])
    final = latest_run(stack, clinic["id"], trigger="retry")
    assert (final["status"], final["created"], final["unchanged"], final["failed"]) == ("succeeded", 2, 1, 0)
    owner.get_by_role("link", name="Concluída: veja o resultado de cada registro").click()
    expect(owner.locator("tbody .badge.b-created")).to_have_count(2)
    # the retries are in the audit log
    support.goto("/support/audit")
    expect(support.get_by_text("run.retried").first).to_be_visible()


# --------------------------------------------------------------------------- held invoice released
def test_owner_fixes_a_record_and_its_held_invoice_is_released(stack, new_page, vhsys):
    clinic = stack.clinic("Clínica Gato Alegre", "dona@gatoalegre.test")
    support = new_page()
    log_in(support, SUPPORT_EMAIL)
    enable_vhsys(support, clinic["id"], vhsys)
    broken = {"id": "cli-bruno", "person_type": "PF", "name": "Bruno Sem Documento", "tax_id": "529.982.247-24",
              "zip_code": "", "street": "", "number": "", "district": "", "city": "Curitiba",
              "city_ibge_code": "4106902", "state": "PR"}
    answer = stack.post_events(clinic["token"], customer_event(broken), invoice_event("fat-77", "cli-bruno"))
    assert answer["results"][1]["status"] == "blocked"

    owner = new_page()
    log_in(owner, clinic["owner"])
    owner.get_by_role("link", name="Ver o que corrigir").click()
    row = owner.get_by_role("row").filter(has_text="Bruno Sem Documento")
    expect(row).to_contain_text("O CPF 529.982.247-24 não é válido")
    expect(row).to_contain_text("529.982.247-24")
    row.get_by_role("link", name="Bruno Sem Documento").click()
    expect(owner.get_by_role("heading", name="O que corrigir")).to_be_visible()
    expect(owner.get_by_text("O CEP está em branco: informe o CEP do cliente.")).to_be_visible()
    shot(owner, "10-customer")

    owner.get_by_role("link", name="Faturas").click()
    invoice_row = owner.get_by_role("row").filter(has_text="FAT-77")
    expect(invoice_row).to_contain_text("retida")
    expect(invoice_row).to_contain_text("R$ 180,00")
    invoice_row.get_by_role("link", name="FAT-77").click()
    held = owner.locator("section.callout")
    expect(held.get_by_role("heading")).to_have_text("Esta fatura está retida")
    expect(held).to_contain_text("Como ela é liberada")
    expect(held).to_contain_text("liberada e enviada ao ERP automaticamente")
    expect(held.get_by_role("link", name="Corrija o cadastro do cliente")).to_be_visible()
    shot(owner, "11-invoice-held")
    invoice_url = owner.url

    # the owner fixes the record in TecPet: core sends the corrected customer
    fixed = dict(customers(1, seed=41)[0], id="cli-bruno", name="Bruno Com Documento")
    stack.post_events(clinic["token"], customer_event(fixed))
    badge = owner.locator(".page-head .badge")
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        owner.goto(invoice_url)
        if badge.inner_text() in ("emitida", "em emissão"):
            break
        time.sleep(0.7)
    expect(badge).to_have_text(re.compile("emitida|em emissão"))
    expect(owner.locator("section.callout")).to_have_count(0)
    owner.get_by_role("link", name="Avisos de cadastro").click()
    expect(owner.get_by_text("Nenhum problema. Todos os cadastros estão prontos para faturar.")).to_be_visible()
    expect(owner.get_by_text("Bruno")).to_have_count(0)


# --------------------------------------------------------------------------- roles
def test_owner_cannot_open_setup(stack, new_page):
    clinic = stack.clinic("Clínica Pet Care Centro", "dono@petcare.test")
    owner = new_page()
    log_in(owner, clinic["owner"])
    owner.get_by_role("link", name="Integração").click()
    expect(owner.get_by_text("fale com o suporte")).to_be_visible()
    expect(owner.locator("a[href*='/integration/setup']")).to_have_count(0)
    resp = owner.goto(f"/c/{clinic['id']}/integration/setup?erp=vhsys")
    assert resp.status == 403
    expect(owner.get_by_role("heading", level=1)).to_have_text("Você não tem acesso a esta página")
    other = stack.clinic("Clínica Vizinha", "dono@vizinha.test")
    assert owner.goto(f"/c/{other['id']}/").status == 403
    assert owner.goto("/support/clinics").status == 403


def test_support_disables_and_enables_with_an_audit_trail(stack, new_page, vhsys):
    clinic = stack.clinic("Clínica Amigo Fiel", "dono@amigofiel.test")
    support = new_page()
    log_in(support, SUPPORT_EMAIL)
    enable_vhsys(support, clinic["id"], vhsys)
    shot(support, "06-integration-support")
    support.get_by_role("button", name="Desativar").click()
    expect(support.locator(".flash.success")).to_have_text(re.compile("Integração desativada"))
    expect(support.locator(".status-card .badge").first).to_have_text("desativada")
    support.get_by_role("button", name="Ativar").click()
    expect(support.locator(".flash.success")).to_contain_text("Integração ativada")
    support.get_by_role("link", name="Clínicas").click()
    expect(support.get_by_role("row").filter(has_text="Clínica Amigo Fiel")).to_contain_text("VHSYS")
    shot(support, "02-support-clinics")
    support.get_by_label("Buscar clínicas").fill("nenhuma clínica com este nome")
    support.keyboard.press("Enter")
    expect(support.get_by_text("Nenhuma clínica encontrada.")).to_be_visible()
    support.get_by_role("link", name="Registro de auditoria").click()
    for action in ("integration.enabled", "integration.disabled", "integration.saved", "integration.tested",
                   "credentials.set"):
        expect(support.get_by_text(action, exact=True).first).to_be_visible()
    assert SECRET not in support.content()
    shot(support, "12-audit-log")

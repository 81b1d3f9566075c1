"""What pages do to stay fast at a large account's size, checked for what they show: the long
tables' rows and a run's progress block rendered in Python (webapp/table_rows.py,
webapp/run_progress.py: links, labels, escaping, the retry form and the polling only where they
apply), the logged-in user read with one plain query on every request (never kept between
requests), and the cached figures (fresh when a run ends, still shown when Redis is down)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from webapp.models import Customer, Integration, SyncRecord, SyncRun


def _run(db_session, clinic, **kw):
    integ = Integration(clinic_id=clinic.id, erp="vhsys", enabled=True, features=["sync_customers"])
    db_session.add(integ)
    db_session.flush()
    run = SyncRun(clinic_id=clinic.id, integration_id=integ.id, erp="vhsys", direction="push", entity="customer",
                  trigger="event", **kw)
    db_session.add(run)
    db_session.flush()
    return run


def test_record_rows_escape_and_offer_retry_only_on_finished_push_runs(world, web, db_session):
    a = world["clinic_a"]
    c = Customer(clinic_id=a.id, external_id="c1", name="Ana", person_type="PF")
    db_session.add(c)
    db_session.flush()
    now = datetime.utcnow()
    run = _run(db_session, a, status="partial", started_at=now - timedelta(seconds=75), finished_at=now,
               total=2, done=2, failed=1, created=1)
    db_session.add_all([
        SyncRecord(run_id=run.id, entity="customer", local_id=c.id, label="Ana & <Bia>", outcome="failed",
                   message="<b>CPF inválido</b>", remote_id=""),
        SyncRecord(run_id=run.id, entity="customer", local_id=None, label="Removed one", outcome="created",
                   message="", remote_id="77")])
    db_session.commit()
    owner = web("owner-a@test")
    page = owner.get(f"/c/{a.id}/runs/{run.id}").get_data(as_text=True)
    assert f'<a href="/c/{a.id}/customers/{c.id}">Ana &amp; &lt;Bia&gt;</a>' in page
    assert "&lt;b&gt;CPF inválido&lt;/b&gt;" in page and "<b>CPF" not in page
    assert page.count('name="record_id"') == 1 and 'aria-label="Retrying' not in page
    failed_id = db_session.query(SyncRecord.id).filter_by(run_id=run.id, outcome="failed").scalar()
    assert f'name="record_id" value="{failed_id}"' in page and 'name="csrf_token" value="' in page
    assert "<td>Removed one</td>" in page  # no local record: no link
    history = owner.get(f"/c/{a.id}/runs").get_data(as_text=True)
    assert f'<a href="/c/{a.id}/runs/{run.id}">#{run.id}</a>' in history
    assert '<td class="num fail">1</td>' in history and "1\u00a0min 15\u00a0s" in history

    run.finished_at, run.status = None, "running"  # still running: nothing to retry yet
    db_session.commit()
    assert 'name="record_id"' not in owner.get(f"/c/{a.id}/runs/{run.id}").get_data(as_text=True)


def _without_tax_id(clinic, **fields) -> Customer:
    """A person whose record lacks its CPF, with the problem the health check stores for it."""
    return Customer(clinic_id=clinic.id, person_type="PF", tax_id="", health_errors=1,
                    health_problems=[{"code": "tax_id.missing", "field": "tax_id", "severity": "error",
                                      "message": "The CPF/CNPJ is empty"}], **fields)


def test_warning_rows_escape_what_the_record_holds(world, web, db_session):
    a = world["clinic_a"]
    bad = _without_tax_id(a, external_id="x<1>", name="Zé <script>")
    db_session.add(bad)
    db_session.commit()
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/customers/warnings?lang=en")  # the switch answers with a redirect
    page = owner.get(f"/c/{a.id}/customers/warnings").get_data(as_text=True)
    assert "Zé &lt;script&gt;" in page and "<script>" not in page.split("<tbody>")[1]
    assert "x&lt;1&gt;" in page and "The CPF/CNPJ is empty" in page and 'class="badge b-error"' in page
    assert f'href="/c/{a.id}/customers/{bad.id}"' in page


def test_kept_warning_rows_follow_the_record_and_the_language(world, web, db_session):
    """A warning row's HTML is kept by everything it is made of: after an edit of the record or a
    switch of language the page never shows the row kept before."""
    from webapp import table_rows
    a = world["clinic_a"]
    c = _without_tax_id(a, external_id="k1", name="Kept Name")
    db_session.add(c)
    db_session.commit()
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/customers/warnings?lang=en")
    table_rows._WARNING_ROWS.clear()
    first = owner.get(f"/c/{a.id}/customers/warnings").get_data(as_text=True)
    assert "Kept Name" in first and "The CPF/CNPJ is empty" in first
    assert any("Kept Name" in html for html in table_rows._WARNING_ROWS.values())
    assert owner.get(f"/c/{a.id}/customers/warnings").get_data(as_text=True) == first  # the kept rows

    c.name = "Edited Name"
    c.person_type = "PJ"
    c.health_problems = [{"code": "tax_id.missing", "field": "tax_id", "severity": "error",
                          "message": "The CNPJ is empty"}]
    db_session.commit()
    edited = owner.get(f"/c/{a.id}/customers/warnings").get_data(as_text=True)
    assert "Edited Name" in edited and "The CNPJ is empty" in edited and "Kept Name" not in edited

    owner.get(f"/c/{a.id}/customers/warnings?lang=pt_BR")
    portuguese = owner.get(f"/c/{a.id}/customers/warnings").get_data(as_text=True)
    assert "O CNPJ está em branco" in portuguese and "The CNPJ is empty" not in portuguese

    table_rows.WARNING_ROWS_KEPT, kept = 4, table_rows.WARNING_ROWS_KEPT
    try:  # full: the oldest half goes, the page is still whole
        for n in range(6):
            table_rows._keep(("old", n), "x")
        assert len(table_rows._WARNING_ROWS) <= 4 and ("old", 5) in table_rows._WARNING_ROWS
    finally:
        table_rows.WARNING_ROWS_KEPT = kept
        table_rows._WARNING_ROWS.clear()


def test_warning_sentences_in_portuguese_carry_the_ibge_hint_only_where_it_belongs(world, web, db_session):
    """i18n.problem_text rebuilds a sentence from its code and the record; the right IBGE code the
    English message computed is carried over in the sentences about the IBGE code."""
    a = world["clinic_a"]
    hint = " The IBGE code of Campinas/SP is 3509502."
    db_session.add(Customer(clinic_id=a.id, external_id="i1", name="Ibge", person_type="PF", city="Campinas",
                            state="SP", health_errors=2, health_problems=[
                                {"code": "city_ibge_code.missing", "field": "city_ibge_code", "severity": "error",
                                 "message": "The IBGE city code is empty." + hint},
                                {"code": "district.missing", "field": "district", "severity": "error",
                                 "message": "The district is empty." + hint}]))
    db_session.commit()
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/customers/warnings?lang=pt_BR")
    page = owner.get(f"/c/{a.id}/customers/warnings").get_data(as_text=True)
    assert page.count(" O código IBGE de Campinas/SP é 3509502.") == 1
    assert "O código IBGE da cidade está em branco" in page and "O bairro" in page


def test_dashboard_chart_counts_a_run_as_soon_as_it_ends(world, web, db_session):
    """The 30-day counts are cached between dashboards and dropped when a run ends."""
    from webapp.sync import runs
    from webapp.views import daily_counts
    a = world["clinic_a"]
    run = _run(db_session, a, status="running", started_at=datetime.utcnow(), total=1)
    db_session.add(SyncRecord(run_id=run.id, entity="customer", local_id=None, label="x", outcome="created",
                              message="", remote_id="1"))
    db_session.commit()
    owner = web("owner-a@test")
    assert owner.get(f"/c/{a.id}/").status_code == 200
    assert sum(d["created"] for d in daily_counts(a.id)) == 0  # cached while the run was running
    runs.finish(run)
    db_session.commit()
    assert sum(d["created"] for d in daily_counts(a.id)) == 1


def test_progress_block_polls_while_the_run_is_active_and_links_to_it_once_finished(world, web, db_session):
    a = world["clinic_a"]
    now = datetime.utcnow()
    run = _run(db_session, a, status="running", started_at=now - timedelta(seconds=10), total=2000, done=1500,
               created=1400, failed=3, error="ERP said <b>slow down</b>")
    db_session.commit()
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/?lang=en")
    polled = owner.get(f"/c/{a.id}/runs/{run.id}/progress", headers={"HX-Request": "true"})
    block = polled.get_data(as_text=True)
    assert polled.headers["Content-Type"].startswith("text/html")
    assert f'hx-get="/c/{a.id}/runs/{run.id}/progress" hx-trigger="every 1s" hx-swap="outerHTML"' in block
    assert 'data-done="1500" data-total="2000"' in block and "1,500/2,000" in block and "(75%)" in block
    assert "records/s · about" in block and '<span class="fail">failed 3</span>' in block
    assert "ERP said &lt;b&gt;slow down&lt;/b&gt;" in block and "<b>" not in block
    assert "done-note" not in block
    dashboard = owner.get(f"/c/{a.id}/").get_data(as_text=True)
    assert f'id="run-{run.id}-progress"' in dashboard and 'hx-trigger="every 1s"' in dashboard

    run.status, run.finished_at, run.done, run.error = "succeeded", now, 2000, ""
    db_session.commit()
    done = owner.get(f"/c/{a.id}/runs/{run.id}/progress", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-get" not in done and "(100%)" in done and "took 10\u00a0s" in done
    assert f'<p class="done-note"><a href="/c/{a.id}/runs/{run.id}">' in done
    page = owner.get(f"/c/{a.id}/runs/{run.id}").get_data(as_text=True)
    assert f'id="run-{run.id}-progress"' in page and "done-note" not in page  # the run's own page needs no link


def test_a_changed_user_or_clinic_shows_on_the_next_request(world, web, db_session):
    """The user a process keeps (tests/test_local_copies.py) is dropped when it changes: a renamed
    clinic shows at once, a removed user is logged out on their next request, an owner still
    reaches only their own clinic."""
    from webapp.models import User
    a, b = world["clinic_a"], world["clinic_b"]
    owner = web("owner-a@test")
    assert "Clínica A" in owner.get(f"/c/{a.id}/").get_data(as_text=True)
    assert owner.get(f"/c/{b.id}/").status_code == 403
    a.name = "Clínica A & Filhos"
    db_session.commit()
    assert "Clínica A &amp; Filhos" in owner.get(f"/c/{a.id}/runs").get_data(as_text=True)
    support = web("support@test")
    assert "Clínica B" in support.get(f"/c/{b.id}/runs").get_data(as_text=True)
    assert support.get(f"/c/{b.id + 1000}/runs").status_code == 404
    db_session.delete(db_session.get(User, world["owner_a"].id))
    db_session.commit()
    gone = owner.get(f"/c/{a.id}/")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]


def test_cached_figures_come_in_one_round_trip_and_pages_still_answer_without_redis(world, web, db_session,
                                                                                    monkeypatch):
    from redis.exceptions import ConnectionError as RedisDown
    from webapp import page_cache
    a = world["clinic_a"]
    db_session.add_all([Customer(clinic_id=a.id, external_id=f"c{i}", name=f"C{i}", person_type="PF",
                                 health_errors=int(i == 0)) for i in range(3)])
    db_session.commit()
    calls = []
    got = page_cache.cached_many(a.id, {"one": lambda: calls.append(1) or {"n": 1}, "two": lambda: [1, 2]})
    assert got == {"one": {"n": 1}, "two": [1, 2]} and calls == [1]
    again = page_cache.cached_many(a.id, {"one": lambda: calls.append(1) or {"n": 9}, "two": lambda: []})
    assert again == got and calls == [1]  # both read back from Redis, nothing recomputed
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/?lang=en")

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise RedisDown("redis is down")
            return fail
    monkeypatch.setattr(page_cache, "redis_connection", lambda: Down())
    page_cache.forget(a.id, "health")  # no error either
    warnings = owner.get(f"/c/{a.id}/customers/warnings?severity=all")
    assert warnings.status_code == 200 and "2 of 3 customers are ready to invoice." in warnings.get_data(as_text=True)
    assert owner.get(f"/c/{a.id}/").status_code == 200


def test_clinic_scope_also_takes_the_orm_user_login_user_leaves_in_its_request(app, world):
    """login_user() puts the `User` row itself in the request (and in an app context a caller keeps
    open across requests): it has no clinic name, so the clinic is read."""
    from flask_login import login_user
    from werkzeug.exceptions import Forbidden
    from webapp.access import ClinicRef, clinic_scope
    a, b = world["clinic_a"], world["clinic_b"]
    with app.test_request_context():
        login_user(world["owner_a"])
        assert clinic_scope(a.id) == ClinicRef(a.id, "Clínica A")
        with pytest.raises(Forbidden):
            clinic_scope(b.id)


def test_the_kept_page_header_follows_the_user_the_clinic_the_page_and_the_language(world, web, db_session):
    """The header is rendered once per language, address, user and clinic (webapp/layout.py): each
    of those changes what it shows at once, and its logout form carries this session's token."""
    from webapp.models import User
    a, b = world["clinic_a"], world["clinic_b"]
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/?lang=en")
    header = owner.get(f"/c/{a.id}/").get_data(as_text=True).split("</header>")[0]
    assert '<span class="who" title="owner-a@test">owner-a@test · owner</span>' in header
    assert f'<a href="/c/{a.id}/" aria-current="page">Dashboard</a>' in header
    assert "Audit log" not in header and "nav-clinic" not in header
    runs = owner.get(f"/c/{a.id}/runs").get_data(as_text=True).split("</header>")[0]
    assert f'<a href="/c/{a.id}/runs" aria-current="page">Sync history</a>' in runs
    assert f'<a href="/c/{a.id}/" >Dashboard</a>' in runs  # not the current page here
    assert f'href="/c/{a.id}/runs?lang=pt_BR"' in runs

    user = db_session.get(User, world["owner_a"].id)
    user.email = "renamed-a@test"
    a.name = "Clínica Renomeada"
    db_session.commit()
    page = owner.get(f"/c/{a.id}/runs").get_data(as_text=True)
    assert "renamed-a@test" in page.split("</header>")[0] and "owner-a@test" not in page
    assert "Clínica Renomeada" in page

    owner.get(f"/c/{a.id}/runs?lang=pt_BR")
    pt = owner.get(f"/c/{a.id}/runs").get_data(as_text=True).split("</header>")[0]
    assert ">Painel</a>" in pt and ">Sair</button>" in pt

    support = web("support@test")
    nav = support.get(f"/c/{b.id}/runs").get_data(as_text=True).split("</header>")[0]
    assert '<span class="nav-clinic" title="Clínica B">Clínica B</span>' in nav and "/support/audit" in nav

    token = re.search(r'action="/logout"><input type="hidden" name="csrf_token" value="([^"]+)"', header).group(1)
    assert owner.post("/logout", {"csrf_token": token}, csrf=False).status_code == 302
    assert owner.get(f"/c/{a.id}/").status_code == 302  # logged out: the kept header's token was this session's


def test_kept_fragments_are_keyed_by_their_values_and_the_store_stays_bounded(world, web, monkeypatch):
    from webapp import fragments
    a = world["clinic_a"]
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/runs?lang=en")
    page = owner.get(f"/c/{a.id}/runs?period=7d&status=failed").get_data(as_text=True)
    assert '<option value="7d" selected>Last 7 days</option>' in page
    assert '<option value="failed" selected>' in page and f'<a href="/c/{a.id}/runs">Clear filters</a>' in page
    plain = owner.get(f"/c/{a.id}/runs").get_data(as_text=True)
    assert "selected>" not in plain.split('id="period"')[1].split("</select>")[0].replace('value="" selected>', "")
    assert "Clear filters" not in plain
    owner.get(f"/c/{a.id}/runs?lang=pt_BR")
    pt = owner.get(f"/c/{a.id}/runs?period=7d&status=failed").get_data(as_text=True)
    assert '<option value="7d" selected>Últimos 7 dias</option>' in pt and "Last 7 days" not in pt

    monkeypatch.setattr(fragments, "MAX_KEPT", 5)
    fragments._KEPT.clear()
    for n in range(12):
        assert owner.get(f"/c/{a.id}/runs?status=s{n}").status_code == 200
        assert len(fragments._KEPT) <= 5


def test_template_translations_keep_jinja_newstyle_rules(app):
    """`_()` in templates is kept per language and string (i18n.template_gettext) and answers as
    Jinja's newstyle gettext does: always formatted, variables escaped, the text itself markup."""
    from flask import render_template_string
    with app.test_request_context("/"):
        from flask import g
        g._tecpet_lang = "en"
        assert render_template_string('{{ _("100%% sure") }}') == "100% sure"
        assert render_template_string('{{ _("Hi %(who)s", who="<b>Bia</b>") }}') == "Hi &lt;b&gt;Bia&lt;/b&gt;"
        assert render_template_string('{{ _("Dashboard") }}') == "Dashboard"
    with app.test_request_context("/"):
        from flask import g
        g._tecpet_lang = "pt_BR"
        assert render_template_string('{{ _("Dashboard") }}') == "Painel"
        assert render_template_string('{{ _("Dashboard") }}') == "Painel"  # the kept answer


def test_the_dashboard_status_reads_the_chosen_integration_and_its_last_five_finished_runs(world, web, db_session):
    """The dashboard reads the integration and its last finished runs in one query, kept as a
    figure until a commit changes an integration or a run's state; the integration page reads them
    apart (views.integration_status): both tell the same status, after every change."""
    a, b = world["clinic_a"], world["clinic_b"]
    owner, support = web("owner-a@test"), web("support@test")

    def status() -> tuple[str, str]:
        page = owner.get(f"/c/{a.id}/").get_data(as_text=True)
        card = page.split('class="card status-card s-')[1]
        word, why = card.split('"')[0], card.split('<p class="status-why">')[1].split("</p>")[0]
        if word != "none":  # the integration page shows the card once there is one
            other = support.get(f"/c/{a.id}/integration").get_data(as_text=True)
            assert f'<p class="status-why">{why}</p>' in other and f'{word}</span></h2>' in other
        return word, why

    assert status()[0] == "none"
    old = Integration(clinic_id=a.id, erp="bling", enabled=False, features=[])
    db_session.add(old)
    db_session.commit()
    assert status() == ("disabled", "The integration is disabled.")
    integ = Integration(clinic_id=a.id, erp="vhsys", enabled=True, features=["sync_customers"])
    theirs = Integration(clinic_id=b.id, erp="vhsys", enabled=True, features=["sync_customers"])
    db_session.add_all([integ, theirs])
    db_session.commit()
    assert status() == ("healthy", "Enabled; waiting for the first sync.")

    def run(owner_of, status_, error=""):
        db_session.add(SyncRun(clinic_id=owner_of.clinic_id, integration_id=owner_of.id, erp="vhsys", direction="push",
                               entity="customer", trigger="event", status=status_, error=error))
        db_session.commit()
    run(integ, "partial")
    for _ in range(5):
        run(integ, "succeeded")
    run(theirs, "failed", "their failure")
    run(integ, "running")
    run(old, "failed", "an old integration's failure")
    assert status() == ("healthy", "All recent syncs succeeded.")  # the partial is 6th: out of the five
    run(integ, "partial")
    assert status()[0] == "degraded"
    run(integ, "failed", "VHSYS said <no>")
    assert status() == ("failing", "VHSYS said &lt;no&gt;")
    integ.paused_reason = "Paused: the ERP refused the credentials"
    db_session.commit()
    assert status() == ("paused", "Paused: the ERP refused the credentials")


def test_a_finished_runs_dashboard_item_is_kept_until_its_state_or_the_language_changes(world, web, db_session,
                                                                                        monkeypatch):
    from webapp import run_progress
    a = world["clinic_a"]
    now = datetime.utcnow()
    run = _run(db_session, a, status="failed", queued_at=now, started_at=now - timedelta(seconds=4), finished_at=now,
               total=10, done=10, created=6, failed=4, error="VHSYS refused 4 records")
    db_session.commit()
    owner = web("owner-a@test")
    rendered = []
    original = run_progress._run_item
    monkeypatch.setattr(run_progress, "_run_item", lambda *args: rendered.append(args[0].id) or original(*args))

    def dashboard(lang: str) -> str:
        owner.get(f"/c/{a.id}/?lang={lang}")  # the language is chosen once, then kept in the session
        return owner.get(f"/c/{a.id}/").get_data(as_text=True)

    def item(lang: str) -> str:
        page = dashboard(lang)
        return page[page.index(f'<a href="/c/{a.id}/runs/{run.id}">'):page.index(f'id="run-{run.id}-progress"')]

    first = item("en")
    assert item("en") == first and rendered == [run.id]  # kept: rendered once
    assert "Run #" in first and item("pt_BR") != first and rendered == [run.id] * 2  # per language
    run.status, run.failed, run.updated, run.error = "succeeded", 0, 4, ""  # records retried from the run page
    db_session.commit()
    page = dashboard("en")
    assert rendered == [run.id] * 3 and "VHSYS refused 4 records" not in page and "b-succeeded" in page

    running = SyncRun(clinic_id=a.id, integration_id=run.integration_id, erp="vhsys", direction="push",
                      entity="customer", trigger="event", status="running", queued_at=now, started_at=now, total=10,
                      done=1)
    db_session.add(running)
    db_session.commit()
    dashboard("en")
    dashboard("en")
    assert rendered.count(running.id) == 2  # an active run's item is rendered on every request
    monkeypatch.setattr(run_progress, "MAX_FINISHED_ITEMS", 1)
    dashboard("pt_BR")
    assert len(run_progress._FINISHED_ITEMS) <= 1


def test_json_columns_are_read_with_orjson_and_what_it_refuses_still_reads(app, world, db_session):
    """webapp/json_values.py is the engine's JSON reader on both databases; a value the standard
    library wrote and orjson refuses (NaN) still comes back."""
    import math
    from sqlalchemy import text
    from webapp import json_values
    from webapp.models import Customer
    assert db_session.get_bind().dialect._json_deserializer is json_values.loads
    c = Customer(clinic_id=world["clinic_a"].id, external_id="J1", person_type="PF", name="Json",
                 health_problems=[{"code": "name.missing", "weight": 1.5}])
    db_session.add(c)
    db_session.commit()
    db_session.expire_all()
    assert db_session.get(Customer, c.id).health_problems == [{"code": "name.missing", "weight": 1.5}]
    if db_session.get_bind().dialect.name == "sqlite":  # jsonb on PostgreSQL refuses NaN itself
        db_session.execute(text("UPDATE customers SET health_problems = :v WHERE id = :id"),
                           {"v": '[{"weight": NaN}]', "id": c.id})
        db_session.commit()
        db_session.expire_all()
        assert math.isnan(db_session.get(Customer, c.id).health_problems[0]["weight"])

"""Roles and tenants on every route; CSRF on every form; sessions hardened."""
from __future__ import annotations

import pytest

from webapp.models import Customer, Integration, Invoice, SyncRun


@pytest.fixture
def clinic_pages(world, db_session):
    """One record of each kind in clinic A, so every clinic page has something to show."""
    a = world["clinic_a"]
    c = Customer(clinic_id=a.id, external_id="c1", name="Ana", person_type="PF")
    db_session.add(c)
    db_session.flush()
    from datetime import date
    inv = Invoice(clinic_id=a.id, external_id="f1", number="1", customer_id=c.id, issue_date=date(2026, 1, 2),
                  items=[], installments=[])
    integ = Integration(clinic_id=a.id, erp="vhsys", enabled=True, features=["sync_customers"])
    db_session.add_all([inv, integ])
    db_session.flush()
    run = SyncRun(clinic_id=a.id, integration_id=integ.id, direction="push", entity="customer", trigger="event")
    db_session.add(run)
    db_session.commit()
    cid = a.id
    return {
        "owner": [f"/c/{cid}/", f"/c/{cid}/integration", f"/c/{cid}/customers/warnings",
                  f"/c/{cid}/customers/warnings.csv", f"/c/{cid}/customers/{c.id}", f"/c/{cid}/runs",
                  f"/c/{cid}/runs/{run.id}", f"/c/{cid}/runs/{run.id}/progress", f"/c/{cid}/invoices",
                  f"/c/{cid}/invoices/{inv.id}", f"/c/{cid}/pos-sales", f"/c/{cid}/receipts"],
        "support": [f"/c/{cid}/integration/setup?erp=vhsys", "/support/clinics", "/support/audit"],
        "post_support": [f"/c/{cid}/integration/test?erp=vhsys", f"/c/{cid}/integration/{integ.id}/pull",
                         f"/c/{cid}/integration/{integ.id}/sync", f"/c/{cid}/integration/{integ.id}/state",
                         f"/c/{cid}/integration/oauth/start?erp=vhsys"],
    }


def test_every_clinic_page_answers_its_owner_and_support_only(world, web, clinic_pages):
    anon, owner_a, owner_b, support = web(), web("owner-a@test"), web("owner-b@test"), web("support@test")
    leaks = []
    for path in clinic_pages["owner"]:
        assert owner_a.get(path).status_code == 200, path
        assert support.get(path).status_code == 200, path
        if owner_b.get(path).status_code != 403:
            leaks.append(("owner_b", path))
        r = anon.get(path)
        if r.status_code not in (302, 401) or (r.status_code == 302 and "/login" not in r.headers["Location"]):
            leaks.append(("anonymous", path))
    for path in clinic_pages["support"]:
        assert support.get(path).status_code == 200, path
        for who, client in (("owner_a", owner_a), ("owner_b", owner_b)):
            if client.get(path).status_code != 403:
                leaks.append((who, path))
    for path in clinic_pages["post_support"]:
        for who, client in (("owner_a", owner_a), ("owner_b", owner_b)):
            if client.post(path, {"action": "disable"}).status_code != 403:
                leaks.append((who, path))
    assert leaks == []


def test_owner_sees_integration_read_only_with_contact_support(world, web, clinic_pages):
    page = web("owner-a@test").get(f"/c/{world['clinic_a'].id}/integration").get_data(as_text=True)
    assert "contact support" in page.lower()
    assert "/integration/setup" not in page


def test_every_post_without_csrf_token_is_refused(world, web, clinic_pages):
    support = web("support@test")
    for path in clinic_pages["post_support"] + ["/logout"]:
        resp = support.post(path, {"action": "disable"}, csrf=False)
        assert resp.status_code == 400, path
    anon = web()
    assert anon.post("/login", {"email": "support@test", "password": "pw-for-tests"}, csrf=False).status_code == 400


def test_login_is_throttled_after_repeated_failures(world, web):
    w = web()
    codes = [w.post("/login", {"email": "owner-a@test", "password": "wrong"}).status_code for _ in range(6)]
    assert codes[:5] == [401] * 5
    assert codes[5] == 429
    # even the right password waits now
    assert w.post("/login", {"email": "owner-a@test", "password": "pw-for-tests"}).status_code == 429


def test_session_cookie_is_httponly_and_samesite(world, web):
    w = web()
    w.csrf("/login")
    resp = w.post("/login", {"email": "owner-a@test", "password": "pw-for-tests"})
    cookie = resp.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_api_rejects_missing_and_foreign_tokens(world, app):
    client = app.test_client()
    body = {"type": "customer.upserted", "customer": {"id": "x", "person_type": "PF", "name": "Ana"}}
    assert client.post("/api/v1/events", json=body).status_code == 401
    assert client.post("/api/v1/events", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.post("/api/v1/events", json=body, headers={"Authorization": f"Bearer {world['token_b']}"})
    assert ok.status_code == 202
    # the customer landed in clinic B only
    from webapp.extensions import db
    rows = db.session.query(Customer).filter_by(external_id="x").all()
    assert [r.clinic_id for r in rows] == [world["clinic_b"].id]


def test_row_links_and_badges_match_url_for_and_escape(app, world, db_session, web, clinic_pages):
    """Tables build each row's link from one url_for (row_urls) and cache badges: the links are
    url_for's own, and a value that is not a known word is still escaped."""
    from flask import url_for
    from webapp.formatting import row_urls
    from webapp.i18n import badge
    cid = world["clinic_a"].id
    with app.test_request_context("/"):
        run_url = row_urls("history.run", "run_id", clinic_id=cid)
        for rid in (1, 42, 2 ** 31 - 1):
            assert run_url(rid) == url_for("history.run", clinic_id=cid, run_id=rid)
        assert str(badge("run", "<b>x</b>")) == '<span class="badge b-&lt;b&gt;x&lt;/b&gt;">&lt;b&gt;x&lt;/b&gt;</span>'
        assert badge("run", "failed") is badge("run", "failed")
    run_id = clinic_pages["owner"][6].rsplit("/", 1)[1]
    page = web("owner-a@test").get(f"/c/{cid}/runs").get_data(as_text=True)
    assert f'href="/c/{cid}/runs/{run_id}"' in page

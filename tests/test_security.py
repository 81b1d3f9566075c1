"""S1-S3 of the chaos suite, also part of the normal suite: every route x role, a canary
credential that must never leak, CSRF on every POST, login throttling and cookie flags.

Routes are read from the application's URL map, so a new route is checked the day it is added."""
from __future__ import annotations

import json
import logging
import os
from datetime import date

import pytest
from sqlalchemy import select

from webapp.models import Binding, Customer, Integration, Invoice, SyncRecord, SyncRun


PUBLIC = {"auth.login", "healthz", "static", "index"}
TOKEN_AUTH = {"api.events", "api.changes", "webhooks.receive"}
SUPPORT_ONLY_PREFIXES = ("integrations.", "support.")
CLINIC_PAGES_FOR_OWNERS = {"integrations.show"}  # the read-only integration page


def report(name: str, figures: dict) -> None:
    """The chaos runner collects figures through CHAOS_REPORT (a JSON-lines file)."""
    path = os.environ.get("CHAOS_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"scenario": name, **figures}) + "\n")


@pytest.fixture
def ids(world, db_session):
    a = world["clinic_a"]
    c = Customer(clinic_id=a.id, external_id="c1", name="Ana", person_type="PF")
    db_session.add(c)
    db_session.flush()
    inv = Invoice(clinic_id=a.id, external_id="f1", number="1", customer_id=c.id, issue_date=date(2026, 1, 2),
                  items=[], installments=[])
    integ = Integration(clinic_id=a.id, erp="vhsys", enabled=True, features=["sync_customers"])
    db_session.add_all([inv, integ])
    db_session.flush()
    db_session.add(Binding(integration_id=integ.id, entity="customer", local_id=c.id, remote_id="1", state="bound"))
    run = SyncRun(clinic_id=a.id, integration_id=integ.id, direction="push", entity="customer", trigger="event",
                  status="partial", failed=1, total=1, done=1)
    db_session.add(run)
    db_session.flush()
    db_session.add(SyncRecord(run_id=run.id, entity="customer", local_id=c.id, outcome="failed", message="x"))
    db_session.commit()
    return {"clinic_id": a.id, "customer_id": c.id, "invoice_id": inv.id, "integration_id": integ.id,
            "run_id": run.id, "filename": "app.css", "erp": "bling"}


def routes(app, ids):
    out = []
    for rule in app.url_map.iter_rules():
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", str(ids[arg])).replace(f"<path:{arg}>", str(ids[arg])).replace(
                f"<{arg}>", str(ids[arg]))
        if rule.endpoint.startswith("integrations.") and "setup" in rule.rule or rule.endpoint in (
                "integrations.test", "integrations.oauth_start"):
            url += "?erp=vhsys"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, url))
    return out


def allowed(endpoint: str, role: str) -> bool:
    if endpoint in PUBLIC:
        return True
    if endpoint in TOKEN_AUTH:
        return False  # browsers get nothing from token-authenticated endpoints
    if role == "anonymous":
        return False
    if endpoint == "auth.logout":
        return True
    if role == "support":
        return True
    if endpoint.startswith(SUPPORT_ONLY_PREFIXES) and endpoint not in CLINIC_PAGES_FOR_OWNERS:
        return False
    return role == "owner_a"  # clinic A's pages: its owner yes, clinic B's owner no


def test_s1_every_route_answers_only_the_allowed_roles(app, world, web, ids):
    clients = {"anonymous": web(), "owner_a": web("owner-a@test"), "owner_b": web("owner-b@test"),
               "support": web("support@test")}
    leaks, checks, denied_ok = [], 0, 0
    for endpoint, method, url in routes(app, ids):
        if endpoint in ("auth.logout", "integrations.oauth_callback"):
            continue  # logout would end the session under test; the callback is checked in test_oauth_*
        for role, client in clients.items():
            resp = client.get(url) if method == "GET" else client.post(url, {"action": "disable"})
            checks += 1
            status = resp.status_code
            to_login = status == 302 and "/login" in resp.headers.get("Location", "")
            granted = 200 <= status < 400 and not to_login
            if allowed(endpoint, role):
                if method == "GET" and endpoint not in PUBLIC and status != 200:
                    leaks.append(("broken", role, method, url, status))
            elif granted:
                leaks.append((role, method, url, status))
            else:
                denied_ok += 1
    report("S1", {"routes": len(routes(app, ids)), "checks": checks, "denied": denied_ok, "leaks": len(leaks)})
    assert leaks == []


def test_s2_canary_credential_never_leaks(app, world, web, api, work, vhsys_sandbox, db_session, redis_client, caplog):
    caplog.set_level(logging.DEBUG)
    canary = "CANARY-7f3a9c51-d0e2-4b8e-9a6f-secret"
    cid = world["clinic_a"].id
    support = web("support@test")
    form = {"erp": "vhsys", "cred_access_token": canary + "-access", "cred_secret_access_token": canary,
            "set_base_url": vhsys_sandbox.url, "feat_sync_customers": "y", "action": "save_enabled"}
    support.post(f"/c/{cid}/integration/test?erp=vhsys", form)
    assert support.post(f"/c/{cid}/integration/setup?erp=vhsys", form).status_code == 302
    from .helpers import VALID_CUSTOMERS, customer_event, post_events
    post_events(api, world["token_a"], customer_event(VALID_CUSTOMERS[0]))
    work()  # the job runs with the canary (VHSYS refuses it: the error path is exercised too)
    integration = db_session.scalar(select(Integration))
    assert canary not in integration.credentials_encrypted
    places = {}
    owner = web("owner-a@test")
    for endpoint, method, url in routes(app, {"clinic_id": cid, "customer_id": 1, "invoice_id": 1,
                                              "integration_id": integration.id, "run_id": 1, "filename": "app.css", "erp": "vhsys"}):
        if method == "GET":
            for who, client in (("support", support), ("owner", owner)):
                body = client.get(url).get_data(as_text=True)
                places[f"page {who} {url}"] = body
    places["logs"] = "\n".join(r.getMessage() for r in caplog.records)
    for key in redis_client.scan_iter("*"):
        kind = redis_client.type(key).decode()
        if kind == "string":
            value = redis_client.get(key)
        elif kind == "hash":
            value = b" ".join(k + b"=" + v for k, v in redis_client.hgetall(key).items())
        elif kind == "list":
            value = b" ".join(redis_client.lrange(key, 0, -1))
        elif kind == "zset":
            value = b" ".join(redis_client.zrange(key, 0, -1))
        elif kind == "set":
            value = b" ".join(redis_client.smembers(key))
        else:
            value = b""
        places[f"redis {key!r}"] = key.decode(errors="replace") + value.decode(errors="replace")
    import zlib
    for key in redis_client.scan_iter("rq:job:*"):  # job data is compressed: look inside too
        data = redis_client.hget(key, "data")
        if data:
            places[f"job args {key!r}"] = zlib.decompress(data).decode(errors="replace")
    leaks = [where for where, text in places.items() if canary in text or (canary + "-access") in text]
    report("S2", {"places_checked": len(places), "leaks": len(leaks)})
    assert leaks == []


def test_s3_every_post_without_csrf_is_refused(app, world, web, ids):
    support = web("support@test")
    refused, checked = 0, 0
    for endpoint, method, url in routes(app, ids):
        if method != "POST" or endpoint in TOKEN_AUTH:
            continue
        checked += 1
        resp = support.post(url, {"action": "disable"}, csrf=False)
        refused += resp.status_code == 400 and "CSRF" in resp.get_data(as_text=True)
    anon = web()
    checked += 1
    refused += anon.post("/login", {"email": "support@test", "password": "pw-for-tests"}, csrf=False).status_code == 400
    report("S3-csrf", {"posts": checked, "refused": refused})
    assert refused == checked


def test_s3_login_is_throttled_and_cookies_are_hardened(app, world, web):
    w = web()
    codes = [w.post("/login", {"email": "support@test", "password": "nope"}).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    from webapp import create_app
    secure_app = create_app(TESTING=True, SESSION_COOKIE_SECURE=True)
    client = secure_app.test_client()
    with secure_app.app_context():
        import re
        html = client.get("/login", base_url="https://localhost").get_data(as_text=True)
        token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
        resp = client.post("/login", base_url="https://localhost",
                           data={"email": "owner-a@test", "password": "pw-for-tests", "csrf_token": token},
                           headers={"Referer": "https://localhost/login"})
    cookie = resp.headers.get("Set-Cookie", "")
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    report("S3-session", {"throttled_after": codes.index(429), "httponly": 1, "samesite": 1, "secure": 1})


def test_s3_a_pages_csrf_token_is_reused_for_a_minute_per_session_and_still_checked(app, world, web, monkeypatch):
    """webapp/csrf_tokens.py: pages of one session carry the same signed token for up to
    REUSE_SECONDS; another session has its own; an old or foreign token is still refused."""
    from webapp import csrf_tokens
    clock = [1000.0]
    monkeypatch.setattr(csrf_tokens.time, "monotonic", lambda: clock[0])
    signed = []
    real = csrf_tokens.generate_csrf
    monkeypatch.setattr(csrf_tokens, "generate_csrf", lambda: signed.append(1) or real())
    clinic = world["clinic_a"].id
    page = f"/c/{clinic}/runs"
    a, b = web("owner-a@test"), web("owner-a@test")
    first = a.csrf(page)
    assert first and a.csrf(page) == first and len(signed) == 1  # signed once, carried by both pages
    assert b.csrf(page) != first
    post = lambda w, token: w.post(f"{page}/999999/retry", {"csrf_token": token}, csrf=False)  # noqa: E731
    assert post(b, first).status_code == 400  # a's token in b's session
    assert post(a, first).status_code == 404  # past the CSRF check: no such run
    clock[0] += csrf_tokens.REUSE_SECONDS + 1
    signings = len(signed)
    second = a.csrf(page)
    assert len(signed) == signings + 1 and post(a, second).status_code == 404  # signed again
    assert post(a, "not-a-token").status_code == 400

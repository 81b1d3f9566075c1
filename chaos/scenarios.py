"""R1-R3: faults against a whole deployment; each returns (held, figures)."""
from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from datetime import date, timedelta

from sqlalchemy import func, select

from integrations import brazil

from .harness import Deployment

UNLIMITED = [[10**9, 1.0]]


def make_customer(i: int) -> dict:
    base = f"{100000000 + i * 7919 % 899999999:09d}"
    cpf = base + brazil.cpf_check_digits(base)
    return {"id": f"chaos-{i}", "person_type": "PF", "name": f"Cliente Caos {i}", "tax_id": cpf,
            "email": f"c{i}@example.com.br", "phone": "(11) 98888-7777", "zip_code": "01310100",
            "street": "Avenida Paulista", "number": str(i % 9000 + 1), "district": "Bela Vista",
            "city": "São Paulo", "city_ibge_code": "3550308", "state": "SP"}


def make_invoice(i: int) -> dict:
    day = date(2026, 11, 20)
    return {"id": f"fat-{i}", "number": str(5000 + i), "customer_id": f"chaos-{i}", "issue_date": day.isoformat(),
            "kind": "service",
            "items": [{"description": "Consulta", "quantity": "1", "unit_price": "200.00", "service_code": "05.08"}],
            "installments": [{"number": n, "due_date": (day + timedelta(days=30 * n)).isoformat(), "amount": "100.00",
                              "payment_method": "PIX"} for n in (1, 2)]}


def chunks(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def post_all(d: Deployment, customers: int, invoices: int, pause: float = 0.0) -> int:
    accepted = 0
    for batch in chunks([{"type": "customer.upserted", "customer": make_customer(i)} for i in range(customers)], 100):
        accepted += len(batch) * (d.post(batch) == 202)
        time.sleep(pause)
    for batch in chunks([{"type": "invoice.billed", "invoice": make_invoice(i)} for i in range(invoices)], 20):
        accepted += len(batch) * (d.post(batch) == 202)
        time.sleep(pause)
    return accepted


def vhsys_exactly_once(d: Deployment, customers: int, invoices: int) -> dict:
    """Count what the VHSYS sandbox holds against what TecPet sent."""
    state = d.sandbox_state("vhsys")
    held = Counter(re.sub(r"\D", "", c.get("cnpj_cliente") or "") for c in state["clientes"])
    expected = {make_customer(i)["tax_id"] for i in range(customers)}
    orders = Counter(m.group(1) for o in state["ordens_servico"]
                     if (m := re.search(r"\[TecPet:([^\]]+)\]", str(o.get("obs_pedido") or ""))))
    receivables = Counter(str(r.get("n_documento_rec") or "") for r in state["contas_receber"])
    notes = Counter(m.group(1) for n in state["notas_servico"]
                    if (m := re.search(r"\[TecPet:([^\]]+)\]", " ".join(str(v) for v in n.values()))))
    expected_inv = {f"fat-{i}" for i in range(invoices)}
    lost = len(expected - set(held)) + len(expected_inv - set(orders)) + len(expected_inv - set(notes))
    lost += max(0, 2 * invoices - len(receivables))
    duplicated = (sum(n - 1 for n in held.values() if n > 1) + sum(n - 1 for n in orders.values() if n > 1)
                  + sum(n - 1 for n in receivables.values() if n > 1) + sum(n - 1 for n in notes.values() if n > 1))
    return {"customers": len(held), "orders": len(orders), "receivables": len(receivables), "nfse": len(notes),
            "lost": lost, "duplicated": duplicated}


def run_states(d: Deployment) -> dict:
    from webapp.extensions import db
    from webapp.models import SyncRun
    db.session.rollback()
    return dict(db.session.execute(select(SyncRun.status, func.count()).group_by(SyncRun.status)).all())


def failed_run_errors() -> list[str]:
    """Why the deployment's failed runs failed (the first 160 characters of each distinct error)."""
    from webapp.extensions import db
    from webapp.models import SyncRun
    db.session.rollback()
    return sorted({r.error[:160] for r in db.session.scalars(select(SyncRun).where(SyncRun.status == "failed"))})


def r1_worker_kills(quick: bool) -> tuple[bool, dict]:
    customers, invoices, kills = (300, 30, 10) if quick else (2000, 200, 10)
    rng = random.Random(20261125)
    with Deployment("r1", workers=2) as d:
        d.faults("vhsys", rate_limit=UNLIMITED)
        d.seed("vhsys")
        d.start_workers()
        started = time.monotonic()
        killer_done = threading.Event()

        def killer():
            for _ in range(kills):
                time.sleep(rng.uniform(0.4, 2.0 if quick else 4.0))
                d.kill_random_worker(rng)
            killer_done.set()

        threading.Thread(target=killer, daemon=True).start()
        accepted = post_all(d, customers, invoices)
        killer_done.wait(120)
        idle = d.wait_idle(timeout=240 if quick else 900)
        figures = vhsys_exactly_once(d, customers, invoices)
        figures.update(accepted=accepted, kills=kills, restarts=d.restarts, seconds=round(time.monotonic() - started, 1),
                       runs=run_states(d))
    held = idle and figures["lost"] == 0 and figures["duplicated"] == 0 and accepted == customers + invoices
    return held, figures


def r2_redis_outage(quick: bool) -> tuple[bool, dict]:
    events, outage = (150, 10.0) if quick else (500, 60.0)
    with Deployment("r2", workers=2) as d:
        d.faults("vhsys", rate_limit=UNLIMITED)
        d.seed("vhsys", features=("sync_customers",))
        d.start_workers()
        started = time.monotonic()
        d.redis.stop()
        down_at = time.monotonic()
        accepted = 0
        per_batch = max(1, events // 10)
        for batch in chunks([{"type": "customer.upserted", "customer": make_customer(i)} for i in range(events)],
                            per_batch):
            accepted += len(batch) * (d.post(batch) == 202)
            time.sleep(outage / 12)
        time.sleep(max(0.0, outage - (time.monotonic() - down_at)))
        d.redis.start()
        downtime = time.monotonic() - down_at
        idle = d.wait_idle(timeout=180 if quick else 400)
        figures = vhsys_exactly_once(d, events, 0)
        figures.update(accepted=accepted, redis_down_s=round(downtime, 1), worker_restarts=d.restarts,
                       seconds=round(time.monotonic() - started, 1), runs=run_states(d))
    held = idle and accepted == events and figures["lost"] == 0 and figures["duplicated"] == 0
    return held, figures


def r3_erp_faults(quick: bool) -> tuple[bool, dict]:
    """20% 5xx, bursts of 429, timeouts on VHSYS; the same plus token expiry on Bling."""
    customers, invoices = (120, 12) if quick else (500, 50)
    with Deployment("r3", workers=2) as d:
        d.faults("vhsys", rate_limit=UNLIMITED, error_rate=0.2, timeout_rate=0.01, timeout_seconds=4.0, seed=3)
        d.seed("vhsys")
        d.start_workers()
        started = time.monotonic()
        observed: dict[int, str] = {}
        shown: set[int] = set()
        stop = threading.Event()

        def bursts():
            while not stop.is_set():
                d.faults("vhsys", throttle_rate=0.6)
                stop.wait(1.0)
                d.faults("vhsys", throttle_rate=0.0)
                stop.wait(3.0)

        def watch():
            """Every failure must be visible on its run page while it lasts."""
            with d.app.app_context():
                _watch()

        def _watch():
            from webapp.extensions import db
            from webapp.models import SyncRun
            owner = _owner(d)
            while not stop.is_set():
                db.session.rollback()
                for run in db.session.scalars(select(SyncRun).where(SyncRun.status.in_(("queued", "running")),
                                                                    SyncRun.error != "")):
                    if run.id in shown:
                        continue
                    observed[run.id] = run.error
                    page = owner.get(f"/c/{run.clinic_id}/runs/{run.id}").get_data(as_text=True)
                    if run.error.split(":")[0] in page:
                        shown.add(run.id)
                stop.wait(0.3)

        helpers = [threading.Thread(target=bursts, daemon=True), threading.Thread(target=watch, daemon=True)]
        for t in helpers:
            t.start()
        accepted = post_all(d, customers, invoices)
        idle = d.wait_idle(timeout=300 if quick else 900, settle=5)
        stop.set()
        for t in helpers:  # done before the sandboxes and the database they use go away
            t.join(10)
        figures = vhsys_exactly_once(d, customers, invoices)
        stats = d.sandbox_stats("vhsys")
        figures.update(accepted=accepted, requests=stats["requests"], failures_seen=len(observed),
                       failures_shown=len(shown), seconds=round(time.monotonic() - started, 1), runs=run_states(d),
                       errors=failed_run_errors())
        held = (idle and figures["lost"] == 0 and figures["duplicated"] == 0
                and len(shown) == len(observed))
    held_b, fig_b = r3_token_expiry(quick)
    figures["bling"] = fig_b
    return held and held_b, figures


def r3_token_expiry(quick: bool) -> tuple[bool, dict]:
    """Bling: OAuth tokens expire while pushing (plus 5xx): every refresh serialized, nothing lost."""
    customers = 60 if quick else 200
    with Deployment("r3b", workers=2) as d:
        d.faults("bling", rate_limit=UNLIMITED, error_rate=0.1, seed=5)
        clinic, integration = d.seed("bling", features=("sync_customers",), credentials=_bling_tokens(d))
        d.start_workers()
        stop = threading.Event()
        expiries = {"n": 0}

        def expire():
            # every 5 s: 12 refreshes a minute, inside the 15 a minute the connector allows itself at
            # Bling's token endpoint (20 a minute block the IP); Bling's real tokens last 6 h
            while not stop.wait(5.0):  # woken by the end of the scenario, not after its sandbox is gone
                d.faults("bling", expire_tokens=True)
                expiries["n"] += 1

        expirer = threading.Thread(target=expire, daemon=True)
        expirer.start()
        accepted = 0
        for batch in chunks([{"type": "customer.upserted", "customer": make_customer(i)} for i in range(customers)], 20):
            accepted += len(batch) * (d.post(batch) == 202)
        idle = d.wait_idle(timeout=240 if quick else 600, settle=4)
        stop.set()
        expirer.join(10)
        state = d.sandbox_state("bling")
        contacts = state.get("contatos") or state.get("contacts") or []
        docs = Counter(re.sub(r"\D", "", str(c.get("numeroDocumento") or "")) for c in contacts)
        expected = {make_customer(i)["tax_id"] for i in range(customers)}
        figures = {"customers": len(docs), "lost": len(expected - set(docs)),
                   "duplicated": sum(n - 1 for n in docs.values() if n > 1), "token_expiries": expiries["n"],
                   "runs": run_states(d), "errors": failed_run_errors()}
    return idle and figures["lost"] == 0 and figures["duplicated"] == 0 and accepted == customers, figures


def _bling_tokens(d: Deployment) -> dict:
    return oauth_tokens(d, "bling")


def oauth_tokens(d: Deployment, erp: str) -> dict:
    """Authorize the demo app on an OAuth ERP's sandbox as support would; the credentials to store."""
    from html.parser import HTMLParser
    from urllib.parse import parse_qs, urljoin, urlparse

    import requests

    from integrations.base import ConnectorContext
    from integrations.http import HttpClient
    from integrations.registry import connector_class, sandbox_demo_credentials, sandbox_demo_settings
    creds = sandbox_demo_credentials(erp)
    store: dict = {}
    ctx = ConnectorContext(credentials=dict(creds), settings=sandbox_demo_settings(erp, d.sandbox(erp)),
                           http=HttpClient(None), account_key="chaos-setup", save_credentials=store.update,
                           load_credentials=lambda: dict(store))
    connector = connector_class(erp)(ctx)
    redirect = "http://127.0.0.1/callback"
    page = requests.get(connector.authorize_url(redirect, "s"), timeout=5)

    class Form(HTMLParser):
        def __init__(self):
            super().__init__()
            self.action, self.method, self.fields = "", "get", {}

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "form" and not self.action:
                self.action, self.method = attrs.get("action", ""), (attrs.get("method") or "get").lower()
            if tag in ("input", "button") and attrs.get("name"):
                self.fields.setdefault(attrs["name"], attrs.get("value", ""))

    form = Form()
    form.feed(page.text)
    if form.method == "post":
        answer = requests.post(urljoin(page.url, form.action), data=form.fields, allow_redirects=False, timeout=5)
    else:
        answer = requests.get(urljoin(page.url, form.action), params=form.fields, allow_redirects=False, timeout=5)
    code = parse_qs(urlparse(answer.headers["Location"]).query)["code"][0]
    return connector.exchange_code(code, redirect)


def _owner(d: Deployment):
    """A logged-in owner's browser on the deployment's app."""
    from webapp.extensions import db
    from webapp.models import Clinic, User
    clinic = db.session.scalar(select(Clinic))
    user = User(email=f"owner-{time.time_ns()}@chaos", role="owner", clinic_id=clinic.id)
    user.set_password("chaos-pw")
    db.session.add(user)
    db.session.commit()
    client = d.app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    client.post("/login", data={"email": user.email, "password": "chaos-pw", "csrf_token": token})
    return client


def l1_limits_across_workers(quick: bool) -> tuple[bool, dict]:
    """Every ERP: 4 workers push customers at the ERP's documented limits (scaled up so the run is
    short); the sandbox counts requests over its limit: 0 allowed."""
    from integrations.base import Capability
    from integrations.registry import CONNECTORS, connector_class, sandbox_class
    customers, scale = (80, 10) if quick else (500, 10)
    figures, held = {}, True
    for erp in CONNECTORS:
        cls = connector_class(erp)
        if not cls.supports(Capability.PUSH_CUSTOMERS):
            continue
        with Deployment(f"l1-{erp}", workers=4, extra_env={"TECPET_JOBS_PER_INTEGRATION": "4"}) as d:
            documented = [[n * scale, sec] for n, sec in sandbox_class(erp).default_rate_limit]
            d.faults(erp, rate_limit=documented)
            creds = oauth_tokens(d, erp) if cls.auth_kind == "oauth2" else None
            d.seed(erp, features=("sync_customers",), settings={"rate_limit_scale": str(scale)}, credentials=creds)
            d.start_workers()
            started = time.monotonic()
            events = [{"type": "customer.upserted", "customer": make_customer(i)} for i in range(customers)]
            accepted = sum(len(b) * (d.post(b) == 202) for b in chunks(events, max(1, customers // 8)))
            idle = d.wait_idle(timeout=300 if quick else 900)
            stats = d.sandbox_stats(erp)
            from webapp.extensions import db
            from webapp.models import SyncRun
            db.session.rollback()
            created = sum(r.created + r.updated for r in db.session.scalars(select(SyncRun)))
            row = {"pushed": created, "requests": stats["requests"], "over_limit": stats["over_limit"],
                   "seconds": round(time.monotonic() - started, 1)}
            figures[erp] = row
            held &= idle and accepted == customers and created == customers and stats["over_limit"] == 0
    return held, figures

"""P1 push overhead, P2 rate efficiency and P3 batching: customers pushed through the real pipeline
(outbox -> webapp.sync.outbox.dispatch -> RQ -> `worker.py --burst` processes -> connector ->
bindings) to an ERP sandbox served in its own process."""
from __future__ import annotations

import random
import time
from datetime import datetime

import requests
from sqlalchemy import func, select

from .common import SandboxProcess, start_workers, wait_workers

HUGE_LIMIT = [(10 ** 9, 1.0)]
HUGE_SCALE = "1000000000"


# --------------------------------------------------------------------------- customers that can be sent
def push_customers(n: int, erp: str, seed: int) -> list[dict]:
    """`n` valid customers (no health error for this ERP, accepted by its sandbox), normalized as stored."""
    from bench.bench_health import valid_record
    from integrations import brazil
    from integrations.registry import connector_class
    from webapp.events import normalize_customer
    from webapp.health import check_customer, has_errors
    reqs = connector_class(erp).record_requirements
    validator = None
    if erp == "vhsys":
        from integrations.vhsys.mapping import customer_payload
        from integrations.vhsys.sandbox import Sandbox
        from integrations.base import CustomerRecord
        probe = Sandbox()
        validator = lambda c: not probe.validate_customer(customer_payload(CustomerRecord(  # noqa: E731
            id=c["external_id"], **{k: v for k, v in c.items() if k in CustomerRecord.__dataclass_fields__})), True)
    rng = random.Random(seed)
    codes = sorted(brazil.municipalities().by_code)
    out, seen_tax_ids, i = [], set(), 0
    while len(out) < n:
        i += 1
        c = normalize_customer(valid_record(rng, i, codes))
        c["external_id"] = f"push-{seed}-{i}"
        if c["tax_id"] in seen_tax_ids or has_errors(check_customer(dict(c, id=c["external_id"]), reqs)):
            continue
        if validator is not None and not validator(c):
            continue
        seen_tax_ids.add(c["tax_id"])
        out.append(c)
    return out


def setup_clinic(db, erp: str, sandbox_url: str, customers: list[dict], *, scale: str, name: str) -> dict:
    """A clinic with an enabled integration pointing at the sandbox and its customers stored (health cached)."""
    from webapp import credentials
    from webapp.models import Clinic, Customer, Integration
    from .datagen import CUSTOMER_COLUMNS, _bulk
    if erp == "vhsys":
        from integrations.vhsys.sandbox import DEMO_CREDENTIALS
        creds, settings = dict(DEMO_CREDENTIALS), {"base_url": sandbox_url}
    elif erp == "omie":
        from integrations.omie.sandbox import DEMO_CREDENTIALS, DEMO_SETTINGS
        creds, settings = dict(DEMO_CREDENTIALS), dict(DEMO_SETTINGS, base_url=sandbox_url + "/api/v1/")
    else:  # pragma: no cover
        raise ValueError(erp)
    settings["rate_limit_scale"] = scale
    clinic = Clinic(name=name)
    db.session.add(clinic)
    db.session.flush()
    integ = Integration(clinic_id=clinic.id, erp=erp, enabled=True, features=["sync_customers"],
                        credentials_encrypted=credentials.encrypt(creds), settings=settings)
    db.session.add(integ)
    db.session.commit()
    now = datetime.utcnow()
    _bulk(db, Customer.__table__, CUSTOMER_COLUMNS, [
        (clinic.id, c["external_id"], c["person_type"], c["name"], c["tax_id"], c["state_registration"], c["email"],
         c["phone"], c["zip_code"], c["street"], c["number"], c["complement"], c["district"], c["city"],
         c["city_ibge_code"], c["state"], now, 0, 0, []) for c in customers])
    if db.engine.dialect.name == "postgresql":
        # a clinic's customers exist long before its integration does, and autovacuum has looked
        # at them by then (the data generator analyzes its tables too); only what the sync itself
        # writes is newer than the statistics
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE customers")
            conn.commit()
    ids = list(db.session.scalars(select(Customer.id).where(Customer.clinic_id == clinic.id).order_by(Customer.id)))
    return {"clinic_id": clinic.id, "integration_id": integ.id, "customer_ids": ids}


def _queue_outbox(db, clinic_id: int, integration_id: int, customer_ids: list[int] | None) -> None:
    """The outbox rows the product writes: one initial sync, or one customer.upserted per customer."""
    from webapp.sync import outbox
    if customer_ids is None:
        outbox.record(clinic_id, "sync.initial", integration_id=integration_id, trigger="initial")
    else:
        for cid in customer_ids:
            outbox.record(clinic_id, "customer.upserted", cid, integration_id=integration_id)
    db.session.commit()


def _runs(db, integration_id: int):
    from webapp.models import SyncRun
    db.session.expire_all()
    return list(db.session.scalars(select(SyncRun).where(SyncRun.integration_id == integration_id)))


def _bindings(db, integration_id: int) -> int:
    from webapp.models import Binding
    return db.session.scalar(select(func.count()).select_from(Binding).where(
        Binding.integration_id == integration_id, Binding.state == "bound"))


# --------------------------------------------------------------------------- P1
def plain_loop(url: str, payloads: list[dict], headers: dict) -> float:
    """The physical limit: one requests.Session POSTing every payload, nothing else."""
    s = requests.Session()
    s.headers.update(headers)
    started = time.perf_counter()
    for body in payloads:
        resp = s.post(url, json=body, timeout=30)
        if resp.status_code != 200 or resp.json().get("code") != 200:
            raise RuntimeError(f"the sandbox refused a plain POST: {resp.status_code} {resp.text[:200]}")
    seconds = time.perf_counter() - started
    s.close()
    return seconds


def worker_startup(dbase) -> float:
    """Seconds a `worker.py --burst` takes to start and exit on empty queues (interpreter + imports + app)."""
    t = time.perf_counter()
    errors = wait_workers(start_workers(dbase, 1), 120)
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - t


def p1(dbase, db, n: int, workers: int = 1) -> dict:
    from integrations.vhsys import mapping
    from integrations.vhsys.client import VhsysConnector
    from integrations.vhsys.sandbox import DEMO_CREDENTIALS
    from webapp.models import Customer
    from webapp.sync import outbox
    from webapp.sync.records import customer_record
    customers = push_customers(n, "vhsys", seed=101)
    with SandboxProcess("vhsys", rate_limit=HUGE_LIMIT) as sb:
        info = setup_clinic(db, "vhsys", sb.url, customers, scale=HUGE_SCALE, name="P1 push")
        rows = list(db.session.scalars(select(Customer).where(Customer.clinic_id == info["clinic_id"])
                                       .order_by(Customer.id)))
        payloads = [mapping.customer_payload(customer_record(c)) for c in rows]
        headers = {"access-token": DEMO_CREDENTIALS["access_token"],
                   "secret-access-token": DEMO_CREDENTIALS["secret_access_token"],
                   "Content-Type": "application/json", "Cache-Control": "no-cache",
                   "User-Agent": "TecPet-Integrations/1.0"}
        # side by side: the plain loop's first half before the pipeline and its second half after
        # it, so that the host's drift over the minute both take lands on each side alike
        half = len(payloads) // 2
        plain_s = plain_loop(sb.url + "/clientes", payloads[:half], headers)
        plain_requests = sb.stats()["requests"]
        sb.reset()

        _queue_outbox(db, info["clinic_id"], info["integration_id"], None)
        started = time.perf_counter()
        run_ids = outbox.dispatch()
        dispatched = time.perf_counter()
        procs = start_workers(dbase, workers)
        errors = wait_workers(procs, 3600)
        pipeline_s = time.perf_counter() - started
        stats = sb.stats()
        runs = _runs(db, info["integration_id"])
        bound = _bindings(db, info["integration_id"])
        sb.reset()  # the second half creates its customers in an empty sandbox, as the first did
        plain_s += plain_loop(sb.url + "/clientes", payloads[half:], headers)
        plain_requests += sb.stats()["requests"]
    startup = worker_startup(dbase)
    run = runs[0] if runs else None
    ok_run = run is not None and run.status == "succeeded" and run.created == n and bound == n and not errors
    processing = (run.finished_at - run.started_at).total_seconds() if run and run.finished_at and run.started_at else None
    return {
        "customers": n, "workers": workers, "plain_s": round(plain_s, 3), "pipeline_s": round(pipeline_s, 3),
        "ratio": round(pipeline_s / plain_s, 3), "target": 1.3,
        "dispatch_s": round(dispatched - started, 3), "worker_startup_s": round(startup, 3),
        "run_processing_s": round(processing, 3) if processing is not None else None,
        "plain_requests": plain_requests, "pipeline_requests": stats["requests"], "by_route": stats["by_route"],
        "run": {"id": run.id, "status": run.status, "created": run.created, "failed": run.failed,
                "skipped": run.skipped, "enqueues": run.enqueues} if run else None,
        "bindings": bound, "run_ids": run_ids, "valid": ok_run, "worker_errors": errors,
        "connector_batch_size": VhsysConnector.batch_size,
    }


# --------------------------------------------------------------------------- P2
def p2(dbase, db, duration: float, workers: int = 4, scale: int = 10, runs: int = 4) -> dict:
    """Workers against the VHSYS sandbox limited to what VHSYS is taken to enforce, scaled up."""
    from integrations.vhsys.client import ASSUMED_ERP_LIMITS, VhsysConnector
    from webapp.sync import outbox
    erp_limit = [(int(c * scale), s) for c, s in ASSUMED_ERP_LIMITS]
    # the windows that bind over a run of `duration` seconds (an hourly quota does not, at this size)
    allowed_rate = min(c / s for c, s in erp_limit if s <= duration) if any(s <= duration for _, s in erp_limit) \
        else min(c / s for c, s in erp_limit)
    own_windows = [(max(1, int(c * scale)), s) for c, s in VhsysConnector.rate_limit.windows]
    own_rate = min(c / s for c, s in own_windows if s <= duration) if any(s <= duration for _, s in own_windows) \
        else min(c / s for c, s in own_windows)
    # ~3 requests per new customer today (two searches and a create); enough work for `duration` at the limit
    n = max(20, int(allowed_rate * duration / 3))
    customers = push_customers(n, "vhsys", seed=202)
    with SandboxProcess("vhsys", rate_limit=erp_limit) as sb:
        info = setup_clinic(db, "vhsys", sb.url, customers, scale=str(scale), name="P2 rate")
        ids = info["customer_ids"]
        per = -(-len(ids) // runs)
        for k in range(runs):  # several runs, so that several workers have a job
            _queue_outbox(db, info["clinic_id"], info["integration_id"], ids[k * per:(k + 1) * per])
            outbox.dispatch()
        samples = []
        # every worker may take this integration's jobs at once: P2 measures the shared rate limiter
        procs = start_workers(dbase, workers, extra_env={"TECPET_JOBS_PER_INTEGRATION": str(workers)})
        t0 = time.perf_counter()
        while any(p.poll() is None for p in procs) and time.perf_counter() - t0 < 600:
            samples.append((time.perf_counter(), sb.stats()))
            time.sleep(0.2)
        errors = wait_workers(procs, 60)
        samples.append((time.perf_counter(), sb.stats()))
        runs_done = _runs(db, info["integration_id"])
    # steady state: from one second after the first request to the last sample before the work ended
    active = [(t, s["requests"]) for t, s in samples if s["requests"] > 0]
    final_requests = samples[-1][1]["requests"]
    last = next((i for i, (t, r) in enumerate(active) if r == final_requests), len(active) - 1)
    first_t = active[0][0] if active else 0
    window = [(t, r) for t, r in active[:last + 1] if t >= first_t + 1.0]
    if len(window) >= 2:
        achieved = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
        span = window[-1][0] - window[0][0]
    else:
        achieved, span = float("nan"), 0.0
    over = samples[-1][1]["over_limit"]
    created = sum(r.created for r in runs_done)
    return {
        "erp": "vhsys", "workers": workers, "scale": scale, "customers": n, "runs": len(runs_done),
        "erp_limit": erp_limit, "allowed_rate": allowed_rate, "own_budget_rate": own_rate,
        "achieved_rate": round(achieved, 2), "measured_s": round(span, 2),
        "ratio": round(achieved / allowed_rate, 3), "ratio_own_budget": round(achieved / own_rate, 3),
        "target": 0.95, "over_limit": over, "requests": final_requests, "created": created,
        "valid": created == n and not errors, "worker_errors": errors,
    }


# --------------------------------------------------------------------------- P3
def p3(dbase, db, n: int = 1000) -> dict:
    """Requests per 1,000 customers for ERPs with batch calls (Omie), when the product registers them."""
    from integrations.registry import CONNECTORS
    out = {}
    for erp in ("omie",):
        if erp not in CONNECTORS:
            out[erp] = {"measured": False, "why": f"{erp} is not registered in integrations/registry.py yet"}
            continue
        from webapp.sync import outbox
        customers = push_customers(n, erp, seed=303)
        faults = {"rate_limit": HUGE_LIMIT}
        if erp == "omie":
            faults["ip_rate_limit"] = HUGE_LIMIT
        with SandboxProcess(erp, **faults) as sb:
            info = setup_clinic(db, erp, sb.url, customers, scale=HUGE_SCALE, name=f"P3 {erp}")
            _queue_outbox(db, info["clinic_id"], info["integration_id"], None)
            t = time.perf_counter()
            outbox.dispatch()
            errors = wait_workers(start_workers(dbase, 1), 1800)
            seconds = time.perf_counter() - t
            stats = sb.stats()
            runs = _runs(db, info["integration_id"])
        created = sum(r.created + r.updated for r in runs)
        out[erp] = {"measured": True, "customers": n, "requests": stats["requests"], "by_route": stats["by_route"],
                    "per_1000": round(stats["requests"] * 1000 / n, 1), "target": 25, "seconds": round(seconds, 2),
                    "sent": created, "valid": created == n and not errors, "worker_errors": errors}
    return out

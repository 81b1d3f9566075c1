"""P4 pages under load and P6 job-status polling, against gunicorn on loopback, plus SQL queries
counted per page (a SQLAlchemy event listener on an in-process app)."""
from __future__ import annotations

import re
import threading
import time
from datetime import datetime

from sqlalchemy import event, update

from . import loadgen
from .common import browser_headers, login_session, ms, percentile


def page_paths(data: dict) -> dict[str, str]:
    cid = data["clinic_a"]
    return {
        "dashboard": f"/c/{cid}/",
        "warnings": f"/c/{cid}/customers/warnings",
        "runs": f"/c/{cid}/runs",
        "run_100": f"/c/{cid}/runs/{data['a']['run_100']}",
        "run_big": f"/c/{cid}/runs/{data['a']['run_big']}",
    }


def count_queries(app, data: dict, paths: dict[str, str]) -> dict[str, dict]:
    """SQL statements and their time per page, as one logged-in owner request (warm) executes them."""
    from webapp.extensions import db
    out = {}
    with app.app_context():
        engine = db.engine
    state = {"n": 0, "t": 0.0, "stack": [], "each": []}

    def before(conn, cursor, statement, parameters, context, executemany):
        state["stack"].append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany):
        took = time.perf_counter() - state["stack"].pop()
        state["n"] += 1
        state["t"] += took
        state["each"].append((took, " ".join(statement.split())))

    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    resp = client.post("/login", data={"email": data["owner_a"], "password": data["password"], "csrf_token": token})
    if resp.status_code != 302:
        raise RuntimeError(f"in-process login failed: {resp.status_code}")
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for name, path in paths.items():
            client.get(path)  # warm
            state.update(n=0, t=0.0, each=[])
            t = time.perf_counter()
            resp = client.get(path)
            total = time.perf_counter() - t
            slowest = sorted(state["each"], reverse=True)[:2]
            out[name] = {"status": resp.status_code, "queries": state["n"], "sql_ms": ms(state["t"]),
                         "request_ms": ms(total),
                         "slowest_sql": [f"{ms(t_)} ms: {sql[:160]}" for t_, sql in slowest]}
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    return out


def _p95(result: loadgen.Result) -> float:
    return percentile(result.latencies, 95) if result.latencies else float("nan")


SERVER = {"workers": 2, "threads": 4}  # P6: one gunicorn, as `make run` starts it
# P4: two single-worker servers (4 threads each, as a `make run` worker), the 20 clients shared 10
# and 10 (bench/common.gunicorn_servers)
P4_SERVERS = {"servers": 2, "threads": 4}


def side_by_side(base, path: str, clients: int, duration: float, headers: dict, slices: int = 5):
    """The page and /healthz under the same load, in alternating slices (ABBA: healthz then page,
    page then healthz, ...), `duration` seconds of each in all: the machine's speed drifts over a
    minute on a shared host, and a healthz measured only before and after every page let that
    drift into the ratio."""
    page, health = loadgen.Result(), loadgen.Result()
    step = duration / slices
    for k in range(slices):
        order = (("/healthz", health), (path, page)) if k % 2 == 0 else ((path, page), ("/healthz", health))
        for p, into in order:
            got = loadgen.closed_loop(base, [p], clients, step, headers)[p]
            into.merge(got)
    return page, health


def p4(dbase, base: str | list[str], data: dict, duration: float, clients: int = 20, warm: float = 0.5) -> dict:
    """20 closed-loop clients on each page in turn, each page side by side with /healthz on the same
    server(s): given several, the clients are shared out evenly between them."""
    paths = page_paths(data)
    app = dbase.app()
    queries = count_queries(app, data, paths)
    servers = [base] if isinstance(base, str) else list(base)
    out: dict = {"clients": clients, "duration_s": duration,
                 "server": f"{len(servers)} x gunicorn 1 worker x {P4_SERVERS['threads']} thread(s), clients shared evenly",
                 "pages": {}, "target": 5.0}
    headers = browser_headers(login_session(servers[0], data["owner_a"], data["password"]))
    for path in ["/healthz", *paths.values()]:  # warm every worker thread's imports and caches
        loadgen.closed_loop(base, [path], clients, warm, headers)
    all_health = loadgen.Result()
    worst = 0.0
    for name, path in paths.items():
        res, health = side_by_side(base, path, clients, duration, headers)
        all_health.merge(health)
        page = out["pages"][name] = {
            "path": path, "requests": len(res.latencies), "errors": res.errors + health.errors,
            "statuses": res.statuses, "p50_ms": ms(percentile(res.latencies, 50)), "p95_ms": ms(_p95(res)),
            "healthz_p95_ms": ms(_p95(health)), **queries.get(name, {})}
        page["ratio"] = round(page["p95_ms"] / page["healthz_p95_ms"], 2) if page["healthz_p95_ms"] else None
        worst = max(worst, page["ratio"] or 0)
        page["ok"] = page["ratio"] is not None and page["ratio"] <= out["target"] and page["errors"] == 0
    out["healthz_p95_ms"] = ms(_p95(all_health))
    out["worst_ratio"] = worst
    return out


def p6(base: str, db, data: dict, duration: float, clients: int = 200) -> dict:
    """200 browsers polling a running run's progress partial once a second, while a writer advances it."""
    from webapp.models import SyncRun
    run = SyncRun(clinic_id=data["clinic_a"], integration_id=data["integration_a"], erp="vhsys", direction="push",
                  entity="customer", trigger="initial", status="running", total=100_000, done=0,
                  queued_at=datetime.utcnow(), started_at=datetime.utcnow(), heartbeat_at=datetime.utcnow())
    db.session.add(run)
    db.session.commit()
    run_id = run.id
    path = f"/c/{data['clinic_a']}/runs/{run_id}/progress"
    stop = threading.Event()
    writes = {"n": 0}
    engine = db.engine

    def writer():  # the worker's progress commits: twice a second, as a batch of 50 records would
        while not stop.wait(0.5):
            with engine.begin() as conn:
                conn.execute(update(SyncRun).where(SyncRun.id == run_id).values(
                    done=SyncRun.done + 50, created=SyncRun.created + 50, heartbeat_at=datetime.utcnow()))
            writes["n"] += 1

    headers = {**browser_headers(login_session(base, data["owner_a"], data["password"])), "HX-Request": "true"}
    loadgen.closed_loop(base, [path], 20, 0.5, headers)  # warm
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        res = loadgen.pollers(base, path, clients, duration, 1.0, headers)
    finally:
        stop.set()
        t.join(5)
    p95 = _p95(res)
    return {"clients": clients, "duration_s": duration, "path": path, "requests": len(res.latencies),
            "errors": res.errors, "statuses": res.statuses, "rate_per_s": round(len(res.latencies) / duration, 1),
            "p50_ms": ms(percentile(res.latencies, 50)), "p95_ms": ms(p95), "p99_ms": ms(percentile(res.latencies, 99)),
            "max_ms": ms(max(res.latencies)) if res.latencies else None, "progress_writes": writes["n"],
            "target_ms": 20.0, "ok": res.errors == 0 and ms(p95) <= 20.0}

"""Fill the database to the size of a large TecPet account, fast.

Clinic A: `customers` customers (realistic records from bench_health's generator, a quarter with a
typical fault, health cached as the product caches it), `runs` sync runs (the first is the initial
sync with one record per customer; one has exactly 100 records) and `records` sync records in all.
Clinic B: a little data (another tenant on the same tables).

Bulk loads: SQLAlchemy Core insert() with executemany on SQLite, COPY on PostgreSQL.
Usage: python -m bench.datagen [--customers N --records N --runs N]  (on DATABASE_URL, already migrated)
"""
from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta

from sqlalchemy import insert, select

FULL = {"customers": 100_000, "records": 1_000_000, "runs": 10_000}
SMALL = {"customers": 2_000, "records": 20_000, "runs": 200}

OWNER_A = "dono@grande.bench"
OWNER_B = "dona@pequena.bench"
SUPPORT = "suporte@bench.test"
PASSWORD = "bench-password"

OUTCOMES = (("created", 30), ("updated", 40), ("unchanged", 20), ("skipped", 7), ("failed", 3))
MESSAGES = {
    "created": "", "updated": "", "unchanged": "Already up to date in the ERP",
    "skipped": "Not sent: fix the customer record first (CPF/CNPJ inválido: confira os dígitos)",
    "failed": "VHSYS recusou o cadastro: O campo numero_cliente deve ter no máximo 7 caracteres!",
}
CUSTOMER_COLUMNS = ("clinic_id", "external_id", "person_type", "name", "tax_id", "state_registration", "email",
                    "phone", "zip_code", "street", "number", "complement", "district", "city", "city_ibge_code",
                    "state", "updated_at", "health_errors", "health_warnings", "health_problems")
RUN_COLUMNS = ("clinic_id", "integration_id", "erp", "direction", "entity", "trigger", "status", "total", "done",
               "created", "updated", "unchanged", "skipped", "failed", "error", "queued_at", "enqueued_at",
               "started_at", "heartbeat_at", "finished_at", "attempts", "job_id", "enqueues")
RECORD_COLUMNS = ("run_id", "entity", "local_id", "remote_id", "label", "outcome", "message", "attempts",
                  "finished_at")


def _bulk(db, table, columns: tuple[str, ...], rows, chunk: int = 50_000) -> None:
    """Insert tuples: COPY on PostgreSQL, Core insert() executemany elsewhere."""
    rows = list(rows) if not isinstance(rows, list) else rows
    if not rows:
        return
    if db.engine.dialect.name == "postgresql":
        json_cols = {i for i, c in enumerate(columns) if c in ("health_problems",)}
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    if json_cols:
                        row = tuple(json.dumps(v) if i in json_cols else v for i, v in enumerate(row))
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    with db.engine.begin() as conn:
        stmt = insert(table)
        for start in range(0, len(rows), chunk):
            conn.execute(stmt, [dict(zip(columns, r)) for r in rows[start:start + chunk]])


def _customers(count: int, seed: int):
    """Realistic customers (bench_health's generator), normalized as the events API stores them,
    with the health rules' verdict cached as the product caches it."""
    from bench.bench_health import generate
    from integrations.registry import connector_class
    from webapp.events import normalize_customer
    from webapp.health import check_many
    raw = generate(count, seed=seed)
    normalized = [normalize_customer(r) for r in raw]
    problems = check_many([dict(n, id=n["external_id"]) for n in normalized],
                          connector_class("vhsys").record_requirements)
    return normalized, problems


def _owner(db, clinic_id, email, role, pw_hash):
    from webapp.models import User
    db.session.add(User(email=email, name=email.split("@")[0], role=role, clinic_id=clinic_id, password_hash=pw_hash))


def _integration(db, clinic_id: int):
    from webapp import credentials
    from webapp.models import Integration
    from integrations.vhsys.sandbox import DEMO_CREDENTIALS
    integ = Integration(clinic_id=clinic_id, erp="vhsys", enabled=True,
                        features=["sync_customers", "generate_financial", "issue_invoice", "pull_back"],
                        credentials_encrypted=credentials.encrypt(dict(DEMO_CREDENTIALS)),
                        credential_hints={"access_token": "••••0001"},
                        settings={"base_url": "http://127.0.0.1:9/v2"})
    db.session.add(integ)
    db.session.flush()
    return integ


def _load_clinic(db, clinic_id: int, integration_id: int, n_customers: int, n_records: int, n_runs: int,
                 seed: int, now: datetime, *, special_sizes: bool) -> dict:
    from webapp.models import Customer, CustomerProblem, SyncRecord, SyncRun
    rng = random.Random(seed)
    t = time.perf_counter()
    normalized, problems = _customers(n_customers, seed)
    t_gen = time.perf_counter() - t
    rows = []
    for c, probs in zip(normalized, problems):
        errors = sum(1 for p in probs if p.severity == "error")
        rows.append((clinic_id, c["external_id"], c["person_type"], c["name"], c["tax_id"], c["state_registration"],
                     c["email"], c["phone"], c["zip_code"], c["street"], c["number"], c["complement"], c["district"],
                     c["city"], c["city_ibge_code"], c["state"], now, errors, len(probs) - errors,
                     [{"field": p.field, "code": p.code, "severity": p.severity, "message": p.message} for p in probs]))
    _bulk(db, Customer.__table__, CUSTOMER_COLUMNS, rows)
    customer_ids = list(db.session.scalars(select(Customer.id).where(Customer.clinic_id == clinic_id)
                                           .order_by(Customer.id)))
    names = [c["name"] for c in normalized]
    prob_rows = [(clinic_id, cid, p.field, p.code, p.severity)
                 for cid, probs in zip(customer_ids, problems) for p in probs]
    _bulk(db, CustomerProblem.__table__, ("clinic_id", "customer_id", "field", "code", "severity"), prob_rows)

    # Run sizes: the initial sync (one record per customer), one run of exactly 100, the rest even.
    sizes = []
    if special_sizes:
        sizes = [n_customers, 100]
    rest_runs = n_runs - len(sizes)
    rest_records = n_records - sum(sizes)
    base, extra = divmod(rest_records, rest_runs) if rest_runs else (0, 0)
    sizes += [base + (1 if i < extra else 0) for i in range(rest_runs)]
    # the 100-record run sits in the middle of history, not at the end
    if special_sizes and len(sizes) > 3:
        sizes.insert(len(sizes) // 2, sizes.pop(1))
    outcome_cycle = [o for o, w in OUTCOMES for _ in range(w)]
    rng.shuffle(outcome_cycle)
    span = timedelta(days=365)
    run_rows, run_outcomes = [], []
    cursor = 0
    for i, size in enumerate(sizes):
        queued = now - span + span * (i / max(1, len(sizes)))
        started = queued + timedelta(seconds=2)
        finished = started + timedelta(seconds=max(1, size // 4))
        pull = (not special_sizes or i != 0) and i % 5 == 4
        start = rng.randrange(len(outcome_cycle))
        outs = [outcome_cycle[(start + k) % len(outcome_cycle)] for k in range(size)]
        counts = {o: 0 for o, _ in OUTCOMES}
        for o in outs:
            counts[o] += 1
        status = "partial" if counts["failed"] else "succeeded"
        trigger = "initial" if (special_sizes and i == 0) else ("schedule" if pull else "event")
        run_rows.append((clinic_id, integration_id, "vhsys", "pull" if pull else "push", "all" if pull else "customer",
                         trigger, status, size, size, counts["created"], counts["updated"], counts["unchanged"],
                         counts["skipped"], counts["failed"], "", queued, queued, started, finished, finished, 1,
                         f"run-bench-{i}", 1))
        run_outcomes.append((cursor, outs, finished))
        cursor = (cursor + size) % max(1, len(customer_ids))
    _bulk(db, SyncRun.__table__, RUN_COLUMNS, run_rows)
    run_ids = list(db.session.scalars(select(SyncRun.id).where(SyncRun.clinic_id == clinic_id).order_by(SyncRun.id)))
    rec_rows = []
    n_cust = len(customer_ids)
    for run_id, (first, outs, finished) in zip(run_ids, run_outcomes):
        for k, o in enumerate(outs):
            ci = (first + k) % n_cust
            cid = customer_ids[ci]
            rec_rows.append((run_id, "customer", cid, "" if o == "skipped" else str(500_000 + cid), names[ci], o,
                             MESSAGES[o], 1, finished))
        if len(rec_rows) >= 200_000:
            _bulk(db, SyncRecord.__table__, RECORD_COLUMNS, rec_rows)
            rec_rows = []
    _bulk(db, SyncRecord.__table__, RECORD_COLUMNS, rec_rows)
    by_size = dict(zip(run_ids, sizes))
    run_100 = next((rid for rid, s in by_size.items() if s == 100), None)
    run_big = max(by_size, key=by_size.get) if by_size else None
    return {"customers": len(customer_ids), "problems": len(prob_rows), "runs": len(run_ids),
            "records": sum(sizes), "run_100": run_100, "run_big": run_big, "run_big_size": by_size.get(run_big, 0),
            "customer_gen_s": round(t_gen, 2)}


def generate(db, customers: int, records: int, runs: int, seed: int = 2026) -> dict:
    """Fill an empty, migrated database (inside an app context). Returns ids and counts."""
    from werkzeug.security import generate_password_hash
    from webapp.models import ApiToken, Clinic
    started = time.perf_counter()
    now = datetime.utcnow().replace(microsecond=0)
    a, b = Clinic(name="Clínica Veterinária Grande Rede"), Clinic(name="Clínica Pequena")
    db.session.add_all([a, b])
    db.session.flush()
    pw = generate_password_hash(PASSWORD)
    _owner(db, a.id, OWNER_A, "owner", pw)
    _owner(db, b.id, OWNER_B, "owner", pw)
    _owner(db, None, SUPPORT, "support", pw)
    token_row, token = ApiToken.issue(a.id)
    db.session.add(token_row)
    ia, ib = _integration(db, a.id), _integration(db, b.id)
    a_id, b_id, ia_id, ib_id = a.id, b.id, ia.id, ib.id
    db.session.commit()
    big = _load_clinic(db, a_id, ia_id, customers, records, runs, seed, now, special_sizes=True)
    small = _load_clinic(db, b_id, ib_id, max(50, customers // 500), max(500, records // 1000),
                         max(5, runs // 1000), seed + 1, now, special_sizes=False)
    if db.engine.dialect.name == "postgresql":
        # what autovacuum does after a bulk load (statistics, visibility map), done now for a stable plan
        raw = db.engine.raw_connection()
        try:
            raw.driver_connection.autocommit = True
            raw.driver_connection.execute("VACUUM ANALYZE")
        finally:
            raw.close()
    seconds = time.perf_counter() - started
    return {"clinic_a": a_id, "clinic_b": b_id, "integration_a": ia_id, "owner_a": OWNER_A, "owner_b": OWNER_B,
            "password": PASSWORD, "api_token_a": token, "a": big, "b": small, "seconds": round(seconds, 2)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=FULL["customers"])
    parser.add_argument("--records", type=int, default=FULL["records"])
    parser.add_argument("--runs", type=int, default=FULL["runs"])
    args = parser.parse_args(argv)
    from webapp import create_app
    from webapp.extensions import db
    app = create_app()
    with app.app_context():
        print(json.dumps(generate(db, args.customers, args.records, args.runs), default=str))


if __name__ == "__main__":
    main()

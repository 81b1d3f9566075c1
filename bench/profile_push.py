"""Where P1's pipeline time goes: the same push (outbox -> dispatch -> RQ job -> connector -> bindings)
worked by RQ's SimpleWorker in this process under cProfile, against the VHSYS sandbox in its own
process. Prints the time of the pipeline's stages (cumulative, so nested stages overlap) and the
functions with the most own time.

    python -m bench.profile_push [--customers 2000] [--db sqlite|postgresql] [--out /tmp/push.prof]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

from .common import REDIS_URL, Database, SandboxProcess, flush_redis

# (label, file suffix, function name): cumulative time of these entry points
STAGES = [
    ("whole job (execute_run)", "webapp/sync/jobs.py", "_execute_run"),
    ("customer step (push_customer_chunk)", "webapp/sync/customer_step.py", "push_customer_chunk"),
    ("  Redis record locks (acquire)", "contextlib.py", "__enter__"),
    ("  connector.upsert_customers", "integrations/base.py", "upsert_customers"),
    ("    find_customer (search before create)", "integrations/vhsys/client.py", "find_customer"),
    ("    create_customer", "integrations/vhsys/client.py", "create_customer"),
    ("    HttpClient.request (all ERP calls)", "integrations/http.py", "request"),
    ("      Redis rate limiter", "integrations/http.py", "acquire"),
    ("      requests Session.request", "requests/sessions.py", "request"),
    ("  health rules (check_customer)", "webapp/health.py", "check_customer"),
    ("  payload hash (Binding.hash_payload)", "webapp/models.py", "hash_payload"),
    ("  step reads (one query)", "webapp/sync/customer_step.py", "_rows"),
    ("  step writes (bulk statements + commit)", "webapp/sync/customer_step.py", "_write"),
    ("  SQL: Session.execute/scalars", "sqlalchemy/orm/session.py", "execute"),
    ("  SQL: Session.commit", "sqlalchemy/orm/session.py", "commit"),
    ("next pending ids (runs.pending_ids)", "webapp/sync/runs.py", "pending_ids"),
    ("DBAPI cursor.execute", "sqlalchemy/engine/default.py", "do_execute"),
    ("DBAPI cursor.executemany", "sqlalchemy/engine/default.py", "do_executemany"),
]


def profile(kind: str, n: int, out: str | None) -> dict:
    from rq import Queue, SimpleWorker
    import redis
    from webapp.extensions import db
    from webapp.queues import QUEUE_NAMES
    from webapp.sync import outbox
    from .push import HUGE_LIMIT, HUGE_SCALE, _queue_outbox, push_customers, setup_clinic
    flush_redis()
    dbase = Database(kind)
    dbase.create()
    app = dbase.app()
    try:
        with app.app_context(), SandboxProcess("vhsys", rate_limit=HUGE_LIMIT) as sb:
            customers = push_customers(n, "vhsys", seed=404)
            info = setup_clinic(db, "vhsys", sb.url, customers, scale=HUGE_SCALE, name="profile")
            _queue_outbox(db, info["clinic_id"], info["integration_id"], None)
            outbox.dispatch()
            db.session.remove()
            conn = redis.Redis.from_url(REDIS_URL)
            worker = SimpleWorker([Queue(q, connection=conn) for q in QUEUE_NAMES], connection=conn)
            prof = cProfile.Profile()
            t = time.perf_counter()
            prof.enable()
            worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
            prof.disable()
            wall = time.perf_counter() - t
            stats = sb.stats()
    finally:
        dbase.drop()
    if out:
        prof.dump_stats(out)
    st = pstats.Stats(prof)
    stages = []
    for label, suffix, name in STAGES:
        cum = sum(v[3] for (f, _, fn), v in st.stats.items() if fn == name and f.replace("\\", "/").endswith(suffix))
        calls = sum(v[1] for (f, _, fn), v in st.stats.items() if fn == name and f.replace("\\", "/").endswith(suffix))
        stages.append({"stage": label, "seconds": round(cum, 3), "calls": calls})
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
    return {"customers": n, "db": kind, "wall_s": round(wall, 3), "requests": stats["requests"],
            "by_route": stats["by_route"], "stages": stages, "top_tottime": buf.getvalue()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--out", default=None, help="also write the raw cProfile stats here")
    args = parser.parse_args(argv)
    import logging
    logging.basicConfig(level=logging.WARNING)
    r = profile(args.db, args.customers, args.out)
    print(f"profile of the push pipeline: {r['customers']} customers on {r['db']}, {r['wall_s']} s wall "
          f"(under cProfile), {r['requests']} ERP requests {r['by_route']}")
    for s in r["stages"]:
        share = 100 * s["seconds"] / r["wall_s"] if r["wall_s"] else 0
        print(f"  {s['stage']:<45} {s['seconds']:>8.3f} s {share:5.1f}%  calls {s['calls']}")
    print(r["top_tottime"])
    print(json.dumps({k: v for k, v in r.items() if k != "top_tottime"}))


if __name__ == "__main__":
    main()

"""The real `worker.py` in its own process picks up a queued run and finishes it."""
from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from webapp.models import SyncRun

from .conftest import ROOT, TEST_REDIS_URL
from .helpers import VALID_CUSTOMERS, customer_event, post_events
from .test_walking_skeleton import sandbox_state, setup_vhsys


def test_worker_process_runs_the_initial_sync(world, web, api, vhsys_sandbox, db_session, database_url):
    cid = world["clinic_a"].id
    post_events(api, world["token_a"], *[customer_event(c) for c in VALID_CUSTOMERS])
    setup_vhsys(web("support@test"), cid, vhsys_sandbox, features=("sync_customers",))
    run = db_session.scalar(select(SyncRun))
    assert run.status == "queued"
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=TEST_REDIS_URL)
    proc = subprocess.run([sys.executable, "worker.py", "--burst", "--tick", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    db_session.expire_all()
    run = db_session.get(SyncRun, run.id)
    assert (run.status, run.created) == ("succeeded", 3), run.error
    assert len(sandbox_state(vhsys_sandbox)["clientes"]) == 3
    # the worker's log never carries the credentials
    from integrations.vhsys.sandbox import DEMO_CREDENTIALS
    for secret in DEMO_CREDENTIALS.values():
        assert secret not in proc.stdout + proc.stderr

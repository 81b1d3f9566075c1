"""A whole deployment on loopback for one chaos scenario: a private redis-server, a database,
the ERP sandboxes in their own process, supervised `worker.py` processes, and the app in-process
for seeding and for posting events through the real API."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class PrivateRedis:
    """redis-server on its own port, stoppable and restartable (transport only: nothing persisted)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Deployment:
    def __init__(self, name: str, workers: int = 2, database_url: str | None = None, extra_env: dict | None = None):
        self.name = name
        self.workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
        self.redis = PrivateRedis(self.workdir)
        self.database_url = database_url or f"sqlite:///{self.workdir}/chaos.db"
        self.n_workers = workers
        self.workers: list[subprocess.Popen | None] = [None] * workers
        self.supervise = threading.Event()
        self.restarts = 0
        self.env = dict(os.environ)
        from cryptography.fernet import Fernet
        self.env.update({
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
            "TECPET_FERNET_KEY": Fernet.generate_key().decode(), "SECRET_KEY": "chaos",
            "TECPET_TICK_SECONDS": "1", "TECPET_STALE_RUN_SECONDS": "6", "TECPET_UNSENT_GRACE_SECONDS": "2",
            "TECPET_RECORD_LOCK_SECONDS": "20", "TECPET_HTTP_TIMEOUT": "3", "TECPET_JOB_SLICE_SECONDS": "5",
            "TECPET_PULL_INTERVAL": "3600",
        })
        self.env.update(extra_env or {})
        self.sandbox_proc: subprocess.Popen | None = None
        self.sandbox_urls: dict[str, str] = {}
        self.logs = open(self.workdir / "workers.log", "ab")

    # -- lifecycle
    def __enter__(self) -> "Deployment":
        try:
            return self._start()
        except BaseException:
            self._cleanup()
            raise

    def _start(self) -> "Deployment":
        self.redis.start()
        os.environ.update({k: self.env[k] for k in ("DATABASE_URL", "REDIS_URL", "TECPET_FERNET_KEY", "SECRET_KEY",
                                                    "TECPET_STALE_RUN_SECONDS", "TECPET_UNSENT_GRACE_SECONDS",
                                                    "TECPET_RECORD_LOCK_SECONDS", "TECPET_HTTP_TIMEOUT",
                                                    "TECPET_JOB_SLICE_SECONDS")})
        from flask_migrate import upgrade
        from webapp import create_app
        self.app = create_app()
        self.ctx = self.app.app_context()
        self.ctx.push()
        upgrade(directory=str(ROOT / "migrations"))
        self.sandbox_proc = subprocess.Popen([sys.executable, "-m", "integrations.sandbox_server", "--json",
                                              "--port-base", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                                             text=True, env=self.env)
        self.sandbox_urls = json.loads(self.sandbox_proc.stdout.readline())
        return self

    def __exit__(self, *exc) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        self.stop_workers()
        if self.sandbox_proc and self.sandbox_proc.poll() is None:
            self.sandbox_proc.terminate()
            self.sandbox_proc.wait(10)
        if getattr(self, "ctx", None) is not None:
            from webapp.extensions import db
            db.session.remove()
            db.engine.dispose()
            self.ctx.pop()
            self.ctx = None
        self.redis.stop()
        self.logs.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- workers under a supervisor (as systemd would restart them)
    def _spawn(self, i: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "worker.py", "--name", f"{self.name}-w{i}-{time.time_ns()}"],
                                cwd=ROOT, env=self.env, stdout=self.logs, stderr=self.logs)

    def start_workers(self) -> None:
        for i in range(self.n_workers):
            self.workers[i] = self._spawn(i)
        self.supervise.set()
        threading.Thread(target=self._supervisor, daemon=True).start()

    def _supervisor(self) -> None:
        while self.supervise.is_set():
            for i, proc in enumerate(self.workers):
                if proc is not None and proc.poll() is not None and self.supervise.is_set():
                    time.sleep(0.5)
                    self.workers[i] = self._spawn(i)
                    self.restarts += 1
            time.sleep(0.2)

    def kill_random_worker(self, rng: random.Random) -> None:
        i = rng.randrange(self.n_workers)
        proc = self.workers[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    def stop_workers(self) -> None:
        self.supervise.clear()
        for proc in self.workers:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    # -- the ERP side
    def sandbox(self, erp: str) -> str:
        return self.sandbox_urls[erp]

    def faults(self, erp: str, **faults) -> None:
        requests.post(f"{self.sandbox(erp)}/__sandbox__/faults", json=faults, timeout=5).raise_for_status()

    def sandbox_state(self, erp: str) -> dict:
        return requests.get(f"{self.sandbox(erp)}/__sandbox__/state", timeout=30).json()

    def sandbox_stats(self, erp: str) -> dict:
        return requests.get(f"{self.sandbox(erp)}/__sandbox__/stats", timeout=5).json()

    # -- TecPet's side
    def seed(self, erp: str = "vhsys", features=("sync_customers", "generate_financial", "issue_invoice"),
             settings: dict | None = None, credentials: dict | None = None):
        """A clinic with an API token and an enabled integration pointing at the ERP's sandbox."""
        from integrations.registry import sandbox_demo_credentials, sandbox_demo_settings
        from webapp import integration_setup
        from webapp.extensions import db
        from webapp.models import ApiToken, Clinic
        clinic = Clinic(name=f"Chaos {self.name}")
        db.session.add(clinic)
        db.session.flush()
        row, token = ApiToken.issue(clinic.id)
        db.session.add(row)
        db.session.commit()
        conf = sandbox_demo_settings(erp, self.sandbox(erp))
        conf.update({"rate_limit_scale": "1000"}, **(settings or {}))
        with self.app.test_request_context():
            integration = integration_setup.save(clinic, erp, credentials or sandbox_demo_credentials(erp), conf,
                                                 list(features), enable=True)
        self.client = self.app.test_client()
        self.token = token
        return clinic, integration

    def post(self, events: list[dict]) -> int:
        resp = self.client.post("/api/v1/events", json={"events": events},
                                headers={"Authorization": f"Bearer {self.token}"})
        return resp.status_code

    def wait_idle(self, timeout: float, settle: float = 3.0) -> bool:
        """True when no run is queued or running (and it stays so for `settle` seconds)."""
        from sqlalchemy import func, select
        from webapp.extensions import db
        from webapp.models import OutboxEvent, SyncRun
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            db.session.rollback()
            busy = db.session.scalar(select(func.count()).select_from(SyncRun)
                                     .where(SyncRun.status.in_(("queued", "running"))))
            unsent = db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                       .where(OutboxEvent.processed_at.is_(None)))
            if busy == 0 and unsent == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return True
            else:
                quiet_since = None
            time.sleep(0.5)
        return False

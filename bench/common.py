"""Shared pieces of the benchmarks: the database and Redis they use, the app, child processes
(sandboxes, workers, gunicorn) and small statistics helpers."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://root@127.0.0.1:5432/test")
PG_BENCH_DB = "bench"


# --------------------------------------------------------------------------- statistics
def percentile(values, pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, int(-(-pct * len(data) // 100)))  # ceil(pct/100 * n)
    return data[min(rank, len(data)) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


# --------------------------------------------------------------------------- Redis
def flush_redis() -> None:
    import redis
    conn = redis.Redis.from_url(REDIS_URL)
    conn.flushdb()
    conn.close()


# --------------------------------------------------------------------------- the database
class Database:
    """A fresh, migrated database for one benchmark pass: a SQLite temp file or `bench` on PostgreSQL."""

    def __init__(self, kind: str):
        self.kind = kind
        self.tmpdir = tempfile.mkdtemp(prefix="tecpet-bench-")
        if kind == "sqlite":
            self.url = f"sqlite:///{self.tmpdir}/bench.db"
        else:
            base = PG_ADMIN_URL.rsplit("/", 1)[0]
            self.url = f"{base}/{PG_BENCH_DB}"

    def create(self) -> None:
        if self.kind == "postgresql":
            self._pg_admin(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
            self._pg_admin(f"CREATE DATABASE {PG_BENCH_DB}")
        from cryptography.fernet import Fernet
        os.environ["DATABASE_URL"] = self.url
        os.environ["REDIS_URL"] = REDIS_URL
        os.environ["TECPET_FERNET_KEY"] = Fernet.generate_key().decode()
        os.environ["SECRET_KEY"] = "bench-secret-key"
        os.environ["TECPET_DEMO"] = "0"
        from flask_migrate import upgrade
        app = self.app()
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            from webapp.extensions import db
            db.engine.dispose()

    def app(self, **overrides):
        from webapp import create_app
        return create_app(**overrides)

    def env(self) -> dict:
        """The environment for child processes (workers, gunicorn)."""
        env = dict(os.environ)
        env.update(DATABASE_URL=self.url, REDIS_URL=REDIS_URL, PYTHONUNBUFFERED="1")
        return env

    def drop(self) -> None:
        if self.kind == "postgresql":
            try:
                self._pg_admin(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
            except Exception as exc:  # pragma: no cover - leave it for the next run
                print(f"warning: could not drop the bench database: {exc}", file=sys.stderr)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    @staticmethod
    def _pg_admin(sql: str) -> None:
        import psycopg
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql)


# --------------------------------------------------------------------------- child processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop one child we started, by its own pid: TERM, then KILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class SandboxProcess:
    """An ERP sandbox (integrations/<erp>/sandbox.py) served by SandboxServer in its own process."""

    def __init__(self, erp: str, **faults):
        self.erp = erp
        self.faults = faults
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "SandboxProcess":
        self.proc = subprocess.Popen([PY, "-m", "bench.sandbox_proc", self.erp, json.dumps(self.faults)], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.erp} sandbox did not start")
        self.url = json.loads(line)["url"]
        return self

    def _control(self, method: str, path: str, body: dict | None = None) -> dict:
        import requests
        resp = requests.request(method, self.url + "/__sandbox__/" + path, json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def stats(self) -> dict:
        return self._control("GET", "stats")

    def reset(self) -> None:
        self._control("POST", "reset")

    def configure(self, **faults) -> None:
        self._control("POST", "faults", faults)

    def state(self) -> dict:
        return self._control("GET", "state")

    def stop(self) -> None:
        stop(self.proc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def start_workers(db: Database, count: int, *, tick: float = 0, extra_env: dict | None = None) -> list[subprocess.Popen]:
    """`worker.py --burst` processes (the real worker)."""
    env = db.env()
    env.update(extra_env or {})
    procs = []
    for n in range(count):
        procs.append(subprocess.Popen([PY, "worker.py", "--burst", "--tick", str(tick), "--name", f"bench-{os.getpid()}-{n}-{time.monotonic_ns()}"],
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return procs


def wait_workers(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for burst workers to finish; returns the stderr tails of those that failed."""
    errors = []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stop(p)
            _, err = p.communicate()
            errors.append("worker timed out: " + (err or "")[-1500:])
            continue
        if p.returncode != 0:
            errors.append(f"worker exited {p.returncode}: " + (err or "")[-1500:])
    return errors


@contextmanager
def gunicorn(db: Database, workers: int = 2, threads: int = 4):
    """The web app under gunicorn (gthread) on loopback; yields its base URL."""
    port = free_port()
    env = db.env()
    cmd = [str(Path(PY).with_name("gunicorn")), "-w", str(workers), "--threads", str(threads), "-k", "gthread",
           "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", "5", "wsgi:app"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        if proc.stderr:
            err = proc.stderr.read()
            if "Traceback" in (err or ""):
                print("gunicorn stderr (tail):\n" + err[-3000:], file=sys.stderr)


@contextmanager
def gunicorn_servers(db: Database, servers: int = 2, threads: int = 1):
    """`servers` single-worker gunicorns, each on its own port; yields their base URLs. A load
    generator that gives each the same share of its connections measures the pages, not how
    unevenly one shared socket hands connections to its workers (seen: 20 to 0, 16 to 4)."""
    with ExitStack() as stack:
        yield [stack.enter_context(gunicorn(db, 1, threads)) for _ in range(servers)]


def login_session(base_url: str, email: str, password: str):
    """A requests.Session logged in through /login, the way a browser does (CSRF meta tag)."""
    import re
    import requests
    s = requests.Session()
    html = s.get(base_url + "/login", timeout=30).text
    m = re.search(r'name="csrf-token" content="([^"]+)"', html)
    if not m:
        raise RuntimeError("no csrf-token meta tag on /login")
    resp = s.post(base_url + "/login", data={"email": email, "password": password, "csrf_token": m.group(1)},
                  allow_redirects=False, timeout=30)
    if resp.status_code != 302:
        raise RuntimeError(f"login as {email} failed: HTTP {resp.status_code}")
    return s


def cookie_header(session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def browser_headers(session) -> dict[str, str]:
    """What a logged-in browser sends with every request: its cookies and the User-Agent it logged
    in with. Flask-Login's session protection compares the User-Agent with the one of the login;
    a client that sends another one (the load generator sent none) has its session marked
    non-fresh, and, since it never stores the cookie it gets back, re-signed on every response."""
    return {"Cookie": cookie_header(session), "User-Agent": session.headers["User-Agent"]}

"""Real-browser tests: Debian's Chromium driven by Playwright against the whole product on loopback.

One session starts, on a temporary SQLite file and Redis database 9 (E2E_REDIS_URL):
- the web app under gunicorn (`wsgi:app`, pt-BR by default like production),
- one real RQ worker process (`worker.py`),
- and headless Chromium (/usr/bin/chromium; never a downloaded browser).
Each test gets its own clinic and its own VHSYS sandbox (`integrations.vhsys.sandbox.Sandbox` served by
`SandboxServer`), so tests do not see each other's data. The test process reads and seeds the same
database through its own app instance, and posts TecPet core's events over HTTP like core does.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
E2E_REDIS_URL = os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/9")
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "e2e-password"
SUPPORT_EMAIL = "suporte@tecpet.test"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Stack:
    """The running product: base URL, the test's own app (same database) and helpers to seed it."""

    def __init__(self, base_url: str, app, workdir: Path):
        self.base_url = base_url
        self.app = app
        self.workdir = workdir
        self._n = 0

    def url(self, path: str) -> str:
        return self.base_url + path

    # ---------------------------------------------------------------- data
    def clinic(self, name: str, owner_email: str) -> dict:
        """A clinic, its owner (password PASSWORD) and an API token for TecPet core's events."""
        from webapp.extensions import db
        from webapp.models import ApiToken, Clinic, User
        with self.app.app_context():
            clinic = Clinic(name=name)
            db.session.add(clinic)
            db.session.flush()
            owner = User(email=owner_email, role="owner", clinic_id=clinic.id, name=owner_email.split("@")[0])
            owner.set_password(PASSWORD)
            row, token = ApiToken.issue(clinic.id)
            db.session.add_all([owner, row])
            db.session.commit()
            return {"id": clinic.id, "name": name, "owner": owner_email, "token": token}

    def post_events(self, token: str, *events: dict) -> dict:
        body = events[0] if len(events) == 1 else {"events": list(events)}
        resp = requests.post(self.url("/api/v1/events"), json=body, headers={"Authorization": f"Bearer {token}"},
                             timeout=30)
        assert resp.status_code == 202, resp.text
        return resp.json()

    def query(self, fn):
        """Run fn() inside the test's app context (reads see what the server and the worker committed)."""
        from webapp.extensions import db
        with self.app.app_context():
            try:
                return fn(db.session)
            finally:
                db.session.remove()

    def seed_past_runs(self, clinic_id: int, erp: str, days: int = 29, seed: int = 3) -> None:
        """A disabled integration of another ERP with a month of finished runs: the clinic's history
        before this ERP (the 30-day chart and the ERP filter have something to show)."""
        from webapp.extensions import db
        from webapp.models import Integration, SyncRun, utcnow
        rng = random.Random(seed)
        with self.app.app_context():
            old = Integration(clinic_id=clinic_id, erp=erp, enabled=False, features=["sync_customers"])
            db.session.add(old)
            db.session.flush()
            now = utcnow()
            for back in range(days, 0, -1):
                if rng.random() < 0.2:
                    continue  # quiet days
                created, updated = rng.randint(2, 14), rng.randint(5, 30)
                failed = rng.choice([0, 0, 0, 1, 2])
                at = now - timedelta(days=back, hours=rng.randint(0, 6))
                total = created + updated + failed + rng.randint(0, 4)
                db.session.add(SyncRun(clinic_id=clinic_id, integration_id=old.id, erp=erp, direction="push",
                                       entity="customer", trigger=rng.choice(["event", "event", "event", "manual"]),
                                       status="partial" if failed else "succeeded", total=total, done=total,
                                       created=created, updated=updated, failed=failed,
                                       unchanged=total - created - updated - failed, queued_at=at,
                                       started_at=at + timedelta(seconds=2),
                                       finished_at=at + timedelta(seconds=rng.randint(8, 90))))
            db.session.commit()


@pytest.fixture(scope="session")
def stack(request):
    """The product started once for the session. Its database and the web/worker logs are in a temporary
    folder, removed when every test passed and kept (path printed) otherwise."""
    workdir = Path(tempfile.mkdtemp(prefix="tecpet-e2e-"))
    db_url = f"sqlite:///{workdir}/e2e.db"
    r = redis_lib.Redis.from_url(E2E_REDIS_URL)
    r.flushdb()  # rate-limit windows and queues of an earlier session name the same integration ids
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TECPET_", "BABEL_"))}
    env.update(DATABASE_URL=db_url, REDIS_URL=E2E_REDIS_URL, TECPET_FERNET_KEY=Fernet.generate_key().decode(),
               SECRET_KEY="e2e-secret-" + os.urandom(8).hex(), TECPET_DEMO="0", TECPET_PULL_INTERVAL="86400",
               TECPET_TICK_SECONDS="1", PYTHONUNBUFFERED="1")
    from flask_migrate import upgrade
    from webapp import create_app
    from webapp.config import normalize_database_url
    app = create_app(SQLALCHEMY_DATABASE_URI=normalize_database_url(db_url), REDIS_URL=E2E_REDIS_URL,
                     FERNET_KEY=env["TECPET_FERNET_KEY"], SECRET_KEY=env["SECRET_KEY"])
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        from webapp.extensions import db
        from webapp.models import User
        support = User(email=SUPPORT_EMAIL, role="support", name="Suporte")
        support.set_password(PASSWORD)
        db.session.add(support)
        db.session.commit()
        db.session.remove()

    port = _free_port()
    web_log, worker_log = workdir / "web.log", workdir / "worker.log"
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
                            "--timeout", "60", "wsgi:app"], cwd=ROOT, env=env,
                           stdout=web_log.open("w"), stderr=subprocess.STDOUT)
    worker = subprocess.Popen([sys.executable, "worker.py", "--tick", "1", "--name", f"e2e-{os.getpid()}"], cwd=ROOT,
                              env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/healthz", web, web_log)
        yield Stack(base, app, workdir)
    finally:
        _stop(worker)
        _stop(web)
        r.flushdb()
        r.close()
        if request.session.testsfailed:
            print(f"\nE2E logs and database kept in {workdir} (web.log, worker.log, e2e.db)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser, stack):
    """new_page(viewport=DESKTOP) -> a page in a fresh browser context (its own cookies)."""
    contexts = []

    def _new(viewport=DESKTOP):
        ctx = browser.new_context(base_url=stack.base_url, viewport=viewport, locale="pt-BR",
                                  timezone_id="America/Sao_Paulo")
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield _new
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def vhsys():
    from integrations.sandbox_kit import SandboxServer
    from integrations.vhsys.sandbox import Sandbox
    server = SandboxServer(Sandbox()).start()
    yield server
    server.stop()


def faults(sandbox, **kw) -> None:
    requests.post(f"{sandbox.url}/__sandbox__/faults", json=kw, timeout=5).raise_for_status()


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Senha").fill(password)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_url(re.compile(r".*/(support/clinics|c/\d+/)$"))


def shot(page, name: str, full_page: bool = True) -> Path:
    """Save a screenshot of the page as docs/screenshots/<name>.png (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="hide")
    return path


def customers(n: int, seed: int = 11, start: int = 1) -> list[dict]:
    """Valid customers as TecPet core sends them (CPFs, CNPJs, alphanumeric CNPJs, real cities)."""
    from webapp.demo import valid_customer
    rng = random.Random(seed)
    return [valid_customer(rng, k) for k in range(start, start + n)]


def customer_event(c: dict) -> dict:
    return {"type": "customer.upserted", "customer": c}


def invoice_event(invoice_id: str, customer_id: str, amount: str = "180.00") -> dict:
    today = date.today()
    return {"type": "invoice.billed", "invoice": {
        "id": invoice_id, "number": invoice_id.upper(), "customer_id": customer_id, "issue_date": today.isoformat(),
        "kind": "service",
        "items": [{"description": "Consulta veterinária", "quantity": "1", "unit_price": amount, "service_code": "05.08"}],
        "installments": [{"number": 1, "due_date": (today + timedelta(days=30)).isoformat(), "amount": amount,
                          "payment_method": "PIX"}]}}

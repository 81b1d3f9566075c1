"""Fixtures for real components: Redis, the HTTP client, sandboxes on loopback."""
from __future__ import annotations

import os

import pytest
import redis as redis_lib

from integrations.http import HttpClient
from integrations.sandbox_kit import SandboxServer

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def http_client(redis_client):
    client = HttpClient(redis_client, timeout=5.0, retries=3, backoff=0.05, max_backoff=1.0)
    yield client
    client.close()


@pytest.fixture
def serve_sandbox():
    """serve_sandbox(app) -> SandboxServer on a free loopback port, stopped after the test."""
    servers = []

    def _serve(app):
        server = SandboxServer(app).start()
        servers.append(server)
        return server

    yield _serve
    for s in servers:
        s.stop()


@pytest.fixture
def serve_sandbox_process():
    """serve_sandbox_process(erp, **faults) -> an ERP's sandbox in a process of its own (its .url),
    stopped after the test: for tests that judge request timing by the sandbox's clock, which an
    in-process server reads only when its thread gets this process's interpreter lock."""
    from bench.common import SandboxProcess
    procs = []

    def _serve(erp: str, **faults):
        proc = SandboxProcess(erp, **faults).start()
        procs.append(proc)
        return proc

    yield _serve
    for p in procs:
        p.stop()


# --------------------------------------------------------------------------- the web application
import re
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE = os.environ.get("TEST_DATABASE", "sqlite")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integrations/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.connector_only)


@pytest.fixture(scope="session")
def database_url():
    """A fresh, migrated database for the session: SQLite file or the PostgreSQL test database."""
    if TEST_DATABASE == "postgresql":
        url = os.environ.get("TEST_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
        import sqlalchemy as sa
        from webapp.config import normalize_database_url
        engine = sa.create_engine(normalize_database_url(url))
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        tmp = tempfile.mkdtemp(prefix="tecpet-test-")
        url = f"sqlite:///{tmp}/test.db"
    os.environ["DATABASE_URL"] = url
    os.environ["REDIS_URL"] = TEST_REDIS_URL
    os.environ.setdefault("TECPET_FERNET_KEY", Fernet.generate_key().decode())
    os.environ.setdefault("SECRET_KEY", "test-secret")
    from flask_migrate import upgrade
    from webapp import create_app
    app = create_app()
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        from webapp.extensions import db
        db.engine.dispose()
    return url


@pytest.fixture
def app(database_url, redis_client):
    from webapp import create_app
    from webapp.extensions import db
    app = create_app(TESTING=True)
    with app.app_context():
        yield app
        db.session.remove()
        meta = db.metadata
        with db.engine.begin() as conn:
            for table in reversed(meta.sorted_tables):
                conn.execute(table.delete())
        app.extensions.pop("tecpet_http", None)


@pytest.fixture
def db_session(app):
    from webapp.extensions import db
    return db.session


@pytest.fixture
def vhsys_sandbox(serve_sandbox):
    from integrations.vhsys.sandbox import Sandbox
    return serve_sandbox(Sandbox())


def isolated(fn, *args, **kwargs):
    """Run fn as another process would: in a fresh context (its own app context and DB session),
    after the test's own session has committed; the test's session sees the results afterwards."""
    import contextvars
    from webapp.extensions import db
    db.session.commit()
    try:
        return contextvars.Context().run(fn, *args, **kwargs)
    finally:
        db.session.expire_all()


class _IsolatedClient:
    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name in ("get", "post", "put", "delete", "patch", "open"):
            return lambda *a, **kw: isolated(attr, *a, **kw)
        return attr


class Web:
    """A logged-in browser-like client that sends CSRF tokens the way the pages do."""

    def __init__(self, client):
        self.client = _IsolatedClient(client)
        self.token = None

    def csrf(self, path="/login"):
        html = self.client.get(path).get_data(as_text=True)
        m = re.search(r'name="csrf-token" content="([^"]+)"', html)
        self.token = m.group(1) if m else None
        return self.token

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post(self, path, data=None, csrf=True, **kw):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.token or self.csrf())
        return self.client.post(path, data=data, **kw)

    def login(self, email, password="pw-for-tests"):
        self.csrf("/login")
        resp = self.post("/login", {"email": email, "password": password})
        assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
        self.csrf("/")
        return self


@pytest.fixture
def world(app, db_session):
    """Two clinics, their owners and a support user; an API token for clinic A."""
    from webapp.models import ApiToken, Clinic, User
    a, b = Clinic(name="Clínica A"), Clinic(name="Clínica B")
    db_session.add_all([a, b])
    db_session.flush()
    users = {}
    for key, email, role, cid in (("owner_a", "owner-a@test", "owner", a.id), ("owner_b", "owner-b@test", "owner", b.id),
                                  ("support", "support@test", "support", None)):
        u = User(email=email, role=role, clinic_id=cid)
        u.set_password("pw-for-tests")
        db_session.add(u)
        users[key] = u
    row, token = ApiToken.issue(a.id)
    row_b, token_b = ApiToken.issue(b.id)
    db_session.add_all([row, row_b])
    db_session.commit()
    return {"clinic_a": a, "clinic_b": b, "token_a": token, "token_b": token_b, **users}


@pytest.fixture
def web(app):
    def _client(email=None):
        w = Web(app.test_client())
        if email:
            w.login(email)
        return w
    return _client


def run_worker(app):
    """Drain the queues with an in-process RQ worker (the real worker class, burst mode)."""
    from rq import Queue, SimpleWorker
    from webapp.queues import QUEUE_NAMES
    conn = redis_lib.Redis.from_url(TEST_REDIS_URL)
    worker = SimpleWorker([Queue(n, connection=conn) for n in QUEUE_NAMES], connection=conn)
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    return worker


@pytest.fixture
def work(app):
    return lambda: isolated(run_worker, app)


@pytest.fixture
def api(app):
    """TecPet core's HTTP client for the events API."""
    return _IsolatedClient(app.test_client())

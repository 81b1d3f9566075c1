"""Configuration from the environment, with embedded defaults for a laptop or the demo."""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import json_values

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


def _default_database_url() -> str:
    VAR.mkdir(exist_ok=True)
    return f"sqlite:///{VAR / 'tecpet.db'}"


def normalize_database_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


class Config:
    def __init__(self, **overrides):
        env = os.environ
        self.SECRET_KEY = env.get("SECRET_KEY") or "dev-only-secret-change-me"
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(env.get("DATABASE_URL") or _default_database_url())
        self.SQLALCHEMY_ENGINE_OPTIONS: dict = {"json_deserializer": json_values.loads}
        # PostgreSQL: psycopg prepares a statement once it has run this many times, and the server
        # then keeps one generic plan for it until the table's statistics change. Pages gain from
        # it. The worker turns it off (None): a plan made while a new integration's bindings fitted
        # in one page (a sequential scan per UPDATE) stayed for the whole first sync, while its
        # tables grew faster than autovacuum looks. (plan_cache_mode=force_custom_plan also
        # re-planned the foreign-key checks of every inserted row: a bulk load took twice as long.)
        self.PG_PREPARE_THRESHOLD: int | None = 5
        self.REDIS_URL = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.FERNET_KEY = env.get("TECPET_FERNET_KEY", "")
        self.DEMO = env.get("TECPET_DEMO", "0") == "1"
        self.PULL_INTERVAL_SECONDS = int(env.get("TECPET_PULL_INTERVAL", "300"))
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = env.get("TECPET_HTTPS", "0") == "1"
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.WTF_CSRF_TIME_LIMIT = None
        # Recovery timings (the chaos suite shortens them; production keeps the defaults)
        self.STALE_RUN_SECONDS = float(env.get("TECPET_STALE_RUN_SECONDS", "120"))
        self.UNSENT_GRACE_SECONDS = float(env.get("TECPET_UNSENT_GRACE_SECONDS", "30"))
        self.RECORD_LOCK_SECONDS = float(env.get("TECPET_RECORD_LOCK_SECONDS", "300"))
        self.HTTP_TIMEOUT_SECONDS = float(env.get("TECPET_HTTP_TIMEOUT", "20"))
        self.JOB_SLICE_SECONDS = float(env.get("TECPET_JOB_SLICE_SECONDS", "20"))
        # RQ jobs of one integration running at once (fairness between clinics)
        self.JOBS_PER_INTEGRATION = int(env.get("TECPET_JOBS_PER_INTEGRATION", "2"))
        self.SANDBOX_URLS = json.loads(env.get("TECPET_SANDBOX_URLS") or "{}")
        self.PUBLIC_URL = env.get("TECPET_PUBLIC_URL", "http://127.0.0.1:5000")
        # A server connection can drop between requests (a restart, an idle timeout): PostgreSQL's are
        # tested when taken from the pool by extensions.ping_on_checkout (one round trip, not the three
        # of SQLAlchemy's pool_pre_ping). A SQLite file has no connection to lose.
        self.DB_PING_ON_CHECKOUT = True
        for k, v in overrides.items():
            setattr(self, k, v)
        if self.SQLALCHEMY_DATABASE_URI.startswith("postgresql"):
            self.SQLALCHEMY_ENGINE_OPTIONS["connect_args"] = {"prepare_threshold": self.PG_PREPARE_THRESHOLD}

"""Flask extensions, created unbound and initialised by create_app."""
import time

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase

from .read_only import PageSession


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base, session_options={"class_": PageSession})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


def sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite as a real multi-process database: WAL (readers never block the writer) and a busy wait."""
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # with WAL: consistent after a crash, no fsync per commit
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


PING_AFTER_IDLE_SECONDS = 0.5


def connection_checked_in(_dbapi_connection, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def ping_on_checkout(dbapi_connection, record, _proxy) -> None:
    """A PostgreSQL connection taken from the pool after sitting in it for more than
    PING_AFTER_IDLE_SECONDS is tested with one empty query, outside any transaction: a server
    restart or an idle timeout can have dropped it. (SQLAlchemy's own pool_pre_ping runs SELECT 1 in
    a transaction of its own, three round trips on every checkout, a fifth of a small page's time.)
    A dropped connection raises DisconnectionError, and the pool then discards it and takes a new
    one (up to three tries). A connection back in the pool for less than that was working a moment
    ago and is not tested (HikariCP's "alive bypass window", 0.5 s too): under load, pages skip the
    round trip. If the server restarts inside that window, the request that meets the dropped
    connection fails, and SQLAlchemy then replaces every connection of the pool."""
    idle_since = record.info.get("checked_in_at")
    if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    conn = dbapi_connection
    try:
        conn.autocommit = True
        try:
            conn.execute("")
        finally:
            conn.autocommit = False
    except Exception as exc:  # psycopg.OperationalError; or a connection not idle, which the pool replaces too
        raise DisconnectionError(f"pooled connection is gone: {exc}") from exc

"""The web application: create_app() wires configuration, extensions and blueprints."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, redirect, url_for
from flask_login import current_user

from integrations.http import install_redaction

from .config import Config
from .extensions import connection_checked_in, csrf, db, login_manager, migrate, ping_on_checkout, sqlite_pragmas


def create_app(config: Config | None = None, **overrides) -> Flask:
    app = Flask(__name__)
    cfg = config or Config(**overrides)
    app.config.from_object(cfg)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_redaction()

    db.init_app(app)
    from sqlalchemy import event
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", sqlite_pragmas)
    elif app.config["DB_PING_ON_CHECKOUT"]:
        with app.app_context():
            event.listen(db.engine.pool, "checkout", ping_on_checkout)
            event.listen(db.engine.pool, "checkin", connection_checked_in)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in."

    from . import models, params  # noqa: F401  (tables for migrations)
    params.install(app)  # before the blueprints: every <int:...> route is bounded to a row id
    from .blueprints import register_blueprints
    register_blueprints(app)

    from .records_cli import records
    from .cli import register_cli
    app.cli.add_command(records)
    register_cli(app)

    from .formatting import register_filters
    register_filters(app)
    from .i18n import init_i18n
    init_i18n(app)
    from . import csrf_tokens, fragments, layout, local_copies, page_cache, run_progress, table_rows
    from .read_only import PageSession
    local_copies.install(app)
    page_cache.install(PageSession)
    csrf_tokens.install(app)
    fragments.install(app)
    layout.install(app)
    table_rows.install(app)
    run_progress.install(app)
    from .views import capability_panel_html
    app.jinja_env.globals["capability_panel_html"] = capability_panel_html

    @app.route("/")
    def index():
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login"))
        if current_user.is_support:
            return redirect(url_for("support.clinics"))
        return redirect(url_for("dashboard.show", clinic_id=current_user.clinic_id))

    @app.route("/healthz")
    def healthz():
        return {"ok": True}

    return app

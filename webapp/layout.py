"""The page header every page shows (base.html): brand, language switch, who is logged in, the
main menu. It costs a page a sixth of its time as a template (two dozen url_for and gettext calls),
and it depends on few values: the language, the address, the user and the clinic. It is rendered
once per set of those values (webapp/fragments.py) and only the CSRF token is put in per request."""
from __future__ import annotations

import secrets

from flask import render_template, request
from flask_login import current_user
from markupsafe import Markup, escape

from .csrf_tokens import csrf_token
from .fragments import kept
from .i18n import current_lang

_CSRF_SLOT = f"csrf-slot-{secrets.token_hex(16)}"  # per process: no page text can guess it


def page_header(clinic=None) -> Markup:
    user = current_user if current_user.is_authenticated else None
    who = (user.email, user.role) if user is not None else None
    where = (clinic.id, clinic.name) if clinic else None
    key = ("header", current_lang(), request.script_root, request.full_path, request.endpoint, who, where)
    html = kept(key, lambda: _render(user, clinic))
    if user is None:
        return html
    return Markup(html.replace(_CSRF_SLOT, str(escape(csrf_token()))))


def _render(user, clinic) -> str:
    view = None
    if user is not None:
        view = _UserView(user.email, user.role, user.role == "support")
    return render_template("partials/header.html", user=view, clinic=clinic, ep=request.endpoint or "",
                           csrf=Markup(_CSRF_SLOT))


class _UserView:
    """What the header reads of the user, and nothing else (the key above is exactly this)."""
    __slots__ = ("email", "role", "is_support")

    def __init__(self, email: str, role: str, is_support: bool):
        self.email, self.role, self.is_support = email, role, is_support


def install(app) -> None:
    app.jinja_env.globals["page_header"] = page_header

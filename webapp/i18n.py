"""Languages: Portuguese (Brazil) by default, English available.

- Flask-Babel with the catalogs in `translations/` (repository root). A catalog whose .mo is missing or
  older than its .po is compiled when the app starts, so a fresh clone works with or without the .mo.
- The language is chosen with `?lang=pt_BR` / `?lang=en` on any page (the header's switch): kept in the
  session and in a long-lived cookie, then the page is shown again without the parameter. No new route,
  so no role rules change. `BABEL_DEFAULT_LOCALE` (or `TECPET_LOCALE`) sets the default: pt_BR, except in
  `create_app(TESTING=True)`, where it is English so assertions on English page texts keep their meaning.
- Brazilian formats (R$ 1.234,56, dd/mm/aaaa, CPF/CNPJ masks) do not depend on the language: see
  `webapp.formatting`.
- Labels for stored values (statuses, outcomes, capabilities, record problems) are translated here at
  render time: the code that stores them keeps writing plain values.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import babel
import flask_babel
from flask.globals import _cv_app  # the app context itself: `g` without the proxy, for hot paths
from flask import current_app, g, has_request_context, redirect, render_template, request, session
from flask_babel import Babel, lazy_gettext as _l, lazy_pgettext
from jinja2 import pass_context
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException

from integrations.registry import CONNECTORS, connector_class

from .formatting import tax_id as masked

log = logging.getLogger(__name__)

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
LANGUAGES = {"pt_BR": "Português", "en": "English"}
HTML_LANG = {"pt_BR": "pt-BR", "en": "en"}
COOKIE = "tecpet_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600


def N_(text: str) -> str:
    """Marks a string for the catalog without translating it (it is translated where it is shown)."""
    return text


# --------------------------------------------------------------------------- setup
def init_i18n(app) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE",
                          os.environ.get("TECPET_LOCALE") or ("en" if app.config.get("TESTING") else "pt_BR"))
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "America/Sao_Paulo")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(compiled_catalogs()))
    Babel(app, locale_selector=select_locale)
    # the same callables Flask-Babel installs, reading the catalog once per request
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: translations().ugettext(s),
        ngettext=lambda s, p, n: translations().ungettext(s, p, n),
        pgettext=lambda c, s: translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: translations().unpgettext(c, s, p, n),
        newstyle=True)
    app.jinja_env.globals["_"] = app.jinja_env.globals["gettext"] = template_gettext
    app.before_request(_switch_language)
    app.after_request(_remember_language)
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, lang_url=lang_url, current_lang=current_lang,
                                 html_lang=lambda: HTML_LANG.get(current_lang(), "pt-BR"), label=label,
                                 capability_text=capability_text, note_text=note_text, badge=badge, feature_label=feature_label,
                                 field_label=field_label, problem_text=problem_text, problem_title=problem_title)
    from .extensions import login_manager
    login_manager.localize_callback = gettext
    for code in (400, 403, 404, 405, 409, 413):
        app.register_error_handler(code, _error_page)


def compiled_catalogs() -> Path:
    """The translations folder with every .mo up to date with its .po (compiled here when needed; into a
    temporary copy when the tree cannot be written)."""
    stale = [po for po in TRANSLATIONS.glob("*/LC_MESSAGES/*.po")
             if not po.with_suffix(".mo").exists() or po.with_suffix(".mo").stat().st_mtime < po.stat().st_mtime]
    if not stale:
        return TRANSLATIONS
    try:
        for po in stale:
            _compile(po, po.with_suffix(".mo"))
        return TRANSLATIONS
    except OSError:
        target = Path(tempfile.mkdtemp(prefix="tecpet-translations-"))
        for po in TRANSLATIONS.glob("*/LC_MESSAGES/*.po"):
            mo = target / po.relative_to(TRANSLATIONS).with_suffix(".mo")
            mo.parent.mkdir(parents=True, exist_ok=True)
            _compile(po, mo)
        log.info("translations compiled into %s (the source tree is read-only)", target)
        return target


def _compile(po: Path, mo: Path) -> None:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=po.parent.parent.name)
    tmp = mo.with_name(f".{mo.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        write_mo(fh, catalog)
    os.replace(tmp, mo)  # atomic: several workers may start at once


# --------------------------------------------------------------------------- choosing the language
def select_locale() -> str | None:
    if not has_request_context():
        return None
    for lang in (g.get("new_lang"), session.get("lang"), request.cookies.get(COOKIE)):
        if lang in LANGUAGES:
            return lang
    return None  # the default locale


def current_lang() -> str:
    """The page's language code, resolved once per request (pages ask for it hundreds of times:
    every label and number), kept in the request's `g` and read without the proxy."""
    ctx = _cv_app.get(None)
    if ctx is None or not has_request_context():
        return _resolve_lang()
    lang = ctx.g.__dict__.get("_tecpet_lang")
    if lang is None:
        lang = ctx.g._tecpet_lang = _resolve_lang()
    return lang


def _resolve_lang() -> str:
    """select_locale()'s choice, else the configured default: what Flask-Babel's get_locale() answers,
    without parsing a babel Locale on every request."""
    lang = select_locale()
    if lang is None:
        default = current_app.config.get("BABEL_DEFAULT_LOCALE", "pt_BR")
        lang = _DEFAULT_LANG.get(default)
        if lang is None:
            lang = _DEFAULT_LANG[default] = str(babel.Locale.parse(default))
    return lang


_DEFAULT_LANG: dict[str, str] = {}


def translations():
    """The page's catalog, looked up once per request: Flask-Babel resolves the domain, the locale and
    its cache on every call, and a page makes a few hundred of them. Each language's catalog, once
    Flask-Babel has loaded it for a request in that language, is kept here and read without it.
    (Not force_locale(): it swaps the app's locale selector, which other threads' requests read.)"""
    ctx = _cv_app.get(None)
    if ctx is None:
        return flask_babel.get_translations()
    catalog = ctx.g.__dict__.get("_tecpet_translations")
    if catalog is None:
        lang = current_lang()
        key = (ctx.app.config.get("BABEL_TRANSLATION_DIRECTORIES"), lang)
        catalog = _CATALOGS.get(key)
        if catalog is None:
            catalog = flask_babel.get_translations()
            if str(flask_babel.get_locale()) == lang:  # a language set by hand in `g` is not kept
                _CATALOGS[key] = catalog
        ctx.g._tecpet_translations = catalog
    return catalog


_CATALOGS: dict[tuple, object] = {}


def gettext(string: str, **variables) -> str:
    text = translations().ugettext(string)
    return text % variables if variables else text


@pass_context
def template_gettext(__context, __string: str, **variables):
    """`_()` in templates, as Jinja's newstyle gettext answers it (the translation is markup, the
    variables are escaped, and it is always formatted, so "%%" shows "%"). A page calls it a few
    dozen times with fixed text: that answer is kept per language and string."""
    autoescape = __context.eval_ctx.autoescape
    if variables:
        text = translations().ugettext(__string)
        return (Markup(text) if autoescape else text) % variables
    key = (current_lang(), autoescape, __string)
    shown = _TEMPLATE_TEXT.get(key)
    if shown is None:
        if len(_TEMPLATE_TEXT) >= 4096:  # templates hold a few hundred strings; never grow without end
            _TEMPLATE_TEXT.clear()
        text = translations().ugettext(__string)
        shown = _TEMPLATE_TEXT[key] = (Markup(text) if autoescape else text) % {}
    return shown


_TEMPLATE_TEXT: dict[tuple[str, bool, str], str] = {}


def pgettext(context: str, string: str, **variables) -> str:
    text = translations().upgettext(context, string)
    return text % variables if variables else text


def _switch_language():
    lang = request.args.get("lang")
    if lang is None or request.method != "GET" or request.path.startswith(("/api/", "/static/")):
        return None
    if lang in LANGUAGES:
        session["lang"] = lang
        g.new_lang = lang
    rest = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    path = "/" + request.path.lstrip("/")  # never "//host": the redirect stays on this site
    return redirect(path + ("?" + urlencode(rest) if rest else ""))


def _remember_language(response):
    lang = g.get("new_lang")
    if lang:
        response.set_cookie(COOKIE, lang, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax",
                            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return response


def lang_url(lang: str) -> str:
    """This page in another language (the switch keeps the page's own query)."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"] + [("lang", lang)]
    return "/" + request.path.lstrip("/") + "?" + urlencode(args)


# --------------------------------------------------------------------------- error pages
ERROR_TITLES = {
    400: _l("The request could not be understood"),
    403: _l("You do not have access to this page"),
    404: _l("Page not found"),
    405: _l("This action is not available here"),
    409: _l("This cannot be done right now"),
    413: _l("What was sent is too large"),
}
ERROR_TEXTS = {
    400: _l("Reload the page and try again."),
    403: _l("This page belongs to TecPet support or to another clinic. If you need something changed, "
            "contact TecPet support."),
    404: _l("The address may be mistyped, or the record no longer exists."),
    405: _l("Go back and use the page's buttons."),
    409: _l("Reload the page: something changed meanwhile."),
    413: _l("Send less at a time."),
}


def _error_page(exc: HTTPException):
    if request.path.startswith("/api/"):
        return exc
    from flask_wtf.csrf import CSRFError
    code = exc.code or 500
    if isinstance(exc, CSRFError):
        detail = gettext("The form expired or came without its security token (CSRF). Reload the page and "
                         "send it again.")
    elif exc.description and exc.description != type(exc).description:
        detail = exc.description  # a specific reason given by the view (already translated there)
    else:
        detail = ERROR_TEXTS.get(code, "")
    return render_template("errors/error.html", code=code, title=ERROR_TITLES.get(code, exc.name),
                           detail=detail), code


# --------------------------------------------------------------------------- labels for stored values
LABELS: dict[str, dict[str, object]] = {
    # a sync run's status
    "run": {"queued": lazy_pgettext("run status", "queued"), "running": lazy_pgettext("run status", "running"),
            "succeeded": lazy_pgettext("run status", "succeeded"), "partial": lazy_pgettext("run status", "partial"),
            "failed": lazy_pgettext("run status", "failed")},
    # the integration's state at a glance (webapp.views.integration_status)
    "integration": {"healthy": lazy_pgettext("integration status", "healthy"),
                    "degraded": lazy_pgettext("integration status", "degraded"),
                    "failing": lazy_pgettext("integration status", "failing"),
                    "paused": lazy_pgettext("integration status", "paused"),
                    "disabled": lazy_pgettext("integration status", "disabled"),
                    "none": lazy_pgettext("integration status", "not set up")},
    # one record's outcome in a run
    "outcome": {"pending": lazy_pgettext("record outcome", "pending"),
                "created": lazy_pgettext("record outcome", "created"),
                "updated": lazy_pgettext("record outcome", "updated"),
                "unchanged": lazy_pgettext("record outcome", "unchanged"),
                "skipped": lazy_pgettext("record outcome", "skipped"),
                "failed": lazy_pgettext("record outcome", "failed")},
    "direction": {"push": lazy_pgettext("run direction", "TecPet → ERP"),
                  "pull": lazy_pgettext("run direction", "ERP → TecPet")},
    "entity": {"customer": lazy_pgettext("run entity", "customers"), "invoice": lazy_pgettext("run entity", "invoices"),
               "all": lazy_pgettext("run entity", "everything"), "verify": lazy_pgettext("run entity", "check")},
    "trigger": {"initial": lazy_pgettext("run trigger", "initial"), "event": lazy_pgettext("run trigger", "event"),
                "schedule": lazy_pgettext("run trigger", "scheduled"), "manual": lazy_pgettext("run trigger", "manual"),
                "retry": lazy_pgettext("run trigger", "retry"), "release": lazy_pgettext("run trigger", "release"),
                "resolve": lazy_pgettext("run trigger", "resolve"), "pull": lazy_pgettext("run trigger", "pull")},
    "invoice": {"billed": lazy_pgettext("invoice status", "billed"), "queued": lazy_pgettext("invoice status", "queued"),
                "sent": lazy_pgettext("invoice status", "sent"), "issuing": lazy_pgettext("invoice status", "issuing"),
                "issued": lazy_pgettext("invoice status", "issued"),
                "rejected": lazy_pgettext("invoice status", "rejected"),
                "cancelled": lazy_pgettext("invoice status", "cancelled"),
                "blocked": lazy_pgettext("invoice status", "blocked"), "failed": lazy_pgettext("invoice status", "failed")},
    "fiscal": {"pending": lazy_pgettext("fiscal state", "pending"), "issued": lazy_pgettext("fiscal state", "issued"),
               "rejected": lazy_pgettext("fiscal state", "rejected"),
               "cancelled": lazy_pgettext("fiscal state", "cancelled")},
    "severity": {"error": lazy_pgettext("problem severity", "error"),
                 "warning": lazy_pgettext("problem severity", "warning")},
    "binding": {"pending": lazy_pgettext("binding state", "pending"), "bound": lazy_pgettext("binding state", "linked")},
    "role": {"owner": lazy_pgettext("user role", "owner"), "support": lazy_pgettext("user role", "support")},
    "person_type": {"PF": _l("person (PF)"), "PJ": _l("company (PJ)")},
}


def label(kind: str, value) -> str:
    """The shown word for a stored value; an unknown value is shown as it is."""
    key = (current_lang(), kind, value)
    shown = _LABEL_CACHE.get(key)
    if shown is None:
        text = LABELS.get(kind, {}).get(value)
        shown = str(text) if text is not None else ("" if value is None else str(value).replace("_", " "))
        if text is not None:  # known words only: the cache stays as small as LABELS
            _LABEL_CACHE[key] = shown
    return shown


_LABEL_CACHE: dict[tuple[str, str, object], str] = {}


def badge(kind: str, value) -> Markup:
    """A stored value as a coloured badge: <span class="badge b-VALUE">label</span>. Known words
    are cached per language like labels (a table of runs shows one per row)."""
    key = (current_lang(), kind, value)
    shown = _BADGE_CACHE.get(key)
    if shown is None:
        shown = Markup(f'<span class="badge b-{escape(value)}">{escape(label(kind, value))}</span>')
        if value in LABELS.get(kind, ()):
            _BADGE_CACHE[key] = shown
    return shown


_BADGE_CACHE: dict[tuple[str, str, object], Markup] = {}


# What the integration does and does not do, keyed by integrations.base.Capability value; the English
# texts are those of integrations.base.CAPABILITY_TEXT, translated by the catalog.
CAPABILITY_TEXT = {
    "push_customers": (_l("Customers registered in TecPet are created and updated in the ERP."),
                       _l("Customers are not sent to the ERP.")),
    "pull_customers": (_l("Customers changed in the ERP come back into TecPet."),
                       _l("Customers changed in the ERP do not come back.")),
    "generate_financial": (_l("Each billed invoice becomes an order with installments and receivables in the ERP."),
                           _l("Orders and receivables are not created in the ERP.")),
    "issue_invoice": (_l("The invoice (NFS-e / NF-e) is issued automatically when billing."),
                      _l("Invoices are issued inside the ERP, not by TecPet.")),
    "track_invoice": (_l("The issuing outcome (issued or rejected, with the reason) comes back to the invoice."),
                      _l("The issuing outcome is not brought back.")),
    "pull_pos_sales": (_l("Counter (POS) sales made in the ERP come back into TecPet."),
                       _l("Counter sales made in the ERP do not come back.")),
    "pull_receipts": (_l("Receipts of receivables come back into TecPet."),
                      _l("Receipts registered in the ERP do not come back.")),
    "settle_receivable": (_l("Payments registered in TecPet settle the receivable in the ERP."),
                          _l("Payments must be settled inside the ERP.")),
    "webhooks": (_l("The ERP notifies changes as they happen."), _l("Changes are fetched periodically.")),
}


def capability_text(row: dict) -> str:
    """One row of integrations.base.capability_panel in the page's language."""
    texts = CAPABILITY_TEXT.get(row.get("capability"))
    if texts is None:
        return row.get("text", "")
    return str(texts[0] if row.get("supported") else texts[1])


def note_text(note: str) -> str:
    """A connector's note in the page's language when the catalog has it, else as the connector wrote it."""
    return gettext(note) if note else ""


FEATURE_LABELS = {
    "sync_customers": _l("Sync customers"),
    "generate_financial": _l("Generate financial (order, installments, receivables)"),
    "issue_invoice": _l("Issue invoice (NFS-e / NF-e)"),
    "pull_back": _l("Pull back (customers, counter sales, receipts)"),
}


def feature_label(value: str) -> str:
    text = FEATURE_LABELS.get(value)
    return str(text) if text is not None else value.replace("_", " ")


FIELD_LABELS = {
    "person_type": _l("person type"), "name": _l("name"), "tax_id": _l("CPF/CNPJ"),
    "state_registration": _l("state registration (IE)"), "email": _l("e-mail"), "phone": _l("phone"),
    "zip_code": _l("CEP"), "street": _l("street"), "number": _l("number"), "complement": _l("complement"),
    "district": _l("district (bairro)"), "city": _l("city"), "city_ibge_code": _l("IBGE city code"),
    "state": _l("state (UF)"),
}


def field_label(name: str) -> str:
    """A customer field's name in the page's language (cached per language: the warnings page
    names one or more per row)."""
    key = (current_lang(), name)
    shown = _FIELD_CACHE.get(key)
    if shown is None:
        text = FIELD_LABELS.get(name)
        shown = str(text) if text is not None else name.replace("_", " ")
        if text is not None:
            _FIELD_CACHE[key] = shown
    return shown


_FIELD_CACHE: dict[tuple[str, str], str] = {}


# --------------------------------------------------------------------------- record problems
# webapp.health words each problem in English with a stable code "for filters and translations". In
# another language the sentence is rebuilt from the code and the customer's own values; the details the
# English sentence computed (the right IBGE code, the CEP's state) are carried over.
_PROBLEM_KIND = {
    "missing": _l("empty"), "too_short": _l("too short"), "too_long": _l("too long"), "invalid": _l("invalid"),
    "invalid_cpf": _l("invalid CPF"), "invalid_cnpj": _l("invalid CNPJ"),
    "type_mismatch": _l("does not match the customer type"), "ibge_mismatch": _l("does not match the IBGE code"),
    "other_state": _l("of another state"), "outside_state": _l("of another state"),
    "missing_pj": _l("missing for a company"),
}
_IBGE_HINT = re.compile(r"The IBGE code of (.+?) is (\d{7})\.")
_CEP_STATE = re.compile(r"belongs to ([A-Z]{2}), not to")
_PLACE = re.compile(r"The IBGE code \d+ is (.+?), not a city of")
_AT_MOST = re.compile(r"at most (\d+) characters")


def problem_title(code: str) -> str:
    """A short name for a kind of problem (the filters on the warnings page); it depends on the
    code and the language only, so it is kept per language (for the codes webapp.health and the
    connectors' rules use: a bounded set)."""
    key = (current_lang(), code)
    shown = _TITLE_CACHE.get(key)
    if shown is None:
        shown = _problem_title(code)
        if len(_TITLE_CACHE) < 4096:
            _TITLE_CACHE[key] = shown
    return shown


_TITLE_CACHE: dict[tuple[str, str], str] = {}


def _problem_title(code: str) -> str:
    head, _, kind = (code or "").partition(".")
    if head in CONNECTORS:
        return gettext("%(erp)s rule: %(field)s", erp=_erp_label(head), field=_erp_rule_field(kind))
    what = _PROBLEM_KIND.get(kind)
    return f"{field_label(head)}: {what}" if what is not None else code


def _erp_label(name: str) -> str:
    try:
        return connector_class(name).label
    except (KeyError, ImportError, AttributeError):
        return name.upper()


def _erp_rule_field(kind: str) -> str:
    for field in sorted(FIELD_LABELS, key=len, reverse=True):
        if kind.startswith(field):
            return field_label(field)
    return kind.replace("_", " ")


_WITH_IBGE_HINT = ("city_ibge_code.missing", "city_ibge_code.invalid", "city.ibge_mismatch")


def _ibge_hint(message: str) -> str:
    hint = _IBGE_HINT.search(message)
    return gettext(" The IBGE code of %(place)s is %(code)s.", place=hint.group(1), code=hint.group(2)) if hint else ""


def problem_text(problem: dict, customer=None) -> str:
    """The problem's sentence in the page's language."""
    message = problem.get("message", "")
    if current_lang() == "en":
        return message
    code, field = problem.get("code", ""), problem.get("field", "")
    value = str(getattr(customer, field, "") or "") if customer is not None and field else ""
    head, _, kind = code.partition(".")
    if head in CONNECTORS:
        limit = _AT_MOST.search(message)
        if kind.endswith("too_long") and limit:
            return gettext("%(erp)s keeps at most %(n)s characters in the %(field)s: shorten it.",
                           erp=_erp_label(head), n=limit.group(1), field=field_label(field))
        return gettext("%(erp)s needs the %(field)s filled in correctly: complete it.", erp=_erp_label(head),
                       field=field_label(field))
    person = getattr(customer, "person_type", "") if customer is not None else ""
    ibge_hint = _ibge_hint(message) if code in _WITH_IBGE_HINT else ""
    if code == "tax_id.missing":
        doc = {"PF": "CPF", "PJ": "CNPJ"}.get(person, "CPF/CNPJ")
        return gettext("The %(doc)s is empty: ask the customer for it and enter it.", doc=doc)
    if code == "tax_id.type_mismatch":
        if person == "PF":
            return gettext("%(tax_id)s is a company's CNPJ but the customer is a person (PF): change the customer "
                           "type to company (PJ), or enter the person's CPF.", tax_id=masked(value))
        return gettext("%(tax_id)s is a person's CPF but the customer is a company (PJ): change the customer "
                       "type to person (PF), or enter the company's CNPJ.", tax_id=masked(value))
    if code == "tax_id.invalid_cpf":
        return gettext("The CPF %(tax_id)s is not valid: check it with the customer.", tax_id=masked(value))
    if code == "tax_id.invalid_cnpj":
        return gettext("The CNPJ %(tax_id)s is not valid: check it with the customer.", tax_id=masked(value))
    if code == "tax_id.invalid":
        return gettext("%(tax_id)s is neither a valid CPF nor a valid CNPJ: check it with the customer.",
                       tax_id=masked(value))
    if code == "person_type.invalid":
        return gettext("The customer type is not set: choose person (PF) or company (PJ).")
    if code == "state_registration.missing_pj":
        return gettext("The company has no state registration (IE): enter it, or write ISENTO if the company "
                       "is exempt.")
    if code == "number.missing":
        return gettext("The address number is empty: enter it, or S/N if the address has no number.")
    if code == "district.missing":
        return gettext("The district (bairro) is empty: enter it; some ERPs and city halls refuse invoices "
                       "without it.")
    if code == "city_ibge_code.missing":
        return gettext("The IBGE city code is empty: enter the 7-digit code of the customer's city.") + ibge_hint
    if code == "city_ibge_code.invalid":
        return gettext("The IBGE city code %(code)s is not valid: check it for a typo.", code=value) + ibge_hint
    if code == "city_ibge_code.other_state":
        place = _PLACE.search(message)
        state = getattr(customer, "state", "") if customer is not None else ""
        return gettext("The IBGE code %(code)s is %(place)s, not a city of %(state)s: fix the code or the state.",
                       code=value, place=place.group(1) if place else "?", state=state)
    if code == "city.ibge_mismatch":
        ibge = getattr(customer, "city_ibge_code", "") if customer is not None else ""
        return gettext("The city %(city)s is not the place of IBGE code %(code)s: fix the city or the code.",
                       city=value, code=ibge) + ibge_hint
    if code == "email.invalid":
        return gettext("The e-mail %(email)s is not a valid address: fix it or leave it empty.", email=value)
    if code == "state.missing":
        return gettext("The state (UF) is empty: enter it, e.g. SP.")
    if code == "state.invalid":
        return gettext("%(state)s is not a Brazilian state (UF): enter one of the 27, e.g. SP, RJ, MG, DF.",
                       state=value)
    if code == "zip_code.missing":
        return gettext("The CEP is empty: enter the customer's CEP.")
    if code == "zip_code.invalid":
        return gettext("The CEP %(cep)s is not valid: a CEP has 8 digits, e.g. 01310-100. Check it with the "
                       "customer.", cep=value)
    if code == "zip_code.outside_state":
        uf = _CEP_STATE.search(message)
        state = getattr(customer, "state", "") if customer is not None else ""
        return gettext("The CEP %(cep)s belongs to %(uf)s, not to %(state)s: fix the CEP or the state.",
                       cep=value, uf=uf.group(1) if uf else "?", state=state)
    if kind == "missing":
        return gettext("The %(field)s is empty: fill it in.", field=field_label(field))
    if kind == "too_short":
        return gettext("The %(field)s “%(value)s” is too short: enter it in full.", field=field_label(field),
                       value=value)
    if kind == "too_long":
        return gettext("The %(field)s has %(n)s characters; invoices keep 60, so it would be cut: shorten it.",
                       field=field_label(field), n=len(value))
    return message


# Strings shown through a variable (Flask-Login's message): listed so the catalog keeps them.
CATALOG_ONLY = (N_("Please log in."),)


def extract_connector_notes(fileobj, keywords, comment_tags, options):
    """pybabel extraction method for translations/babel.cfg: every registered connector's notes, which
    the pages show through note_text()."""
    from integrations.registry import all_connectors
    for cls in all_connectors():
        for note in cls.notes:
            yield 0, "gettext", note, [f"{cls.label} connector note"]

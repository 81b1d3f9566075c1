"""A faithful fake of Bling API v3 for tests and the demo (see /work/shared/erp/bling.md).

What it reproduces, because the connector must cope with each of these in production:
- OAuth2 authorization code only: an authorize page with an Approve button, a token endpoint with HTTP
  Basic client authentication, 6-hour access tokens, single-use codes valid for one minute (re-using one
  revokes the grant), and refresh-token rotation (a rotated refresh token is refused with invalid_grant);
- every request body is validated against the official OpenAPI spec (OpenAPI 3.0 write rules, so
  read-only properties are neither required nor accepted) and refused in Bling's own error shape
  (error.type / message / description / fields[] with collection[] for array items);
- Bling's limits per account: 3 requests/s and 120,000/day, 429 TOO_MANY_REQUESTS without Retry-After;
  and the reported IP blocks (300 errors or 600 requests in 10 s, more than 20 token calls in 60 s),
  which the connector must never trigger;
- the two-step flows: order -> lancar-contas -> receivables -> baixar -> borderô; NFS-e created, then
  sent (enviar), then issued by the municipality a little later; NF-e generated from an order, then sent;
- list endpoints with pagina/limite (max 100), no totals, date-time filters "YYYY-MM-DD HH:MM:SS" in
  Brasília time, windows of at most one year;
- webhooks signed with X-Bling-Signature-256 = sha256=HMAC-SHA256(app client_secret, raw body), kept
  under GET /__sandbox__/webhooks so tests can replay them.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections import deque
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

from openapi_schema_validator import OAS30WriteValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..brazil import is_valid_cnpj, is_valid_cpf, normalize_tax_id
from ..sandbox_kit import IdSequence, SandboxApp

DEMO_CREDENTIALS: dict[str, str] = {
    "client_id": "tecpet-bling-demo-client",
    "client_secret": "tecpet-bling-demo-secret-7f3a9c",
}

#: Bling's documented limits per account: 3 requests per second and 120,000 per day.
BLING_RATE_LIMIT: list[tuple[int, float]] = [(3, 1.0), (120_000, 86_400.0)]
ACCESS_TOKEN_SECONDS = 21_600          # 6 h
REFRESH_TOKEN_SECONDS = 30 * 86_400    # ~30 days (reported)
CODE_SECONDS = 60                      # authorization codes live about a minute (reported)
PAGE_LIMIT_MAX = 100
BRASILIA = timezone(timedelta(hours=-3), "BRT")

# Reported IP blocks: (events, window seconds, block seconds).
ERROR_BLOCK = (300, 10.0, 600.0)
REQUEST_BLOCK = (600, 10.0, 600.0)
TOKEN_BLOCK = (20, 60.0, 3600.0)

SPEC_ENV = "BLING_OPENAPI_SPEC"


# --------------------------------------------------------------------------- the official spec
def spec_path() -> Path:
    """The official spec, vendored beside this module (a copy of shared/erp/specs/bling-openapi.json);
    $BLING_OPENAPI_SPEC points elsewhere when a newer spec is being tried."""
    explicit = os.environ.get(SPEC_ENV)
    path = Path(explicit) if explicit else Path(__file__).with_name("openapi.json")
    if not path.is_file():
        raise FileNotFoundError(f"Bling's OpenAPI spec not found at {path}")
    return path


@functools.lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    with open(spec_path(), encoding="utf-8") as fh:
        return json.load(fh)


class SpecBodyValidator:
    """Checks request bodies against the requestBody schema the spec declares for an operation.

    OpenAPI 3.0 "write" semantics (openapi-schema-validator's OAS30WriteValidator): a property marked
    readOnly is not required in a request and may not be sent, which is how the spec's shared DTOs
    (id flagged required yet "ignored on POST") are meant to be read.
    """

    SPEC_URI = "urn:bling-openapi"

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        resource = Resource(contents=spec, specification=DRAFT4)
        self._registry = Registry().with_resource(self.SPEC_URI, resource)
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def has_body(self, method: str, path: str) -> bool:
        operation = self.spec["paths"][path][method.lower()]
        return "requestBody" in operation

    def body_required(self, method: str, path: str) -> bool:
        return bool(self.spec["paths"][path][method.lower()].get("requestBody", {}).get("required"))

    def _validator(self, method: str, path: str):
        key = (method.lower(), path)
        with self._lock:
            if key not in self._cache:
                pointer = "/".join(["paths", _pointer_part(path), key[0], "requestBody", "content",
                                    _pointer_part("application/json"), "schema"])
                schema = {"$ref": f"{self.SPEC_URI}#/{quote(pointer, safe='/~')}"}
                self._cache[key] = OAS30WriteValidator(schema, registry=self._registry,
                                                       format_checker=oas30_format_checker)
            return self._cache[key]

    def errors(self, method: str, path: str, body: Any) -> list[Any]:
        """Every violation, deepest first within a path (jsonschema ValidationErrors)."""
        return sorted(self._validator(method, path).iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))


def _pointer_part(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


@functools.lru_cache(maxsize=1)
def spec_validator() -> SpecBodyValidator:
    return SpecBodyValidator(load_spec())


# --------------------------------------------------------------------------- Bling's error shape
def bling_error(kind: str, message: str, description: str = "", fields: list[dict[str, Any]] | None = None) -> dict:
    error: dict[str, Any] = {"type": kind, "message": message, "description": description or message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def field_error(element: str, msg: str, namespace: str, code: int = 1, index: int | None = None,
                parent: str | None = None) -> dict[str, Any]:
    """One fields[] entry; errors inside arrays (items, installments) go into collection[] with a
    1-based index, as Bling reports them."""
    if parent is None:
        return {"code": code, "msg": msg, "element": element, "namespace": namespace}
    return {"code": code, "msg": msg, "element": parent, "namespace": namespace,
            "collection": [{"index": index, "code": code, "msg": msg, "element": element, "namespace": namespace}]}


_REQUIRED_NAME = re.compile(r"'([^']+)' is a required property")


def schema_error_fields(errors: list[Any], namespace: str) -> tuple[str, list[dict[str, Any]]]:
    """jsonschema errors -> (Bling error type, fields[]) in Portuguese, as Bling words them."""
    fields = []
    all_missing = True
    for err in errors:
        path = list(err.absolute_path)
        if err.validator == "required":
            match = _REQUIRED_NAME.search(err.message)
            name = match.group(1) if match else "?"
            msg = f"O campo {name} é obrigatório"
            path = path + [name]
        else:
            all_missing = False
            name = str(path[-1]) if path else "corpo"
            msg = _schema_message(err, name)
        fields.append(_field_from_path(path, msg, namespace))
    kind = "MISSING_REQUIRED_FIELD_ERROR" if all_missing else "VALIDATION_ERROR"
    return kind, fields


def _schema_message(err: Any, name: str) -> str:
    if err.validator == "enum":
        return f"O valor informado para {name} é inválido ({err.instance!r})"
    if err.validator == "type":
        return f"O campo {name} deve ser do tipo {err.validator_value}"
    if err.validator == "format":
        return f"O campo {name} não está no formato {err.validator_value}"
    if err.validator == "readOnly":
        return f"O campo {name} não pode ser informado"
    return f"O campo {name} é inválido: {err.message}"


def _field_from_path(path: list[Any], msg: str, namespace: str) -> dict[str, Any]:
    for position, part in enumerate(path):
        if isinstance(part, int) and position > 0:
            rest = [str(p) for p in path[position + 1:]]
            return field_error(".".join(rest) or str(path[position - 1]), msg, namespace,
                               index=part + 1, parent=str(path[position - 1]))
    element = ".".join(str(p) for p in path) if path else "corpo"
    return field_error(element, msg, namespace)


# --------------------------------------------------------------------------- small helpers
def now_brasilia() -> datetime:
    return datetime.now(BRASILIA).replace(tzinfo=None, microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def parse_stamp(text: str) -> datetime | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt)
        except (TypeError, ValueError):
            continue
    return None


def to_cents(value: Any) -> int:
    return int(round(float(value or 0) * 100))


def access_key(first_43: str) -> str:
    """An NF-e access key: 43 digits plus the modulo-11 check digit (weights 2..9 from the right)."""
    total = sum(int(d) * (2 + i % 8) for i, d in enumerate(reversed(first_43)))
    remainder = total % 11
    return first_43 + str(0 if remainder < 2 else 11 - remainder)


def _item_cents(item: dict[str, Any]) -> int:
    """An order item's value: quantity x unit price less its percentage discount."""
    return to_cents(item["quantidade"] * item["valor"] * (1 - (item.get("desconto") or 0) / 100))


def operation(method: str, spec_path_: str, namespace: str, subject: str):
    """Marks a handler as the sandbox's copy of one spec operation: authenticates the bearer token,
    validates the body against the spec, then runs the handler under the data lock."""

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def endpoint(self: "Sandbox", request: Request, **args: Any) -> Response:
            denied = self.authenticate(request)
            if denied is not None:
                return denied
            body, refused = self.validated_body(request, method, spec_path_, namespace, subject)
            if refused is not None:
                return refused
            with self.lock:
                return handler(self, request, body, **args)

        endpoint.bling_route = (method, spec_path_)  # type: ignore[attr-defined]
        return endpoint

    return decorate


def werkzeug_path(path: str) -> str:
    """/contatos/{idContato} -> /contatos/<int:idContato> (every Bling path id is an integer)."""
    return re.sub(r"\{(\w+)\}", r"<int:\1>", path)


# --------------------------------------------------------------------------- the sandbox
class Sandbox(SandboxApp):
    name = "bling"
    default_rate_limit = list(BLING_RATE_LIMIT)

    def __init__(self, *, issuing_seconds: float = 2.0, token_lifetime: float = ACCESS_TOKEN_SECONDS,
                 **faults: Any):
        self.issuing_seconds = issuing_seconds
        self.token_lifetime = token_lifetime
        self.validator = spec_validator()
        super().__init__(**faults)

    # ------------------------------------------------------------------ state
    def reset_data(self) -> None:
        self.ids = IdSequence(16_000_000)
        self.apps = {DEMO_CREDENTIALS["client_id"]: {"secret": DEMO_CREDENTIALS["client_secret"],
                                                       "redirect_uri": ""}}
        self.company = {"id": "9876543", "nome": "Clínica Veterinária Demo Ltda", "cnpj": "11222333000181",
                        "email": "financeiro@clinicademo.com.br", "dataContrato": "2024-01-15"}
        self.codes: dict[str, dict[str, Any]] = {}
        self.grants: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self.token_calls = 0
        self.refreshes = 0
        self.ip_blocks = 0
        self.blocked_until = 0.0
        self._recent_requests: deque = deque()
        self._recent_errors: deque = deque()
        self._recent_token_calls: deque = deque()
        self.contacts: dict[int, dict[str, Any]] = {}
        self.contact_meta: dict[int, dict[str, datetime]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.order_meta: dict[int, dict[str, Any]] = {}
        self.receivables: dict[int, dict[str, Any]] = {}
        self.receipt_dates: dict[int, date] = {}
        self.borderos: dict[int, dict[str, Any]] = {}
        self.nfse: dict[int, dict[str, Any]] = {}
        self.nfse_meta: dict[int, dict[str, Any]] = {}
        self.nfe: dict[int, dict[str, Any]] = {}
        self.nfe_meta: dict[int, dict[str, Any]] = {}
        self.webhooks: list[dict[str, Any]] = []
        self.order_numbers = IdSequence(0)
        self.portador_id = 7_001
        self.categoria_id = 7_101
        self.payment_methods = {
            pid: {"id": pid, "descricao": desc, "tipoPagamento": kind, "situacao": 1, "fixa": False,
                  "padrao": 1 if pid == 501 else 0, "finalidade": 3, "juros": 0, "multa": 0}
            for pid, desc, kind in ((501, "Dinheiro", 1), (502, "Cartão de crédito", 3), (503, "Cartão de débito", 4),
                                    (504, "Boleto bancário", 15), (505, "PIX", 17), (506, "Transferência", 18))
        }
        self.nfse_config = {
            "basicas": {"emissorPadrao": 1, "naturezaOperacao": 1},
            "ISS": {"zerar": False, "reter": False, "descontar": False,
                    "tributos": [{"id": 1, "percentualISS": 2.0, "CNAE": "7500100",
                                  "descricaoServico": "Serviços veterinários", "padrao": True,
                                  "codigo": {"listaServico": "0501", "tributacao": "050101"}}]},
            "controle": {"numeracaoRPS": {"cnpjEmitente": self.company["cnpj"], "id": 1, "numero": 1, "serie": 1}},
        }

    def state(self) -> dict[str, Any]:
        return {"contacts": list(self.contacts.values()), "orders": list(self.orders.values()),
                "receivables": list(self.receivables.values()), "borderos": list(self.borderos.values()),
                "nfse": list(self.nfse.values()), "nfe": list(self.nfe.values()),
                "payment_methods": list(self.payment_methods.values())}

    def stats(self) -> dict[str, Any]:
        data = super().stats()
        with self.lock:
            data.update({"token_calls": self.token_calls, "refreshes": self.refreshes, "ip_blocks": self.ip_blocks,
                         "webhooks": len(self.webhooks)})
        return data

    # ------------------------------------------------------------------ WSGI: IP blocks around the kit
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__sandbox__"):
            return super().__call__(environ, start_response)
        if self._ip_blocked():
            blocked = self.json(bling_error("FORBIDDEN", "Acesso bloqueado",
                                            "O IP foi bloqueado temporariamente por excesso de requisições."), 403)
            return blocked(environ, start_response)
        statuses: list[int] = []

        def capture(status: str, headers, exc_info=None):
            statuses.append(int(status.split()[0]))
            return start_response(status, headers, exc_info)

        result = super().__call__(environ, capture)
        self._note_for_ip_blocks(path, statuses[0] if statuses else 200)
        return result

    def _ip_scale(self) -> float:
        """IP thresholds grow with the account limit when a test scales it up (never below Bling's)."""
        per_second = [n / s for n, s in self.faults.rate_limit if s <= 1.0]
        return max(1.0, (per_second[0] / 3.0) if per_second else 1.0)

    def _ip_blocked(self) -> bool:
        with self.lock:
            return time.monotonic() < self.blocked_until

    def _note_for_ip_blocks(self, path: str, status: int) -> None:
        now = time.monotonic()
        scale = self._ip_scale()
        with self.lock:
            checks = [(self._recent_requests, REQUEST_BLOCK, True), (self._recent_errors, ERROR_BLOCK, status >= 400),
                      (self._recent_token_calls, TOKEN_BLOCK, path.endswith("/oauth/token"))]
            for events, (limit, window, block), happened in checks:
                if not happened:
                    continue
                events.append(now)
                while events and events[0] <= now - window:
                    events.popleft()
                if len(events) > limit * scale:
                    self.ip_blocks += 1
                    self.blocked_until = now + block
                    events.clear()

    # ------------------------------------------------------------------ kit hooks in Bling's shapes
    def account_of(self, request: Request) -> str:
        token = self._bearer(request)
        with self.lock:
            entry = self.access_tokens.get(token or "")
        return entry["account"] if entry else "anonymous"

    def throttled_response(self, request: Request, retry_after: float) -> Response:
        # Bling documents no Retry-After / X-RateLimit-* headers, so none are sent.
        return self.json(bling_error("TOO_MANY_REQUESTS", "Limite de requisições atingido",
                                     "O limite de requisições por segundo foi atingido, tente novamente mais tarde."),
                         429)

    def server_error_response(self, request: Request) -> Response:
        return self.json(bling_error("SERVER_ERROR", "Erro interno", "Ocorreu um erro inesperado no servidor."), 500)

    def not_found(self, request: Request) -> Response:
        return self.json(bling_error("RESOURCE_NOT_FOUND", "Recurso não encontrado",
                                     "O recurso requisitado não foi encontrado."), 404)

    def _control(self, endpoint: str, request: Request) -> Response:
        if endpoint == "_webhooks":
            with self.lock:
                return self.json(list(self.webhooks))
        return super()._control(endpoint, request)

    # ------------------------------------------------------------------ auth
    @staticmethod
    def _bearer(request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else None

    def authenticate(self, request: Request) -> Response | None:
        """None when the bearer token is valid; the expire_tokens fault ages every token out once."""
        token = self._bearer(request)
        with self.lock:
            if self.faults.expire_tokens:
                for entry in self.access_tokens.values():
                    entry["expires"] = 0.0
                self.faults.expire_tokens = False
            entry = self.access_tokens.get(token or "")
            if entry is None or entry["expires"] <= time.time() or entry["grant"] not in self.grants:
                reason = "The access token provided has expired" if entry else "The access token provided is invalid"
                return self.json(bling_error("invalid_token", "invalid_token", reason), 401)
        return None

    def authorize_page(self, request: Request) -> Response:
        params = request.values
        client_id = params.get("client_id", "")
        if params.get("response_type") != "code" or client_id not in self.apps:
            return self.json(bling_error("invalid_request", "invalid_request",
                                         "response_type=code e um client_id válido são obrigatórios"), 400)
        redirect_uri = params.get("redirect_uri") or self.apps[client_id]["redirect_uri"]
        if not redirect_uri:
            return self.json(bling_error("invalid_request", "invalid_request", "Link de redirecionamento ausente"), 400)
        if request.method == "POST" and params.get("approve"):
            return self._issue_code(client_id, redirect_uri, params.get("state", ""))
        return self._consent_form(client_id, redirect_uri, params.get("state", ""))

    def _consent_form(self, client_id: str, redirect_uri: str, state: str) -> Response:
        fields = {"response_type": "code", "client_id": client_id, "state": state, "redirect_uri": redirect_uri}
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v, quote=True)}">'
                         for k, v in fields.items())
        page = ("<!doctype html><html lang=pt-br><head><meta charset=utf-8><title>Bling - Autorizar aplicativo"
                "</title></head><body><h1>Autorizar aplicativo</h1>"
                f"<p>O aplicativo <b>{html.escape(client_id)}</b> quer acessar a conta "
                f"<b>{html.escape(self.company['nome'])}</b>.</p>"
                f'<form method="post" action="authorize">{hidden}'
                '<button type="submit" name="approve" value="1">Approve</button></form></body></html>')
        return Response(page, content_type="text/html; charset=utf-8")

    def _issue_code(self, client_id: str, redirect_uri: str, state: str) -> Response:
        code = secrets.token_hex(20)
        with self.lock:
            self.codes[code] = {"client_id": client_id, "expires": time.time() + CODE_SECONDS, "used": False,
                                "grant": None}
        separator = "&" if "?" in redirect_uri else "?"
        location = f"{redirect_uri}{separator}{urlencode({'code': code, 'state': state})}"
        return Response("", status=302, headers={"Location": location})

    def token_endpoint(self, request: Request) -> Response:
        with self.lock:
            self.token_calls += 1
        client_id = self._basic_client(request)
        if client_id is None:
            return self.json(bling_error("invalid_client", "invalid_client", "Client credentials are invalid"), 401)
        grant_type = request.form.get("grant_type", "")
        with self.lock:
            if grant_type == "authorization_code":
                return self._exchange(client_id, request.form.get("code", ""))
            if grant_type == "refresh_token":
                return self._rotate(client_id, request.form.get("refresh_token", ""))
        return self.json(bling_error("unsupported_grant_type", "unsupported_grant_type",
                                     "Grant type not supported"), 400)

    def _basic_client(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        app = self.apps.get(client_id)
        return client_id if app and hmac.compare_digest(app["secret"], secret) else None

    def _exchange(self, client_id: str, code: str) -> Response:
        entry = self.codes.get(code)
        if entry is None or entry["client_id"] != client_id or entry["expires"] <= time.time():
            return self._invalid_grant("Authorization code doesn't exist or is invalid for the client")
        if entry["used"]:
            # Re-using a code is reported to revoke the grant it produced.
            self.grants.pop(entry["grant"], None)
            return self._invalid_grant("Authorization code has already been used")
        entry["used"] = True
        grant = uuid.uuid4().hex
        entry["grant"] = grant
        self.grants[grant] = {"client_id": client_id, "account": f"company-{self.company['id']}"}
        return self._token_response(grant)

    def _rotate(self, client_id: str, refresh_token: str) -> Response:
        entry = self.refresh_tokens.get(refresh_token)
        if (entry is None or entry["client_id"] != client_id or entry["rotated"]
                or entry["expires"] <= time.time() or entry["grant"] not in self.grants):
            return self._invalid_grant("Invalid refresh token")
        entry["rotated"] = True
        self.refreshes += 1
        return self._token_response(entry["grant"])

    def _invalid_grant(self, description: str) -> Response:
        return self.json(bling_error("invalid_grant", "invalid_grant", description), 400)

    def _token_response(self, grant: str) -> Response:
        info = self.grants[grant]
        access, refresh = secrets.token_hex(20), secrets.token_hex(20)
        self.access_tokens[access] = {"grant": grant, "account": info["account"],
                                      "expires": time.time() + self.token_lifetime}
        self.refresh_tokens[refresh] = {"grant": grant, "client_id": info["client_id"], "rotated": False,
                                        "expires": time.time() + REFRESH_TOKEN_SECONDS}
        return self.json({"access_token": access, "expires_in": int(self.token_lifetime), "token_type": "Bearer",
                          "scope": "98309 318257570 5990556", "refresh_token": refresh})

    # ------------------------------------------------------------------ body validation
    def validated_body(self, request: Request, method: str, path: str, namespace: str,
                       subject: str) -> tuple[Any, Response | None]:
        """The parsed JSON body, or Bling's 400 when it is empty, not JSON, or breaks the spec."""
        if not self.validator.has_body(method, path):
            return None, None
        raw = request.get_data(cache=True)
        if not raw.strip():
            if not self.validator.body_required(method, path):
                return None, None
            return None, self.json(bling_error("EMPTY_REQUEST_BODY", "Corpo da requisição vazio",
                                               "O corpo da requisição não foi informado."), 400)
        try:
            body = json.loads(raw)
        except ValueError:
            return None, self.json(bling_error("INVALID_REQUEST_BODY", "Corpo da requisição inválido",
                                               "O corpo da requisição não é um JSON válido."), 400)
        problems = self.validator.errors(method, path, body)
        if problems:
            kind, fields = schema_error_fields(problems, namespace)
            return None, self.json(bling_error(kind, f"Não foi possível salvar {subject}",
                                               f"{subject.capitalize()} não pode ser salvo(a), pois ocorreram "
                                               "problemas em sua validação.", fields), 400)
        return body, None

    def validation_failed(self, subject: str, fields: list[dict[str, Any]]) -> Response:
        return self.json(bling_error("VALIDATION_ERROR", f"Não foi possível salvar {subject}",
                                     f"{subject.capitalize()} não pode ser salvo(a), pois ocorreram problemas "
                                     "em sua validação.", fields), 400)

    @staticmethod
    def page_of(request: Request, items: list[Any]) -> list[Any]:
        page = max(1, request.args.get("pagina", 1, type=int) or 1)
        limit = min(PAGE_LIMIT_MAX, max(1, request.args.get("limite", PAGE_LIMIT_MAX, type=int) or PAGE_LIMIT_MAX))
        return items[(page - 1) * limit: page * limit]

    def window_too_long(self, start: datetime | None, end: datetime | None) -> Response | None:
        if start and end and end - start > timedelta(days=366):
            return self.json(bling_error("VALIDATION_ERROR", "Período inválido",
                                         "O período informado não pode ser maior que 1 ano."), 400)
        return None

    # ------------------------------------------------------------------ webhooks
    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Record a webhook delivery per app, signed as Bling signs them."""
        envelope = {"eventId": uuid.uuid4().hex, "date": datetime.now(BRASILIA).isoformat(timespec="seconds"),
                    "version": "v1", "event": event, "companyId": self.company["id"], "data": data}
        body = json.dumps(envelope, ensure_ascii=False)
        for client_id, app in self.apps.items():
            digest = hmac.new(app["secret"].encode(), body.encode("utf-8"), hashlib.sha256).hexdigest()
            self.webhooks.append({"app": client_id, "headers": {"X-Bling-Signature-256": f"sha256={digest}",
                                                                "Content-Type": "application/json"},
                                  "body": body})

    # ------------------------------------------------------------------ company
    @operation("GET", "/empresas/me/dados-basicos", "EMPRESAS", "a empresa")
    def company_basics(self, request: Request, body: Any) -> Response:
        return self.json({"data": dict(self.company)})

    # ------------------------------------------------------------------ contacts
    @operation("GET", "/contatos", "CONTATOS", "o contato")
    def contacts_list(self, request: Request, body: Any) -> Response:
        args = request.args
        changed_from, changed_to = parse_stamp(args.get("dataAlteracaoInicial", "")), parse_stamp(
            args.get("dataAlteracaoFinal", ""))
        too_long = self.window_too_long(changed_from, changed_to)
        if too_long:
            return too_long
        wanted = {int(i) for i in args.getlist("idsContatos[]") if i.isdigit()}
        criterio = args.get("criterio", 3, type=int)
        rows = []
        for cid, contact in sorted(self.contacts.items(), reverse=(criterio == 3)):
            changed = self.contact_meta[cid]["changed"]
            if criterio == 2 and contact["situacao"] != "E" or criterio != 2 and contact["situacao"] == "E":
                continue
            if criterio == 4 and contact["situacao"] != "S":
                continue
            if args.get("numeroDocumento") and normalize_tax_id(contact.get("numeroDocumento", "")) != \
                    normalize_tax_id(args["numeroDocumento"]):
                continue
            if args.get("pesquisa") and not self._contact_matches(contact, args["pesquisa"]):
                continue
            if wanted and cid not in wanted:
                continue
            if changed_from and changed < changed_from or changed_to and changed > changed_to:
                continue
            tipo = {"1": "F", "2": "J", "3": "E"}.get(args.get("tipoPessoa", ""))
            if tipo and contact.get("tipo") != tipo:
                continue
            rows.append({k: contact.get(k, "") for k in ("id", "nome", "codigo", "situacao", "numeroDocumento",
                                                         "telefone", "celular")})
        return self.json({"data": self.page_of(request, rows)})

    @staticmethod
    def _contact_matches(contact: dict[str, Any], text: str) -> bool:
        needle = text.strip().lower()
        haystack = [contact.get(k, "") or "" for k in ("nome", "fantasia", "email", "codigo")]
        haystack.append(normalize_tax_id(contact.get("numeroDocumento", "")).lower())
        return any(needle in value.lower() for value in haystack)

    @operation("GET", "/contatos/{idContato}", "CONTATOS", "o contato")
    def contacts_get(self, request: Request, body: Any, idContato: int) -> Response:
        contact = self.contacts.get(idContato)
        return self.json({"data": contact}) if contact else self.not_found(request)

    @operation("POST", "/contatos", "CONTATOS", "o contato")
    def contacts_create(self, request: Request, body: Any) -> Response:
        problems = self._contact_problems(body)
        if problems:
            return self.validation_failed("o contato", problems)
        cid = self.ids.next()
        self.contacts[cid] = {**body, "id": cid}
        moment = now_brasilia()
        self.contact_meta[cid] = {"created": moment, "changed": moment}
        self.emit("contact.created", {"id": cid})
        return self.json({"data": {"id": cid}}, 201)

    @operation("PUT", "/contatos/{idContato}", "CONTATOS", "o contato")
    def contacts_update(self, request: Request, body: Any, idContato: int) -> Response:
        if idContato not in self.contacts:
            return self.not_found(request)
        problems = self._contact_problems(body)
        if problems:
            return self.validation_failed("o contato", problems)
        self.contacts[idContato] = {**body, "id": idContato}  # PUT replaces the whole record
        self.contact_meta[idContato]["changed"] = now_brasilia()
        self.emit("contact.updated", {"id": idContato})
        return Response(status=204)

    @staticmethod
    def _contact_problems(body: dict[str, Any]) -> list[dict[str, Any]]:
        """Bling's own checks beyond the schema: a name, and a real CPF/CNPJ for the person type."""
        problems = []
        if not str(body.get("nome", "")).strip():
            problems.append(field_error("nome", "O nome do contato não pode ficar em branco", "CONTATOS", code=2))
        document = body.get("numeroDocumento") or ""
        if document:
            if body.get("tipo") == "F" and not is_valid_cpf(document):
                problems.append(field_error("numeroDocumento", "O CPF informado é inválido", "CONTATOS", code=4))
            elif body.get("tipo") == "J" and not is_valid_cnpj(document):
                problems.append(field_error("numeroDocumento", "O CNPJ informado é inválido", "CONTATOS", code=5))
        return problems

    # ------------------------------------------------------------------ payment methods
    @operation("GET", "/formas-pagamentos", "FORMAS_PAGAMENTO", "a forma de pagamento")
    def payment_methods_list(self, request: Request, body: Any) -> Response:
        kinds = {int(k) for k in request.args.getlist("tiposPagamentos[]") if k.isdigit()}
        situation = request.args.get("situacao", type=int)
        rows = [m for _, m in sorted(self.payment_methods.items())
                if (not kinds or m["tipoPagamento"] in kinds) and (situation is None or m["situacao"] == situation)]
        return self.json({"data": self.page_of(request, rows)})

    # ------------------------------------------------------------------ sales orders
    @operation("POST", "/pedidos/vendas", "VENDAS", "a venda")
    def orders_create(self, request: Request, body: Any) -> Response:
        problems = self._order_problems(body)
        if problems:
            return self.validation_failed("a venda", problems)
        oid = self.ids.next()
        contact = self.contacts[body["contato"]["id"]]
        items_total = sum(_item_cents(i) for i in body["itens"])
        order = {**body, "id": oid, "numero": body.get("numero") or self.order_numbers.next(),
                 "numeroLoja": body.get("numeroLoja", ""), "totalProdutos": items_total / 100,
                 "total": self._order_total_cents(body) / 100,
                 "contato": {"id": contact["id"], "nome": contact["nome"], "tipoPessoa": contact.get("tipo", "F"),
                             "numeroDocumento": contact.get("numeroDocumento", "")},
                 "situacao": {"id": 6, "valor": 0},
                 "itens": [{**item, "id": self.ids.next()} for item in body["itens"]],
                 "parcelas": [{**p, "id": self.ids.next()} for p in body["parcelas"]]}
        self.orders[oid] = order
        self.order_meta[oid] = {"changed": now_brasilia(), "accounts_posted": False}
        self.emit("order.created", {"id": oid})
        return self.json({"data": {"id": oid, "alertas": []}}, 201)

    @staticmethod
    def _order_total_cents(body: dict[str, Any]) -> int:
        items = sum(_item_cents(i) for i in body["itens"])
        discount = body.get("desconto") or {}
        cut = to_cents(discount.get("valor", 0))
        if discount.get("unidade") == "PERCENTUAL":
            cut = round(items * float(discount.get("valor", 0)) / 100)
        return items - cut + to_cents(body.get("outrasDespesas", 0))

    def _order_problems(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Bling's checks beyond the schema: the contact exists, payment methods exist, the
        installments add up to the order total."""
        problems = []
        if body["contato"]["id"] not in self.contacts:
            problems.append(field_error("contato", "O contato informado não foi encontrado", "VENDAS", code=30))
        if not body["itens"]:
            problems.append(field_error("itens", "A venda deve possuir ao menos um item", "VENDAS", code=31))
        for index, parcela in enumerate(body["parcelas"], start=1):
            if parcela["formaPagamento"]["id"] not in self.payment_methods:
                problems.append(field_error("formaPagamento", "A forma de pagamento informada não existe", "VENDAS",
                                            code=12, index=index, parent="parcelas"))
        if body["parcelas"] and body["itens"]:
            parcels = sum(to_cents(p["valor"]) for p in body["parcelas"])
            if parcels != self._order_total_cents(body):
                problems.append(field_error("parcelas", "A soma das parcelas difere do total da venda", "VENDAS",
                                            code=49))
        return problems

    @operation("GET", "/pedidos/vendas", "VENDAS", "a venda")
    def orders_list(self, request: Request, body: Any) -> Response:
        store_numbers = set(request.args.getlist("numerosLojas[]"))
        contact = request.args.get("idContato", type=int)
        rows = []
        for oid, order in sorted(self.orders.items()):
            if store_numbers and order.get("numeroLoja") not in store_numbers:
                continue
            if contact and order["contato"]["id"] != contact:
                continue
            rows.append({k: order.get(k) for k in ("id", "numero", "numeroLoja", "data", "dataSaida", "dataPrevista",
                                                   "totalProdutos", "total", "contato", "situacao")})
        return self.json({"data": self.page_of(request, rows)})

    @operation("GET", "/pedidos/vendas/{idPedidoVenda}", "VENDAS", "a venda")
    def orders_get(self, request: Request, body: Any, idPedidoVenda: int) -> Response:
        order = self.orders.get(idPedidoVenda)
        return self.json({"data": order}) if order else self.not_found(request)

    @operation("POST", "/pedidos/vendas/{idPedidoVenda}/lancar-contas", "VENDAS", "a venda")
    def orders_post_accounts(self, request: Request, body: Any, idPedidoVenda: int) -> Response:
        order = self.orders.get(idPedidoVenda)
        if order is None:
            return self.not_found(request)
        if self.order_meta[idPedidoVenda]["accounts_posted"]:
            return self.json(bling_error("VALIDATION_ERROR", "Não foi possível lançar as contas",
                                         "As contas deste pedido de venda já foram lançadas."), 400)
        for number, parcela in enumerate(order["parcelas"], start=1):
            self._receivable_from(order, parcela, number)
        self.order_meta[idPedidoVenda]["accounts_posted"] = True
        return Response(status=204)

    def _receivable_from(self, order: dict[str, Any], parcela: dict[str, Any], number: int) -> None:
        rid = self.ids.next()
        method = self.payment_methods[parcela["formaPagamento"]["id"]]
        contact = self.contacts[order["contato"]["id"]]
        self.receivables[rid] = {
            "id": rid, "situacao": 1, "vencimento": parcela["dataVencimento"], "valor": parcela["valor"],
            "saldo": parcela["valor"], "dataEmissao": order["data"], "vencimentoOriginal": parcela["dataVencimento"],
            "numeroDocumento": f"{order['numero']}/{number}", "competencia": order["data"],
            "historico": f"Ref. ao pedido de venda nº {order['numero']}", "numeroBanco": "",
            "contato": {"id": contact["id"], "nome": contact["nome"],
                        "numeroDocumento": contact.get("numeroDocumento", ""), "tipo": contact.get("tipo", "F")},
            "formaPagamento": {"id": method["id"], "codigoFiscal": method["tipoPagamento"]},
            "portador": {"id": self.portador_id}, "categoria": {"id": self.categoria_id},
            "origem": {"id": order["id"], "tipoOrigem": "venda", "numero": str(order["numero"]),
                       "dataEmissao": order["data"], "valor": order["total"], "situacao": 1,
                       "url": f"https://www.bling.com.br/vendas.php#edit/{order['id']}"},
            "borderos": [], "linkBoleto": "", "linkQRCodePix": "", "idTransacao": "",
        }

    @operation("POST", "/pedidos/vendas/{idPedidoVenda}/gerar-nfe", "VENDAS", "a nota fiscal")
    def orders_generate_nfe(self, request: Request, body: Any, idPedidoVenda: int) -> Response:
        order = self.orders.get(idPedidoVenda)
        if order is None:
            return self.not_found(request)
        if order.get("notaFiscal"):
            return self.json(bling_error("VALIDATION_ERROR", "Não foi possível gerar a nota fiscal",
                                         "Já existe uma nota fiscal gerada para este pedido de venda."), 400)
        nid = self.ids.next()
        contact = self.contacts[order["contato"]["id"]]
        address = (contact.get("endereco") or {}).get("geral") or {}
        recipient = {"id": contact["id"], "nome": contact["nome"], "tipoPessoa": contact.get("tipo", "F"),
                     "numeroDocumento": contact.get("numeroDocumento", ""),
                     "contribuinte": contact.get("indicadorIe", 9), "ie": contact.get("ie", ""),
                     "email": contact.get("email", ""), "telefone": contact.get("telefone", ""),
                     "endereco": {k: address.get(k, "") for k in ("endereco", "numero", "complemento", "bairro",
                                                                   "cep", "municipio", "uf")}}
        self.nfe[nid] = {"id": nid, "tipo": 1, "situacao": 1, "numero": "", "serie": 1, "chaveAcesso": "",
                         "dataEmissao": stamp(now_brasilia()), "dataOperacao": stamp(now_brasilia()),
                         "valorNota": order["total"], "numeroPedidoLoja": order.get("numeroLoja", ""),
                         "naturezaOperacao": {"id": 1}, "contato": recipient}
        self.nfe_meta[nid] = {"sent_at": None}
        order["notaFiscal"] = {"id": nid}
        return self.json({"idNotaFiscal": nid}, 201)

    # ------------------------------------------------------------------ NF-e
    @operation("GET", "/nfe/{idNotaFiscal}", "NOTAS_FISCAIS", "a nota fiscal")
    def nfe_get(self, request: Request, body: Any, idNotaFiscal: int) -> Response:
        note = self.nfe.get(idNotaFiscal)
        if note is None:
            return self.not_found(request)
        self._advance_nfe(idNotaFiscal)
        return self.json({"data": note})

    @operation("POST", "/nfe/{idNotaFiscal}/enviar", "NOTAS_FISCAIS", "a nota fiscal")
    def nfe_send(self, request: Request, body: Any, idNotaFiscal: int) -> Response:
        note = self.nfe.get(idNotaFiscal)
        if note is None:
            return self.not_found(request)
        if self.nfe_meta[idNotaFiscal]["sent_at"] is not None:
            return self.json(bling_error("VALIDATION_ERROR", "Não foi possível enviar a nota",
                                         "A nota fiscal já foi enviada."), 400)
        address = note["contato"]["endereco"]
        missing = [k for k in ("endereco", "bairro", "municipio", "cep") if not address.get(k)]
        if missing:
            note["situacao"] = 4
            return self.json(bling_error("VALIDATION_ERROR", "Nota fiscal rejeitada",
                                         f"Rejeição 225: Falha no Schema XML do destinatário (faltando: "
                                         f"{', '.join(missing)})."), 400)
        note["situacao"] = 8  # Aguardando protocolo
        self.nfe_meta[idNotaFiscal]["sent_at"] = time.monotonic()
        return self.json({"data": {"xml": f"<nfeProc><NFe><infNFe Id=\"NFe{idNotaFiscal}\"/></NFe></nfeProc>"}})

    def _advance_nfe(self, nid: int) -> None:
        note, sent_at = self.nfe[nid], self.nfe_meta[nid]["sent_at"]
        if note["situacao"] == 8 and sent_at is not None and time.monotonic() - sent_at >= self.issuing_seconds:
            note["situacao"] = 5
            note["numero"] = str(nid % 100000)
            note["chaveAcesso"] = access_key(f"35{date.today():%y%m}{self.company['cnpj']}55001{nid % 10**9:09d}1"
                                             f"{nid % 10**8:08d}")

    # ------------------------------------------------------------------ receivables
    @operation("GET", "/contas/receber", "CONTAS_RECEBER", "a conta a receber")
    def receivables_list(self, request: Request, body: Any) -> Response:
        args = request.args
        start, end = parse_stamp(args.get("dataInicial", "")), parse_stamp(args.get("dataFinal", ""))
        too_long = self.window_too_long(start, end)
        if too_long:
            return too_long
        situations = {int(s) for s in args.getlist("situacoes[]") if s.isdigit()}
        contact = args.get("idContato", type=int)
        date_kind = args.get("tipoFiltroData", "E")
        rows = []
        for rid, item in sorted(self.receivables.items()):
            if situations and item["situacao"] not in situations:
                continue
            if contact and item["contato"]["id"] != contact:
                continue
            if (start or end) and not self._in_window(self._receivable_date(rid, date_kind), start, end):
                continue
            rows.append({k: item[k] for k in ("id", "situacao", "vencimento", "valor", "idTransacao", "linkQRCodePix",
                                              "linkBoleto", "dataEmissao", "contato", "formaPagamento", "origem")})
        return self.json({"data": self.page_of(request, rows)})

    def _receivable_date(self, rid: int, kind: str) -> date | None:
        item = self.receivables[rid]
        if kind == "R":
            return self.receipt_dates.get(rid)
        return date.fromisoformat(item["vencimento"] if kind == "V" else item["dataEmissao"])

    @staticmethod
    def _in_window(day: date | None, start: datetime | None, end: datetime | None) -> bool:
        if day is None:
            return False
        return (not start or day >= start.date()) and (not end or day <= end.date())

    @operation("GET", "/contas/receber/{idContaReceber}", "CONTAS_RECEBER", "a conta a receber")
    def receivables_get(self, request: Request, body: Any, idContaReceber: int) -> Response:
        item = self.receivables.get(idContaReceber)
        return self.json({"data": item}) if item else self.not_found(request)

    @operation("POST", "/contas/receber/{idContaReceber}/baixar", "CONTAS_RECEBER", "o recebimento")
    def receivables_settle(self, request: Request, body: Any, idContaReceber: int) -> Response:
        item = self.receivables.get(idContaReceber)
        if item is None:
            return self.not_found(request)
        balance = to_cents(item["saldo"])
        received = to_cents(body["valorRecebido"]) if "valorRecebido" in body else balance
        if item["situacao"] in (2, 5) or balance <= 0:
            return self.validation_failed("o recebimento", [field_error(
                "situacao", "A conta não está em aberto", "CONTAS_RECEBER", code=60)])
        if received <= 0 or received > balance:
            return self.validation_failed("o recebimento", [field_error(
                "valorRecebido", "O valor recebido deve ser maior que zero e no máximo o saldo da conta",
                "CONTAS_RECEBER", code=61)])
        paid_on = item["vencimento"] if body["usarDataVencimento"] else body["data"]
        bid = self.ids.next()
        self.borderos[bid] = {"id": bid, "data": paid_on, "historico": body["historico"],
                              "portador": {"id": body["portador"]["id"]}, "categoria": {"id": body["categoria"]["id"]},
                              "pagamentos": [{"contato": {"id": item["contato"]["id"]},
                                              "numeroDocumento": item["numeroDocumento"], "valorPago": received / 100,
                                              "juros": body.get("juros", 0), "desconto": body.get("desconto", 0),
                                              "acrescimo": body.get("acrescimo", 0), "tarifa": body.get("tarifa", 0)}]}
        item["saldo"] = (balance - received) / 100
        item["situacao"] = 2 if balance == received else 3
        item["borderos"].append(bid)
        self.receipt_dates[idContaReceber] = date.fromisoformat(paid_on)
        return self.json({"bordero": {"id": bid}})

    @operation("GET", "/borderos/{idBordero}", "BORDEROS", "o borderô")
    def borderos_get(self, request: Request, body: Any, idBordero: int) -> Response:
        bordero = self.borderos.get(idBordero)
        return self.json({"data": bordero}) if bordero else self.not_found(request)

    # ------------------------------------------------------------------ NFS-e
    @operation("GET", "/nfse/configuracoes", "NOTAS_SERVICO", "a configuração")
    def nfse_settings(self, request: Request, body: Any) -> Response:
        return self.json({"data": self.nfse_config})

    @operation("POST", "/nfse", "NOTAS_SERVICO", "a nota de serviço")
    def nfse_create(self, request: Request, body: Any) -> Response:
        problems = self._nfse_problems(body)
        if problems:
            return self.validation_failed("a nota de serviço", problems)
        nid = self.ids.next()
        numbering = self.nfse_config["controle"]["numeracaoRPS"]
        numbering["numero"] = max(numbering["numero"], int(body["numeroRPS"]) + 1)
        total = sum(to_cents(s["valor"]) for s in body["servicos"]) - to_cents(body.get("desconto", 0))
        self.nfse[nid] = {"id": nid, "numero": "", "numeroRPS": body["numeroRPS"], "serie": body["serie"],
                          "situacao": 0, "dataEmissao": body.get("data") or date.today().isoformat(),
                          "valor": total / 100, "contato": body["contato"], "servicos": body["servicos"],
                          "parcelas": body.get("parcelas", []), "link": "", "codigoVerificacao": ""}
        self.nfse_meta[nid] = {"sent_at": None}
        return self.json({"data": {"id": nid, "numeroRPS": body["numeroRPS"], "serie": body["serie"]}}, 201)

    def _nfse_problems(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The contact exists, the RPS number is unused in its series, and there is a service."""
        problems = []
        if body["contato"]["id"] not in self.contacts:
            problems.append(field_error("contato", "O tomador informado não foi encontrado", "NOTAS_SERVICO", code=30))
        if not str(body["numeroRPS"]).isdigit():
            problems.append(field_error("numeroRPS", "O número do RPS deve ser numérico", "NOTAS_SERVICO", code=32))
        elif any(n["numeroRPS"] == body["numeroRPS"] and str(n["serie"]) == str(body["serie"])
                 for n in self.nfse.values()):
            problems.append(field_error("numeroRPS", f"O RPS {body['numeroRPS']} da série {body['serie']} "
                                        "já foi utilizado", "NOTAS_SERVICO", code=33))
        if not body["servicos"]:
            problems.append(field_error("servicos", "A nota deve possuir ao menos um serviço", "NOTAS_SERVICO",
                                        code=34))
        return problems

    @operation("POST", "/nfse/{idNotaServico}/enviar", "NOTAS_SERVICO", "a nota de serviço")
    def nfse_send(self, request: Request, body: Any, idNotaServico: int) -> Response:
        note = self.nfse.get(idNotaServico)
        if note is None:
            return self.not_found(request)
        if self.nfse_meta[idNotaServico]["sent_at"] is not None:
            return self.json(bling_error("VALIDATION_ERROR", "Não foi possível enviar a nota",
                                         "A nota de serviço já foi enviada."), 400)
        address = note["contato"].get("endereco") or {}
        if not address.get("cep") or not note["contato"].get("email"):
            return self.json(bling_error(
                "VALIDATION_ERROR", "Nota de serviço rejeitada pela prefeitura",
                "E058 - Dados do tomador incompletos: informe CEP e e-mail do tomador.",
                [field_error("cep" if not address.get("cep") else "email", "Informação do tomador obrigatória",
                             "NOTAS_SERVICO", code=58)]), 400)
        self.nfse_meta[idNotaServico]["sent_at"] = time.monotonic()
        return self.json({"data": self._nfse_view(idNotaServico)})

    @operation("DELETE", "/nfse/{idNotaServico}", "NOTAS_SERVICO", "a nota de serviço")
    def nfse_delete(self, request: Request, body: Any, idNotaServico: int) -> Response:
        note = self.nfse.get(idNotaServico)
        if note is None:
            return self.not_found(request)
        if note["situacao"] != 0 or self.nfse_meta[idNotaServico]["sent_at"] is not None:
            return self.json(bling_error("VALIDATION_ERROR", "Não foi possível excluir a nota",
                                         "Somente notas pendentes e não enviadas podem ser excluídas."), 400)
        del self.nfse[idNotaServico], self.nfse_meta[idNotaServico]
        return Response(status=204)

    @operation("GET", "/nfse/{idNotaServico}", "NOTAS_SERVICO", "a nota de serviço")
    def nfse_get(self, request: Request, body: Any, idNotaServico: int) -> Response:
        if idNotaServico not in self.nfse:
            return self.not_found(request)
        return self.json({"data": self._nfse_view(idNotaServico)})

    def _nfse_view(self, nid: int) -> dict[str, Any]:
        """The municipality answers a while after enviar: pending (0) until then, issued (1) after."""
        note, sent_at = self.nfse[nid], self.nfse_meta[nid]["sent_at"]
        if note["situacao"] == 0 and sent_at is not None and time.monotonic() - sent_at >= self.issuing_seconds:
            note["situacao"] = 1
            note["numero"] = str(202600000 + nid % 100000)
            note["codigoVerificacao"] = hashlib.sha1(str(nid).encode()).hexdigest()[:8].upper()
            note["link"] = f"https://nfse.prefeitura.example/consulta?codigo={note['codigoVerificacao']}"
        return {k: note[k] for k in ("id", "numero", "numeroRPS", "serie", "situacao", "dataEmissao", "valor",
                                     "contato", "link", "codigoVerificacao")}


def _route_rules(cls: type) -> list[Rule]:
    rules = [Rule("/oauth/authorize", endpoint="authorize_page", methods=["GET", "POST"]),
             Rule("/oauth/token", endpoint="token_endpoint", methods=["POST"]),
             Rule("/__sandbox__/webhooks", endpoint="_webhooks", methods=["GET"])]
    for name in dir(cls):
        route = getattr(getattr(cls, name), "bling_route", None)
        if route:
            rules.append(Rule(werkzeug_path(route[1]), endpoint=name, methods=[route[0]]))
    return rules


Sandbox.rules = _route_rules(Sandbox)

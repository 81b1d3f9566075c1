"""A fake of Conta Azul's public API (api-v2) and its OAuth server, for tests and the demo.

What it reproduces, because the connector must cope with it:
- OAuth2 authorization code with an Approve page, 3-minute single-use codes, 1-hour access tokens and
  refresh tokens that rotate (an old one is refused with `invalid_grant`);
- 600 calls/minute and 10 calls/second per connected company, 429 beyond (counted in `over_limit`);
- every request body and query string checked against the official OpenAPI documents
  (`contaazul-openapi.yaml`, validated with `jsonschema`); the areas Conta Azul publishes no spec for
  (pessoas, serviços, notas fiscais) are checked against schemas written from its documentation;
- its quirks: `cpf`/`cnpj` on write but `documento` on read, accented enum labels, `{totalItems, items}`
  with `items: null` when empty, one field per 400, the receivable create that lists every missing
  field in camelCase, the baixa create that wraps an HTML page, asynchronous receivables answered
  with a protocol, a bare integer for the next sale number, 15-day windows on invoice lists whose
  NF-e counter also counts notes it does not return, date-time filters refused with an offset;
- no idempotency: a duplicate CPF is accepted (so finding before creating matters), and the fault
  `lost_response_rate` answers 503 after a write was stored, as a dropped connection would.

Control endpoints for tests and the demo (not part of Conta Azul), besides the kit's:
  POST /__sandbox__/ui/pessoa   {"id", ...fields}   a user edits the customer in Conta Azul's screens
  POST /__sandbox__/ui/venda    {"id_cliente", "itens": [{"descricao","quantidade","valor"}], "tipo_pagamento"}
  POST /__sandbox__/ui/nota     {"id_venda", "tipo": "NFSE"|"NFE", "status"}  Conta Azul issued the invoice
  POST /__sandbox__/ui/baixa    {"parcela_id", "valor", "data_pagamento", "metodo_pagamento"}
  POST /__sandbox__/ui/plano    {"ativo": false}  the company's plan no longer includes the API
"""
from __future__ import annotations

import base64
import functools
import html
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import yaml
from email_validator import EmailNotValidError, validate_email
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from validate_docbr import CNPJ, CPF
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..sandbox_kit import IdSequence, SandboxApp

DEMO_CREDENTIALS: dict[str, str] = {
    "client_id": "tecpet-demo-app",
    "client_secret": "demo-client-secret-7f3a",
    "access_token": "ca-demo-access-token-0001",
    "refresh_token": "ca-demo-refresh-token-0001",
}

DEMO_COMPANY = {
    "id_empresa": "7d1f4c52-3b8e-4a0f-9c61-2f5d8e9a1b01",
    "documento": "11222333000181",
    "razao_social": "Clínica Veterinária Demo Ltda",
    "nome_fantasia": "PetDemo",
    "data_fundacao": "2015-03-10",
    "email": "financeiro@petdemo.com.br",
}

SCOPE = "openid profile aws.cognito.signin.user.admin"
CODE_LIFETIME = 180.0
SAO_PAULO = timezone(timedelta(hours=-3))
PAGE_SIZES = (10, 20, 50, 100, 200, 500, 1000)
SMALL_PAGE_SIZES = (10, 20, 50, 100)          # serviços and both invoice lists
INVOICE_WINDOW_DAYS = 15
NOT_FOUND = {"message": "O recurso solicitado não foi encontrado"}


def now_sp() -> datetime:
    """Conta Azul stamps and filters in São Paulo time without an offset."""
    return datetime.now(SAO_PAULO).replace(tzinfo=None)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def new_id() -> str:
    return str(uuid.uuid4())


# =========================================================================== contract checking
def find_spec_file() -> Path:
    """The official spec, vendored beside this module (a copy of shared/erp/specs/contaazul-openapi.yaml);
    $CONTAAZUL_OPENAPI_SPEC points elsewhere when a newer spec is being tried."""
    env = os.environ.get("CONTAAZUL_OPENAPI_SPEC")
    path = Path(env) if env else Path(__file__).with_name("openapi.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"Conta Azul's OpenAPI spec not found at {path}")
    return path


def _absolutize(node: Any, base: str) -> Any:
    """Rewrite local `$ref`s to absolute ones and OpenAPI `nullable` to JSON Schema, so any
    fragment of a document can be validated on its own through the registry."""
    if isinstance(node, list):
        return [_absolutize(x, base) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _absolutize(v, base) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        out["$ref"] = base + ref
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _format_checker() -> FormatChecker:
    """Only the formats both sides agree on; `double`, `int64` and `decimal` are mere hints."""
    checker = FormatChecker(formats=())

    @checker.checks("date", raises=ValueError)
    def _is_date(value: Any) -> bool:
        if not isinstance(value, str):
            return True
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("expected YYYY-MM-DD")
        date.fromisoformat(value)
        return True

    @checker.checks("uuid", raises=ValueError)
    def _is_uuid(value: Any) -> bool:
        if not isinstance(value, str):
            return True
        if not re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value):
            raise ValueError("expected a uuid")
        return True

    return checker


@dataclass
class Problem:
    """One way a request breaks its contract."""

    field: str          # dotted path (`condicao_pagamento.parcelas[0].nota`) or parameter name
    message: str
    missing: bool = False


class Contract:
    """Operations (method, path template) -> body schema and parameters, from the official spec
    and from the documentation-derived schemas for the areas without a published spec."""

    def __init__(self, documents: list[dict[str, Any]], extra: dict[tuple[str, str], dict[str, Any]]):
        self.registry = Registry()
        self.operations: dict[tuple[str, str], dict[str, Any]] = {}
        for index, document in enumerate(documents):
            base = f"urn:contaazul:spec:{index}"
            document = _absolutize(document, base)
            self.registry = self.registry.with_resource(base, Resource(contents=document, specification=DRAFT4))
            for path, operations in (document.get("paths") or {}).items():
                for method, operation in operations.items():
                    if isinstance(operation, dict) and method in ("get", "post", "put", "patch", "delete"):
                        self.operations.setdefault((method.upper(), path), operation)
        for key, operation in extra.items():
            self.operations.setdefault(key, operation)
        self.checker = _format_checker()

    def knows(self, method: str, template: str) -> bool:
        return (method, template) in self.operations

    def _validator(self, schema: dict[str, Any]) -> Draft4Validator:
        return Draft4Validator(schema, registry=self.registry, format_checker=self.checker)

    def body_problems(self, method: str, template: str, body: Any) -> list[Problem]:
        operation = self.operations[(method, template)]
        request_body = operation.get("requestBody")
        if not request_body:
            return []
        schema = ((request_body.get("content") or {}).get("application/json") or {}).get("schema")
        if body is None:
            return [Problem("body", "o corpo da requisição não é um JSON válido")]
        if not schema:
            return []
        problems = []
        for error in sorted(self._validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path)):
            problems.append(_problem_from(error))
        return problems

    def query_problems(self, method: str, template: str, args: Any, path_args: dict[str, str]) -> list[Problem]:
        operation = self.operations[(method, template)]
        problems: list[Problem] = []
        for parameter in operation.get("parameters") or []:
            where, name = parameter.get("in"), parameter.get("name")
            schema = parameter.get("schema") or {}
            if where == "path":
                raw_values = [path_args[name]] if name in path_args else []
            elif where == "query":
                raw_values = _query_values(args, name)
            else:
                continue
            if not raw_values:
                if parameter.get("required"):
                    problems.append(Problem(name, "é obrigatório", missing=True))
                continue
            problems += self._parameter_problems(name, schema, raw_values)
        return problems

    def _parameter_problems(self, name: str, schema: dict[str, Any], raw_values: list[str]) -> list[Problem]:
        try:
            value = _coerce(schema, raw_values)
        except ValueError:
            return [Problem(name, f"valor inválido: {','.join(raw_values)}")]
        problems = [_problem_from(e, prefix=name) for e in self._validator(schema).iter_errors(value)]
        if schema.get("format") == "date-time" and any(_has_offset(v) for v in raw_values):
            problems.append(Problem(name, "data e hora devem vir sem fuso (ex.: 2026-08-01T00:00:00)"))
        return problems


def _problem_from(error: Any, prefix: str = "") -> Problem:
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else "?"
        return Problem(f"{path}.{name}" if path else name, "é obrigatório", missing=True)
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return Problem(path or "body", f"deve ser um de: {allowed}")
    if error.validator == "format":
        return Problem(path or "body", f"formato inválido ({error.validator_value})")
    if error.validator == "type":
        return Problem(path or "body", f"tipo inválido (esperado {error.validator_value})")
    return Problem(path or "body", error.message)


def _query_values(args: Any, name: str) -> list[str]:
    """Repeated (`a=1&a=2`), bracketed (`a[0]=1`) and comma-joined forms are all accepted."""
    values = list(args.getlist(name)) + list(args.getlist(f"{name}[]"))
    values += [v for k in args.keys() if re.fullmatch(rf"{re.escape(name)}\[\d+\]", k) for v in args.getlist(k)]
    return [v for v in values if v != ""]


def _coerce(schema: dict[str, Any], raw_values: list[str]) -> Any:
    kind = schema.get("type")
    if kind == "array":
        parts = [p for v in raw_values for p in v.split(",") if p != ""]
        return [_coerce(schema.get("items") or {}, [p]) for p in parts]
    raw = raw_values[0]
    if kind == "integer":
        return int(raw)
    if kind == "number":
        return float(raw)
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise ValueError(raw)
        return raw.lower() == "true"
    if kind is None and "enum" in schema and all(isinstance(v, int) for v in schema["enum"]):
        return int(raw)
    return raw


def _has_offset(value: str) -> bool:
    return bool(re.search(r"(Z|[+-]\d{2}:?\d{2})$", value)) and "T" in value


# --- documentation-derived contracts (Conta Azul publishes no spec for these areas)
def _param(name: str, kind: str = "string", required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": kind, **schema}}


_ADDRESS = {"type": "object", "properties": {
    "cep": {"type": "string", "pattern": r"^\d{5}-?\d{3}$"}, "logradouro": {"type": "string"},
    "numero": {"type": "string"}, "complemento": {"type": "string"}, "bairro": {"type": "string"},
    "cidade": {"type": "string"}, "estado": {"type": "string", "pattern": "^[A-Z]{2}$"},
    "pais": {"type": "string"}}}
_PERSON_PROPERTIES = {
    "nome": {"type": "string", "minLength": 1},
    "tipo_pessoa": {"type": "string", "enum": ["Física", "Jurídica", "Estrangeira"]},
    "perfis": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["tipo_perfil"], "properties": {
        "tipo_perfil": {"type": "string", "enum": ["Cliente", "Fornecedor", "Transportadora"]}}}},
    "cpf": {"type": "string"}, "cnpj": {"type": "string"}, "nome_fantasia": {"type": "string"},
    "email": {"type": "string"}, "telefone_celular": {"type": "string"}, "telefone_comercial": {"type": "string"},
    "rg": {"type": "string"}, "data_nascimento": {"type": "string", "format": "date"},
    "codigo": {"type": "string"}, "ativo": {"type": "boolean"}, "optante_simples": {"type": "boolean"},
    "agencia_publica": {"type": "boolean"}, "observacao": {"type": "string"},
    "enderecos": {"type": "array", "items": _ADDRESS},
    "inscricoes": {"type": "array", "items": {"type": "object", "properties": {
        "indicador_inscricao_estadual": {"type": "string", "enum": ["CONTRIBUINTE", "NAO CONTRIBUINTE", "ISENTO"]},
        "inscricao_estadual": {"type": "string"}, "inscricao_municipal": {"type": "string"},
        "inscricao_suframa": {"type": "string"}}}},
    "outros_contatos": {"type": "array"},
    "contato_cobranca_faturamento": {"type": "object"},
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_PAGING = [_param("pagina", "integer", minimum=1), {"name": "tamanho_pagina", "in": "query", "schema": {"enum": list(PAGE_SIZES)}}]
_SMALL_PAGING = [_param("pagina", "integer", minimum=1),
                 {"name": "tamanho_pagina", "in": "query", "schema": {"enum": list(SMALL_PAGE_SIZES)}}]
DOCUMENTED_CONTRACTS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/pessoas/conta-conectada"): {},
    ("GET", "/v1/pessoas"): {"parameters": _PAGING + [
        _param("documentos", "array", items={"type": "string"}), _param("codigos_pessoa", "array", items={"type": "string"}),
        _param("busca"), _param("data_alteracao_de", format="date-time"), _param("data_alteracao_ate", format="date-time"),
        _param("tipo_perfil", enum=["Cliente", "Fornecedor", "Transportadora"])]},
    ("POST", "/v1/pessoas"): {"requestBody": _json_body(
        {"type": "object", "required": ["nome", "tipo_pessoa", "perfis"], "properties": _PERSON_PROPERTIES})},
    ("GET", "/v1/pessoas/{id}"): {"parameters": [{"name": "id", "in": "path", "required": True,
                                                  "schema": {"type": "string", "format": "uuid"}}]},
    ("PATCH", "/v1/pessoas/{id}"): {"parameters": [{"name": "id", "in": "path", "required": True,
                                                    "schema": {"type": "string", "format": "uuid"}}],
                                    "requestBody": _json_body({"type": "object", "properties": _PERSON_PROPERTIES})},
    ("GET", "/v1/servicos"): {"parameters": _SMALL_PAGING + [_param("busca_textual")]},
    ("POST", "/v1/servicos"): {"requestBody": _json_body({"type": "object", "required": ["descricao", "status", "tipo_servico"],
                                                          "properties": {
        "descricao": {"type": "string", "minLength": 1}, "codigo": {"type": "string"},
        "status": {"type": "string", "enum": ["ATIVO", "INATIVO"]},
        "tipo_servico": {"type": "string", "enum": ["PRESTADO", "TOMADO", "AMBOS"]},
        "preco": {"type": "number"}, "custo": {"type": "number"}}})},
    ("GET", "/v1/notas-fiscais-servico"): {"parameters": _SMALL_PAGING + [
        _param("data_competencia_de", required=True, format="date"), _param("data_competencia_ate", required=True, format="date"),
        _param("numero_venda"), _param("id_cliente", format="uuid"), _param("ids", "array", items={"type": "string"}),
        _param("status", "array", items={"type": "string"})]},
    ("GET", "/v1/notas-fiscais"): {"parameters": _SMALL_PAGING + [
        _param("data_inicial", required=True, format="date"), _param("data_final", required=True, format="date"),
        _param("numero_nota"), _param("id_venda", format="uuid"), _param("documento_tomador")]},
}

# Java names the receivable create answers with when it lists missing fields.
_CAMEL = {"data_competencia": "competenceDate", "valor": "value", "observacao": "observation",
          "descricao": "description", "contato": "contact", "conta_financeira": "financialAccount",
          "condicao_pagamento": "paymentCondition", "parcelas": "installments", "data_vencimento": "dueDate",
          "nota": "note", "detalhe_valor": "valueDetail", "valor_bruto": "grossValue",
          "metodo_pagamento": "paymentMethod", "rateio": "apportionment", "id_categoria": "categoryId"}


def _camel_path(path: str) -> str:
    return re.sub(r"[a-z_]+", lambda m: _CAMEL.get(m.group(0), m.group(0)), path)


@functools.lru_cache(maxsize=1)
def load_contract() -> Contract:
    """Parsing the 275 kB YAML takes a moment: once per process."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(find_spec_file(), encoding="utf-8") as handle:
        documents = [d for d in yaml.load_all(handle, Loader=loader) if d]
    return Contract(documents, DOCUMENTED_CONTRACTS)


# =========================================================================== endpoint decorator
def endpoint(method: str, template: str, *, body_errors: str = "first", write: bool = False) -> Callable:
    """Wrap a handler with what every Conta Azul API call goes through: the bearer token, the
    plan gate, the contract check, and (for writes) the lost-response fault.

    body_errors: "first" answers one field per 400 (the usual shape), "camel" lists every missing
    field in Java camelCase (the receivable create), "html" wraps an HTML page (the baixa create).
    """
    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def run(self: "Sandbox", request: Request, **path_args: str) -> Response:
            refused = self.refuse_unauthorized(request)
            if refused is not None:
                return refused
            self._process_due_protocols()
            problems = self.contract.query_problems(method, template, request.args, path_args)
            if not problems and self.contract.operations[(method, template)].get("requestBody"):
                problems = self.contract.body_problems(method, template, self.body(request))
            if problems:
                return _contract_error(problems, body_errors)
            response = handler(self, request, **path_args)
            if write and response.status_code < 300 and self._lose_response():
                return self.server_error_response(request)
            return response
        run.contract = (method, template)
        return run
    return wrap


def _contract_error(problems: list[Problem], style: str) -> Response:
    if style == "camel" and any(p.missing for p in problems):
        names = ", ".join(_camel_path(p.field) for p in problems if p.missing)
        return SandboxApp.json({"error": f"Campos obrigatórios não informados: {names}"}, 400)
    first = problems[0]
    text = (f"O campo {first.field} é obrigatório" if first.missing
            else f"O campo {first.field} é inválido: {first.message}")
    if style == "html":
        page = (f"<!doctype html><html><head><title>Erro 400</title></head><body><h1>Bad Request</h1>"
                f"<p>{html.escape(text)}</p></body></html>")
        return SandboxApp.json({"error": page}, 400)
    return SandboxApp.json({"error": text}, 400)


def _error(text: str, status: int = 400) -> Response:
    return SandboxApp.json({"error": text}, status)


def _page(args: Any, default_size: int = 10) -> tuple[int, int]:
    page = int(args.get("pagina") or 1)
    size = int(args.get("tamanho_pagina") or default_size)
    return page, size


def _slice(items: list[Any], page: int, size: int) -> list[Any]:
    return items[(page - 1) * size: page * size]


def _round(value: float) -> float:
    return round(float(value) + 1e-9, 2)


# =========================================================================== the sandbox
class Sandbox(SandboxApp):
    name = "contaazul"
    default_rate_limit = [(10, 1.0), (600, 60.0)]   # per connected company, as documented

    rules = [
        Rule("/oauth2/authorize", endpoint="authorize_page", methods=["GET", "POST"]),
        Rule("/login", endpoint="authorize_page", methods=["GET", "POST"]),
        Rule("/oauth2/token", endpoint="token", methods=["POST"]),
        Rule("/v1/pessoas/conta-conectada", endpoint="connected_account", methods=["GET"]),
        Rule("/v1/pessoas", endpoint="list_people", methods=["GET"]),
        Rule("/v1/pessoas", endpoint="create_person", methods=["POST"]),
        Rule("/v1/pessoas/<id>", endpoint="get_person", methods=["GET"]),
        Rule("/v1/pessoas/<id>", endpoint="patch_person", methods=["PATCH"]),
        Rule("/v1/servicos", endpoint="list_services", methods=["GET"]),
        Rule("/v1/servicos", endpoint="create_service", methods=["POST"]),
        Rule("/v1/produto/busca", endpoint="search_products", methods=["GET"]),
        Rule("/v1/produto", endpoint="create_product", methods=["POST"]),
        Rule("/v1/conta-financeira", endpoint="list_accounts", methods=["GET"]),
        Rule("/v1/venda/proximo-numero", endpoint="next_sale_number", methods=["GET"]),
        Rule("/v1/venda/busca", endpoint="search_sales", methods=["GET"]),
        Rule("/v1/venda", endpoint="create_sale", methods=["POST"]),
        Rule("/v1/venda/<id>", endpoint="get_sale", methods=["GET"]),
        Rule("/v1/venda/<id_venda>/itens", endpoint="sale_items", methods=["GET"]),
        Rule("/v1/financeiro/eventos-financeiros/contas-a-receber", endpoint="create_receivable", methods=["POST"]),
        Rule("/v1/financeiro/eventos-financeiros/contas-a-receber/buscar", endpoint="search_receivables",
             methods=["GET"]),
        Rule("/v1/protocolo/<id>", endpoint="get_protocol", methods=["GET"]),
        Rule("/v1/financeiro/eventos-financeiros/<id_evento>/parcelas", endpoint="event_installments",
             methods=["GET"]),
        Rule("/v1/financeiro/eventos-financeiros/parcelas/<id>", endpoint="get_installment", methods=["GET"]),
        Rule("/v1/financeiro/eventos-financeiros/parcelas/<parcela_id>/baixa", endpoint="create_settlement",
             methods=["POST"]),
        Rule("/v1/financeiro/eventos-financeiros/parcelas/<parcela_id>/baixa", endpoint="list_settlements",
             methods=["GET"]),
        Rule("/v1/notas-fiscais-servico", endpoint="list_nfse", methods=["GET"]),
        Rule("/v1/notas-fiscais", endpoint="list_nfe", methods=["GET"]),
        Rule("/__sandbox__/ui/pessoa", endpoint="_ui_person", methods=["POST"]),
        Rule("/__sandbox__/ui/venda", endpoint="_ui_sale", methods=["POST"]),
        Rule("/__sandbox__/ui/nota", endpoint="_ui_invoice", methods=["POST"]),
        Rule("/__sandbox__/ui/baixa", endpoint="_ui_settlement", methods=["POST"]),
        Rule("/__sandbox__/ui/plano", endpoint="_ui_plan", methods=["POST"]),
    ]

    def __init__(self, *, token_lifetime: float = 3600.0, protocol_delay: float = 0.3,
                 sales_create_financial_event: bool = True, lost_response_rate: float = 0.0, **faults: Any):
        """`sales_create_financial_event`: whether an approved sale gets its own receivable, which
        Conta Azul's documentation leaves unconfirmed; switch it off to exercise the fallback."""
        self.contract = load_contract()
        self.token_lifetime = token_lifetime
        self.protocol_delay = protocol_delay
        self.sales_create_financial_event = sales_create_financial_event
        self.lost_response_rate = lost_response_rate
        self.clients = {DEMO_CREDENTIALS["client_id"]: DEMO_CREDENTIALS["client_secret"]}
        self._check_contracts()
        super().__init__(**faults)

    def _check_contracts(self) -> None:
        """Fail at start-up, not mid-test, if a handler names an operation the contract lacks."""
        for rule in self.rules:
            contract = getattr(getattr(self, rule.endpoint, None), "contract", None)
            if contract and not self.contract.knows(*contract):
                raise RuntimeError(f"{rule.endpoint}: {contract} is in neither the spec nor the documented contracts")

    # ------------------------------------------------------------------ kit hooks
    def configure(self, **faults: Any) -> None:
        """Adds this sandbox's own faults (`lost_response_rate`, `token_lifetime`) to the kit's."""
        for own in ("lost_response_rate", "token_lifetime", "protocol_delay"):
            if own in faults:
                setattr(self, own, float(faults.pop(own)))
        super().configure(**faults)

    def reset_data(self) -> None:
        self.sale_ids = IdSequence(4000)
        self.sale_numbers = IdSequence(0)
        self.people: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.sales: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.installments: dict[str, dict[str, Any]] = {}
        self.settlements: dict[str, dict[str, Any]] = {}
        self.protocols: dict[str, dict[str, Any]] = {}
        self.nfse: dict[str, dict[str, Any]] = {}
        self.nfe: dict[str, dict[str, Any]] = {}
        self.plan_active = True
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, float] = {DEMO_CREDENTIALS["access_token"]: time.time() + self.token_lifetime}
        self.refresh_tokens: dict[str, bool] = {DEMO_CREDENTIALS["refresh_token"]: True}
        self.accounts = [
            {"id": "3c1b9a52-8d1e-4f7a-b2c4-5e6f7a8b9c01", "banco": "NAO_BANCO", "codigo_banco": 0,
             "nome": "Caixinha", "ativo": True, "tipo": "CAIXINHA", "conta_padrao": False},
            {"id": "3c1b9a52-8d1e-4f7a-b2c4-5e6f7a8b9c02", "banco": "ITAU", "codigo_banco": 341,
             "nome": "Conta Itaú", "ativo": True, "tipo": "CONTA_CORRENTE", "conta_padrao": True,
             "agencia": "0001", "numero": "12345-6"},
        ]

    def state(self) -> dict[str, Any]:
        return {"people": list(self.people.values()), "services": list(self.services.values()),
                "products": list(self.products.values()), "sales": list(self.sales.values()),
                "events": list(self.events.values()), "installments": list(self.installments.values()),
                "settlements": list(self.settlements.values()), "protocols": list(self.protocols.values()),
                "nfse": list(self.nfse.values()), "nfe": list(self.nfe.values())}

    def account_of(self, request: Request) -> str:
        """Limits are per connected company; the token tells which (one company per sandbox)."""
        token = _bearer(request)
        if token and token in self.access_tokens:
            return DEMO_COMPANY["id_empresa"]
        return "unauthenticated"

    # ------------------------------------------------------------------ auth
    def refuse_unauthorized(self, request: Request) -> Response | None:
        token = _bearer(request)
        with self.lock:
            if self.faults.expire_tokens:
                self.faults.expire_tokens = False
                for known in self.access_tokens:
                    self.access_tokens[known] = 0.0
            expires = self.access_tokens.get(token or "")
            if expires is None or expires <= time.time():
                return self.json({"message": "Unauthorized"}, 401)
            if not self.plan_active:
                return self.json({"error": "A conta não está elegível para uso da API devido ao status do plano "
                                           "(END_TRIAL)"}, 403)
        return None

    def authorize_page(self, request: Request) -> Response:
        """Conta Azul's login + consent, reduced to one Approve button (GET shows, POST approves)."""
        params = request.values
        client_id, redirect_uri, state = params.get("client_id", ""), params.get("redirect_uri", ""), params.get("state", "")
        if client_id not in self.clients or not redirect_uri or params.get("response_type") != "code":
            return Response("<h1>Requisição de autorização inválida</h1>", 400, content_type="text/html; charset=utf-8")
        if request.method == "GET":
            return Response(_approve_page(request.path, params), content_type="text/html; charset=utf-8")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {"client_id": client_id, "redirect_uri": redirect_uri,
                                "expires": time.time() + CODE_LIFETIME}
        separator = "&" if "?" in redirect_uri else "?"
        return Response("", 302, headers={"Location": f"{redirect_uri}{separator}{urlencode({'code': code, 'state': state})}"})

    def token(self, request: Request) -> Response:
        client_id = self._token_client(request)
        if client_id is None:
            return self.json({"error": "invalid_client"}, 401)
        grant = request.form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                issued = self._redeem_code(client_id, request.form.get("code", ""), request.form.get("redirect_uri", ""))
            elif grant == "refresh_token":
                issued = self._rotate(request.form.get("refresh_token", ""))
            else:
                return self.json({"error": "unsupported_grant_type"}, 400)
        if issued is None:
            return self.json({"error": "invalid_grant"}, 400)
        return self.json(issued)

    def _token_client(self, request: Request) -> str | None:
        """Basic client authentication is the documented form; the body variant is accepted too."""
        header = request.headers.get("Authorization", "")
        client_id, secret = request.form.get("client_id", ""), request.form.get("client_secret", "")
        if header.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None
        return client_id if self.clients.get(client_id) == secret and secret else None

    def _redeem_code(self, client_id: str, code: str, redirect_uri: str) -> dict[str, Any] | None:
        grant = self.codes.pop(code, None)
        if not grant or grant["expires"] < time.time():
            return None
        if grant["client_id"] != client_id or grant["redirect_uri"] != redirect_uri:
            return None
        return self._issue_tokens()

    def _rotate(self, refresh_token: str) -> dict[str, Any] | None:
        if not self.refresh_tokens.get(refresh_token):
            return None
        self.refresh_tokens[refresh_token] = False     # rotated: refused from now on
        return self._issue_tokens()

    def _issue_tokens(self) -> dict[str, Any]:
        access, refresh = f"ca-at-{secrets.token_urlsafe(24)}", f"ca-rt-{secrets.token_urlsafe(32)}"
        self.access_tokens[access] = time.time() + self.token_lifetime
        self.refresh_tokens[refresh] = True
        return {"access_token": access, "refresh_token": refresh, "expires_in": int(self.token_lifetime),
                "token_type": "Bearer", "id_token": f"ca-id-{secrets.token_urlsafe(16)}"}

    def _lose_response(self) -> bool:
        return bool(self.lost_response_rate) and self.rng.random() < self.lost_response_rate

    # ------------------------------------------------------------------ company and catalog
    @endpoint("GET", "/v1/pessoas/conta-conectada")
    def connected_account(self, request: Request) -> Response:
        return self.json(DEMO_COMPANY)

    @endpoint("GET", "/v1/conta-financeira")
    def list_accounts(self, request: Request) -> Response:
        page, size = _page(request.args)
        items = [a for a in self.accounts if request.args.get("apenas_ativo") != "true" or a["ativo"]]
        return self.json({"itens_totais": len(items), "itens": _slice(items, page, size),
                          "totais": {"ativo": len(items), "inativo": 0, "todos": len(items)}})

    @endpoint("GET", "/v1/servicos")
    def list_services(self, request: Request) -> Response:
        page, size = _page(request.args)
        term = (request.args.get("busca_textual") or "").casefold()
        with self.lock:
            items = [s for s in self.services.values() if term in s["descricao"].casefold() or term in (s.get("codigo") or "").casefold()]
        total_pages = max(1, -(-len(items) // size))
        return self.json({"itens": _slice(items, page, size), "paginacao": {
            "pagina_atual": page, "total_paginas": total_pages, "tamanho_pagina": size, "total_itens": len(items)}})

    @endpoint("POST", "/v1/servicos", write=True)
    def create_service(self, request: Request) -> Response:
        data = self.body(request)
        with self.lock:
            service = {"id": new_id(), "id_servico": len(self.services) + 501, "codigo": data.get("codigo", ""),
                       "descricao": data["descricao"], "preco": data.get("preco", 0.0), "custo": data.get("custo", 0.0),
                       "status": data["status"], "tipo_servico": data["tipo_servico"], "codigo_cnae": "",
                       "lei_116": "", "codigo_municipio_servico": "", "lista_cenario_tributario": []}
            self.services[service["id"]] = service
        return self.json(service, 201)

    @endpoint("GET", "/v1/produto/busca")
    def search_products(self, request: Request) -> Response:
        term = (request.args.get("busca") or "").casefold()
        page, size = _page(request.args)
        with self.lock:
            items = [p for p in self.products.values() if term in p["nome"].casefold()]
        return self.json({"itens": _slice(items, page, size), "itens_totais": len(items)})

    @endpoint("POST", "/v1/produto", write=True)
    def create_product(self, request: Request) -> Response:
        data = self.body(request)
        with self.lock:
            product = {"id": new_id(), "id_legado": len(self.products) + 9001, "nome": data["nome"],
                       "codigo_sku": data.get("codigo_sku", ""), "tipo": "PRODUTO", "status": "ATIVO",
                       "formato": data["formato"], "estoque": 0.0,
                       "valor_venda": (data.get("estoque") or {}).get("valor_venda", 0.0)}
            self.products[product["id"]] = product
        return self.json({**product, "estoque": {"valor_venda": product["valor_venda"]}, "versao": 1, "ativo": True})

    # ------------------------------------------------------------------ people
    @endpoint("GET", "/v1/pessoas")
    def list_people(self, request: Request) -> Response:
        args = request.args
        changed_from, changed_to = args.get("data_alteracao_de"), args.get("data_alteracao_ate")
        if bool(changed_from) != bool(changed_to):
            return _error("Os parâmetros data_alteracao_de e data_alteracao_ate devem ser informados juntos")
        window = _window(changed_from, changed_to, 365) if changed_from else None
        if isinstance(window, Response):
            return window
        page, size = _page(args)
        documents = {re.sub(r"[^0-9A-Z]", "", d.upper()) for d in _query_values(args, "documentos") for d in d.split(",")}
        codes = set(_query_values(args, "codigos_pessoa"))
        term = (args.get("busca") or "").casefold()
        with self.lock:
            people = sorted(self.people.values(), key=lambda p: p["_changed"])
            matches = [p for p in people
                       if (not documents or p.get("documento") in documents)
                       and (not codes or p.get("codigo") in codes)
                       and (not term or term in p["nome"].casefold() or term in (p.get("documento") or "").casefold())
                       and (window is None or window[0] <= p["_changed"] <= window[1])]
            page_items = [_person_summary(p) for p in _slice(matches, page, size)]
        return self.json({"totalItems": len(matches), "items": page_items or None})

    @endpoint("POST", "/v1/pessoas", write=True)
    def create_person(self, request: Request) -> Response:
        data = self.body(request)
        refused = _person_semantics(data, data.get("tipo_pessoa"))
        if refused:
            return refused
        moment = now_sp()
        person = {"id": new_id(), "id_legado": 0, "uuid_legado": new_id(), "ativo": data.get("ativo", True),
                  "origem": "API", "estrangeiro": data["tipo_pessoa"] == "Estrangeira",
                  "data_criacao": stamp(moment), "_changed": moment}
        _apply_person(person, data)
        with self.lock:
            person["id_legado"] = 100000 + len(self.people)
            self.people[person["id"]] = person
        return self.json({k: person[k] for k in ("id", "tipo_pessoa", "nome", "ativo", "origem", "perfis", "estrangeiro")})

    @endpoint("GET", "/v1/pessoas/{id}")
    def get_person(self, request: Request, id: str) -> Response:
        with self.lock:
            person = self.people.get(id)
            return self.json(_person_detail(person)) if person else self.json(NOT_FOUND, 404)

    @endpoint("PATCH", "/v1/pessoas/{id}", write=True)
    def patch_person(self, request: Request, id: str) -> Response:
        data = self.body(request)
        with self.lock:
            person = self.people.get(id)
            if person is None:
                return self.json(NOT_FOUND, 404)
            refused = _person_semantics(data, data.get("tipo_pessoa", person["tipo_pessoa"]))
            if refused:
                return refused
            _apply_person(person, data)
            person["_changed"] = now_sp()
        return Response(status=204)

    # ------------------------------------------------------------------ sales
    @endpoint("GET", "/v1/venda/proximo-numero")
    def next_sale_number(self, request: Request) -> Response:
        with self.lock:
            used = [s["numero"] for s in self.sales.values()]
        return self.json(max(used, default=0) + 1)

    @endpoint("POST", "/v1/venda", write=True)
    def create_sale(self, request: Request) -> Response:
        data = self.body(request)
        with self.lock:
            refused = self._sale_semantics(data)
            if refused:
                return refused
            sale = self._store_sale(data, origin="API")
        situation = "APPROVED" if sale["situacao"] == "APROVADO" else "IN_PROCESS"   # English on create only
        return self.json({"id": sale["id"], "id_legado": sale["id_legado"], "id_cliente": sale["id_cliente"],
                          "numero": sale["numero"], "origem": sale["origem"], "data_venda": f"{sale['data_venda']}T00:00:00",
                          "situacao": {"nome": situation, "descricao": situation},
                          "pendencia": {"nome": "NENHUMA", "descricao": ""},
                          "valor_composicao": {"valor_bruto": sale["total"], "valor_liquido": sale["total"]},
                          "condicao_pagamento": sale["condicao_pagamento"], "observacoes": sale["observacoes"],
                          "versao": sale["versao"]})

    def _sale_semantics(self, data: dict[str, Any]) -> Response | None:
        if data["id_cliente"] not in self.people:
            return _error("Cliente não encontrado")
        for item in data["itens"]:
            if item["id"] not in self.services and item["id"] not in self.products:
                return _error(f"Item {item['id']} não encontrado")
        if any(s["numero"] == data["numero"] for s in self.sales.values()):
            return _error(f"Já existe uma venda com o número {data['numero']}")
        condition = data["condicao_pagamento"]
        if not _option_matches(condition["opcao_condicao_pagamento"], len(condition["parcelas"])):
            return _error(f"A condição de pagamento '{condition['opcao_condicao_pagamento']}' não corresponde "
                          f"às {len(condition['parcelas'])} parcelas informadas")
        total = _round(sum(i["quantidade"] * i["valor"] for i in data["itens"]))
        parts = _round(sum(p["valor"] for p in condition["parcelas"]))
        if abs(total - parts) > 0.005:
            return _error(f"A soma das parcelas ({parts:.2f}) difere do valor total da venda ({total:.2f})")
        return None   # the financial account is only checked when the receivable is processed

    def _store_sale(self, data: dict[str, Any], origin: str) -> dict[str, Any]:
        moment = now_sp()
        items = [{"id": new_id(), "id_item": i["id"], "nome": self._item_name(i), "descricao": i.get("descricao", ""),
                  "tipo": "PRODUTO" if i["id"] in self.products else "SERVICO", "quantidade": i["quantidade"],
                  "valor": i["valor"], "custo": i.get("valor_custo", 0.0)} for i in data["itens"]]
        sale = {"id": new_id(), "id_legado": self.sale_ids.next(), "numero": data["numero"], "id_cliente": data["id_cliente"],
                "situacao": data["situacao"], "data_venda": data["data_venda"], "itens": items,
                "total": _round(sum(i["quantidade"] * i["valor"] for i in items)),
                "condicao_pagamento": data["condicao_pagamento"], "observacoes": data.get("observacoes", ""),
                "origem": origin, "versao": 1, "status": "EM_ANDAMENTO", "criado_em": stamp(moment),
                "_changed": moment, "id_evento": None}
        self.sales[sale["id"]] = sale
        if sale["situacao"] == "APROVADO" and self.sales_create_financial_event:
            sale["id_evento"] = self._store_event(
                contact=sale["id_cliente"], competence=sale["data_venda"], description=f"Venda {sale['numero']}",
                note="", account=data["condicao_pagamento"].get("id_conta_financeira") or self._default_account(),
                installments=[{"data_vencimento": p["data_vencimento"], "valor": p["valor"],
                               "descricao": p.get("descricao", ""), "nota": str(sale["numero"]),
                               "metodo_pagamento": data["condicao_pagamento"].get("tipo_pagamento")}
                              for p in data["condicao_pagamento"]["parcelas"]],
                origin="VENDA", reference=sale["id"])
        return sale

    def _item_name(self, item: dict[str, Any]) -> str:
        known = self.services.get(item["id"]) or self.products.get(item["id"]) or {}
        return known.get("descricao") or known.get("nome") or item.get("descricao", "")

    @endpoint("GET", "/v1/venda/busca")
    def search_sales(self, request: Request) -> Response:
        args = request.args
        window = None
        if args.get("data_alteracao_de") or args.get("data_alteracao_ate"):
            window = _window(args.get("data_alteracao_de") or "2000-01-01T00:00:00",
                             args.get("data_alteracao_ate") or stamp(now_sp())[:19], 365)
            if isinstance(window, Response):
                return window
        page, size = _page(args)
        customers = set(_query_values(args, "ids_clientes"))
        numbers = {int(n) for v in _query_values(args, "numeros") for n in v.split(",")}
        day_from, day_to = args.get("data_inicio"), args.get("data_fim")
        with self.lock:
            sales = sorted(self.sales.values(), key=lambda s: s["_changed"])
            matches = [s for s in sales
                       if (not customers or s["id_cliente"] in customers) and (not numbers or s["numero"] in numbers)
                       and (not day_from or s["data_venda"] >= day_from) and (not day_to or s["data_venda"] <= day_to)
                       and (window is None or window[0] <= s["_changed"] <= window[1])]
            rows = [self._sale_row(s) for s in _slice(matches, page, size)]
        total = _round(sum(s["total"] for s in matches))
        return self.json({"totais": {"total": total, "aprovado": total, "cancelado": 0, "esperando_aprovacao": 0},
                          "quantidades": {"total": len(matches), "aprovado": len(matches), "cancelado": 0,
                                          "esperando_aprovacao": 0},
                          "total_itens": len(matches), "itens": rows})

    def _sale_row(self, sale: dict[str, Any]) -> dict[str, Any]:
        person = self.people.get(sale["id_cliente"], {})
        return {"id": sale["id"], "total": sale["total"], "id_legado": sale["id_legado"], "data": sale["data_venda"],
                "criado_em": sale["criado_em"], "data_alteracao": stamp(sale["_changed"]), "tipo": "SALE",
                "itens": "SERVICE" if all(i["tipo"] == "SERVICO" for i in sale["itens"]) else "PRODUCT",
                "condicao_pagamento": True, "numero": sale["numero"],
                "cliente": {"id": person.get("id"), "nome": person.get("nome"), "email": person.get("email", "")},
                "situacao": {"nome": sale["situacao"], "descricao": sale["situacao"].replace("_", " ").title()},
                "versao": sale["versao"], "origem": sale["origem"]}

    @endpoint("GET", "/v1/venda/{id}")
    def get_sale(self, request: Request, id: str) -> Response:
        with self.lock:
            sale = self.sales.get(id) or next((s for s in self.sales.values() if str(s["id_legado"]) == id), None)
            if sale is None:
                return self.json(NOT_FOUND, 404)
            person = self.people.get(sale["id_cliente"], {})
            return self.json({
                "venda": {"id": sale["id"], "status": sale["status"], "id_legado": sale["id_legado"],
                          "tipo_negociacao": "VENDA", "numero": sale["numero"], "data_compromisso": sale["data_venda"],
                          "composicao_valor": {"valor_bruto": sale["total"], "valor_liquido": sale["total"]},
                          "condicao_pagamento": sale["condicao_pagamento"], "observacoes": sale["observacoes"],
                          "id_cliente": sale["id_cliente"], "versao": sale["versao"],
                          "situacao": {"nome": sale["situacao"], "descricao": sale["situacao"], "ativado": True},
                          "origem": sale["origem"]},
                "cliente": {"uuid": person.get("id"), "tipo_pessoa": person.get("tipo_pessoa"),
                            "documento": person.get("documento"), "nome": person.get("nome")},
                "evento_financeiro": {"id": sale["id_evento"]} if sale["id_evento"] else None,
                "vendedor": None, "natureza_operacao": None, "contrato": None, "notificacao": None})

    @endpoint("GET", "/v1/venda/{id_venda}/itens")
    def sale_items(self, request: Request, id_venda: str) -> Response:
        with self.lock:
            sale = self.sales.get(id_venda)
            if sale is None:
                return self.json(NOT_FOUND, 404)
            items = [{k: v for k, v in i.items()} for i in sale["itens"]]
        page, size = _page(request.args)
        return self.json({"itens": _slice(items, page, size), "itens_totais": len(items),
                          "totais": {"quantidade_produtos": sum(i["tipo"] == "PRODUTO" for i in items),
                                     "quantidade_servicos": sum(i["tipo"] == "SERVICO" for i in items),
                                     "quantidade_nao_conciliados": 0}})

    # ------------------------------------------------------------------ receivables
    @endpoint("POST", "/v1/financeiro/eventos-financeiros/contas-a-receber", body_errors="camel", write=True)
    def create_receivable(self, request: Request) -> Response:
        """Asynchronous: the event is only written when the protocol is processed."""
        moment = now_sp()
        with self.lock:
            protocol = {"id": new_id(), "status": "PENDING", "resposta": "", "evento_financeiro_id": None,
                        "payload": self.body(request), "_ready_at": time.monotonic() + self.protocol_delay}
            self.protocols[protocol["id"]] = protocol
        return self.json({"protocolo": protocol["id"], "status": "PENDING", "data_criacao": stamp(moment)}, 200)

    @endpoint("GET", "/v1/protocolo/{id}")
    def get_protocol(self, request: Request, id: str) -> Response:
        with self.lock:
            protocol = self.protocols.get(id)
            if protocol is None:
                return self.json(NOT_FOUND, 404)
            return self.json({k: protocol[k] for k in ("id", "resposta", "status", "evento_financeiro_id")})

    def _process_due_protocols(self) -> None:
        """Conta Azul works its queue in the background, whether or not anyone polls the protocol."""
        now = time.monotonic()
        with self.lock:
            for protocol in self.protocols.values():
                if protocol["status"] == "PENDING" and now >= protocol["_ready_at"]:
                    self._process(protocol)

    def _process(self, protocol: dict[str, Any]) -> None:
        data = protocol["payload"]
        reason = self._receivable_semantics(data)
        if reason:
            protocol.update(status="ERROR", resposta=reason)
            return
        parcels = data["condicao_pagamento"]["parcelas"]
        protocol["evento_financeiro_id"] = self._store_event(
            contact=data["contato"], competence=data["data_competencia"], description=data["descricao"],
            note=data.get("observacao", ""), account=data["conta_financeira"], origin="LANCAMENTO_FINANCEIRO",
            installments=[{"data_vencimento": p["data_vencimento"], "valor": p["detalhe_valor"]["valor_bruto"],
                           "descricao": p["descricao"], "nota": p["nota"], "metodo_pagamento": p.get("metodo_pagamento"),
                           "conta_financeira": p["conta_financeira"]} for p in parcels])
        protocol.update(status="SUCCESS", resposta="Evento financeiro criado com sucesso")

    def _receivable_semantics(self, data: dict[str, Any]) -> str:
        if data["contato"] not in self.people:
            return f"Contato {data['contato']} não encontrado"
        accounts = {a["id"] for a in self.accounts}
        parcels = data["condicao_pagamento"]["parcelas"]
        if data["conta_financeira"] not in accounts or any(p["conta_financeira"] not in accounts for p in parcels):
            return "Conta financeira não encontrada"
        if not parcels:
            return "Informe ao menos uma parcela"
        parts = _round(sum(p["detalhe_valor"]["valor_bruto"] for p in parcels))
        if abs(parts - _round(data["valor"])) > 0.005:
            return f"A soma das parcelas ({parts:.2f}) difere do valor do lançamento ({_round(data['valor']):.2f})"
        return ""

    def _store_event(self, *, contact: str, competence: str, description: str, note: str, account: str,
                     installments: list[dict[str, Any]], origin: str, reference: str | None = None) -> str:
        moment = now_sp()
        event_id = new_id()
        ids = []
        for index, part in enumerate(installments, start=1):
            parcel = {"id": new_id(), "id_evento": event_id, "indice": index, "versao": 1,
                      "descricao": part.get("descricao") or description, "nota": part.get("nota", ""),
                      "data_vencimento": part["data_vencimento"], "total": _round(part["valor"]), "pago": 0.0,
                      "conta_financeira": part.get("conta_financeira") or account,
                      "metodo_pagamento": part.get("metodo_pagamento"), "id_cliente": contact,
                      "data_competencia": competence, "evento_descricao": description,
                      "data_criacao": stamp(moment), "_changed": moment, "baixas": []}
            self.installments[parcel["id"]] = parcel
            ids.append(parcel["id"])
        self.events[event_id] = {"id": event_id, "tipo": "RECEITA", "data_competencia": competence,
                                 "descricao": description, "observacao": note, "contato": contact,
                                 "conta_financeira": account, "parcelas": ids,
                                 "referencia": {"id": reference, "origem": origin}}
        return event_id

    def _default_account(self) -> str:
        return next(a["id"] for a in self.accounts if a["conta_padrao"])

    @endpoint("GET", "/v1/financeiro/eventos-financeiros/{id_evento}/parcelas")
    def event_installments(self, request: Request, id_evento: str) -> Response:
        with self.lock:
            event = self.events.get(id_evento)
            if event is None:
                return self.json(NOT_FOUND, 404)
            return self.json([self._installment_detail(self.installments[i]) for i in event["parcelas"]])

    @endpoint("GET", "/v1/financeiro/eventos-financeiros/parcelas/{id}")
    def get_installment(self, request: Request, id: str) -> Response:
        with self.lock:
            parcel = self.installments.get(id)
            return self.json(self._installment_detail(parcel)) if parcel else self.json(NOT_FOUND, 404)

    def _installment_detail(self, parcel: dict[str, Any]) -> dict[str, Any]:
        event = self.events[parcel["id_evento"]]
        account = next((a for a in self.accounts if a["id"] == parcel["conta_financeira"]), {})
        return {"id": parcel["id"], "versao": parcel["versao"], "indice": parcel["indice"], "conciliado": False,
                "status": _installment_status(parcel), "valor_pago": parcel["pago"],
                "nao_pago": _round(parcel["total"] - parcel["pago"]), "data_vencimento": parcel["data_vencimento"],
                "descricao": parcel["descricao"], "nota": parcel["nota"],
                "conta_financeira": {k: account.get(k) for k in ("id", "banco", "codigo_banco", "nome", "ativo", "tipo")},
                "valor_composicao": {"valor_bruto": parcel["total"], "valor_liquido": parcel["total"]},
                "metodo_pagamento": parcel["metodo_pagamento"],
                "baixas": [self._settlement_row(self.settlements[b]) for b in parcel["baixas"]],
                "evento": {"id": event["id"], "data_competencia": event["data_competencia"], "tipo": "RECEITA",
                           "condicao_pagamento": {"quantidade_parcelas": len(event["parcelas"])},
                           "referencia": {k: v for k, v in event["referencia"].items() if v}}}

    @endpoint("GET", "/v1/financeiro/eventos-financeiros/contas-a-receber/buscar")
    def search_receivables(self, request: Request) -> Response:
        args = request.args
        due_from, due_to = args["data_vencimento_de"], args["data_vencimento_ate"]
        window = None
        if args.get("data_alteracao_de") or args.get("data_alteracao_ate"):
            window = _window(args.get("data_alteracao_de") or "2000-01-01T00:00:00",
                             args.get("data_alteracao_ate") or stamp(now_sp())[:19], 365)
            if isinstance(window, Response):
                return window
        statuses = {s for v in _query_values(args, "status") for s in v.split(",")}
        customers = set(_query_values(args, "ids_clientes"))
        text = (args.get("descricao") or "").casefold()
        page, size = _page(args)
        with self.lock:
            parcels = sorted(self.installments.values(), key=lambda p: p["_changed"])
            matches = [p for p in parcels
                       if due_from <= p["data_vencimento"] <= due_to
                       and (not statuses or _search_status(p) in statuses)
                       and (not customers or p["id_cliente"] in customers)
                       and (not text or text in p["evento_descricao"].casefold() or text in p["descricao"].casefold())
                       and (window is None or window[0] <= p["_changed"] <= window[1])]
            rows = [self._receivable_row(p) for p in _slice(matches, page, size)]
        return self.json({"itens_totais": len(matches), "itens": rows,
                          "totais": {"ativo": len(matches), "inativo": 0, "todos": len(matches)}})

    def _receivable_row(self, parcel: dict[str, Any]) -> dict[str, Any]:
        person = self.people.get(parcel["id_cliente"], {})
        status = _search_status(parcel)
        return {"id": parcel["id"], "descricao": parcel["evento_descricao"], "data_vencimento": parcel["data_vencimento"],
                "status": status, "status_traduzido": status, "total": parcel["total"], "pago": parcel["pago"],
                "nao_pago": _round(parcel["total"] - parcel["pago"]), "data_criacao": parcel["data_criacao"],
                "data_alteracao": stamp(parcel["_changed"]), "data_competencia": parcel["data_competencia"],
                "categorias": [], "centros_custo": [], "cliente": {"id": person.get("id"), "nome": person.get("nome")}}

    # ------------------------------------------------------------------ settlements (baixas)
    @endpoint("POST", "/v1/financeiro/eventos-financeiros/parcelas/{parcela_id}/baixa", body_errors="html", write=True)
    def create_settlement(self, request: Request, parcela_id: str) -> Response:
        data = self.body(request)
        with self.lock:
            parcel = self.installments.get(parcela_id)
            if parcel is None:
                return self.json(NOT_FOUND, 404)
            if not any(a["id"] == data["conta_financeira"] for a in self.accounts):
                return _error("Conta financeira não encontrada")
            if data["composicao_valor"]["valor_bruto"] <= 0:
                return _error("O valor da baixa deve ser maior que zero")
            settlement = self._store_settlement(parcel, data)
        return self.json({k: settlement[k] for k in ("id", "versao", "data_pagamento", "composicao_valor",
                                                      "conta_financeira", "metodo_pagamento", "observacao", "nsu")})

    def _store_settlement(self, parcel: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        moment = now_sp()
        settlement = {"id": new_id(), "versao": 1, "id_parcela": parcel["id"], "data_pagamento": data["data_pagamento"],
                      "composicao_valor": data["composicao_valor"], "conta_financeira": data["conta_financeira"],
                      "metodo_pagamento": data.get("metodo_pagamento"), "observacao": data.get("observacao", ""),
                      "nsu": data.get("nsu", ""), "atualizado_em": stamp(moment)}
        self.settlements[settlement["id"]] = settlement
        parcel["baixas"].append(settlement["id"])
        parcel["pago"] = _round(parcel["pago"] + data["composicao_valor"]["valor_bruto"])
        parcel["versao"] += 1
        parcel["_changed"] = moment
        return settlement

    @endpoint("GET", "/v1/financeiro/eventos-financeiros/parcelas/{parcela_id}/baixa")
    def list_settlements(self, request: Request, parcela_id: str) -> Response:
        with self.lock:
            parcel = self.installments.get(parcela_id)
            if parcel is None:
                return self.json(NOT_FOUND, 404)
            return self.json([self._settlement_row(self.settlements[b]) for b in parcel["baixas"]])

    def _settlement_row(self, settlement: dict[str, Any]) -> dict[str, Any]:
        return {"id": settlement["id"], "versao": settlement["versao"], "data_pagamento": settlement["data_pagamento"],
                "valor_composicao": settlement["composicao_valor"], "conta_financeira": settlement["conta_financeira"],
                "id_parcela": settlement["id_parcela"], "observacao": settlement["observacao"],
                "metodo_pagamento": settlement["metodo_pagamento"], "origem": "LANCAMENTO_FINANCEIRO",
                "tipo_evento_financeiro": "RECEITA", "nsu": settlement["nsu"], "atualizado_em": settlement["atualizado_em"]}

    # ------------------------------------------------------------------ invoices (read-only)
    @endpoint("GET", "/v1/notas-fiscais-servico")
    def list_nfse(self, request: Request) -> Response:
        args = request.args
        window = _day_window(args["data_competencia_de"], args["data_competencia_ate"])
        if isinstance(window, Response):
            return window
        page, size = _page(args)
        with self.lock:
            matches = [n for n in self.nfse.values()
                       if window[0] <= n["data_competencia"] <= window[1]
                       and (not args.get("numero_venda") or n["numero_venda"] == args["numero_venda"])
                       and (not args.get("id_cliente") or n["_id_cliente"] == args["id_cliente"])]
        rows = [{k: v for k, v in n.items() if not k.startswith("_")} for n in _slice(matches, page, size)]
        return self.json({"itens": rows, "paginacao": {"pagina_atual": page, "total_paginas": max(1, -(-len(matches) // size)),
                                                       "tamanho_pagina": size, "total_itens": len(matches)}})

    @endpoint("GET", "/v1/notas-fiscais")
    def list_nfe(self, request: Request) -> Response:
        """Lists issued notes only, while its counter still counts every status."""
        args = request.args
        window = _day_window(args["data_inicial"], args["data_final"])
        if isinstance(window, Response):
            return window
        page, size = _page(args)
        with self.lock:
            in_window = [n for n in self.nfe.values() if window[0] <= n["data_emissao"][:10] <= window[1]
                         and (not args.get("id_venda") or n["id_venda"] == args["id_venda"])
                         and (not args.get("numero_nota") or str(n["numero_nota"]) == args["numero_nota"])]
        listed = [n for n in in_window if n["status"] in ("EMITIDA", "CORRIGIDA_SUCESSO")]
        return self.json({"itens": _slice(listed, page, size), "paginacao": {
            "pagina_atual": page, "total_paginas": max(1, -(-len(in_window) // size)), "tamanho_pagina": size,
            "total_itens": len(in_window)}})

    # ------------------------------------------------------------------ control: what users do in Conta Azul
    def _control(self, endpoint: str, request: Request) -> Response:
        handlers = {"_ui_person": self._ui_person, "_ui_sale": self._ui_sale, "_ui_invoice": self._ui_invoice,
                    "_ui_settlement": self._ui_settlement, "_ui_plan": self._ui_plan}
        if endpoint in handlers:
            with self.lock:
                return handlers[endpoint](self.body(request) or {})
        return super()._control(endpoint, request)

    def _ui_person(self, data: dict[str, Any]) -> Response:
        person = self.people.get(data.get("id", ""))
        if person is None:
            return self.json(NOT_FOUND, 404)
        _apply_person(person, {k: v for k, v in data.items() if k != "id"})
        person["_changed"] = now_sp()
        return self.json(_person_detail(person))

    def _ui_sale(self, data: dict[str, Any]) -> Response:
        service = next(iter(self.services.values()), None) or self._ui_service()
        items = [{"id": service["id"], "descricao": i.get("descricao", ""), "quantidade": float(i.get("quantidade", 1)),
                  "valor": float(i["valor"])} for i in data.get("itens") or []]
        total = _round(sum(i["quantidade"] * i["valor"] for i in items))
        day = data.get("data") or now_sp().date().isoformat()
        sale = self._store_sale({"id_cliente": data["id_cliente"], "numero": self._next_number(), "situacao": "APROVADO",
                                 "data_venda": day, "itens": items, "observacoes": data.get("observacoes", ""),
                                 "condicao_pagamento": {"opcao_condicao_pagamento": "À vista",
                                                        "tipo_pagamento": data.get("tipo_pagamento", "DINHEIRO"),
                                                        "parcelas": [{"data_vencimento": day, "valor": total}]}},
                                origin="WEB")
        return self.json({"id": sale["id"], "numero": sale["numero"], "id_evento": sale["id_evento"]})

    def _next_number(self) -> int:
        return max((s["numero"] for s in self.sales.values()), default=0) + 1

    def _ui_service(self) -> dict[str, Any]:
        service = {"id": new_id(), "id_servico": 500, "codigo": "", "descricao": "Serviço avulso", "preco": 0.0,
                   "status": "ATIVO", "tipo_servico": "PRESTADO"}
        self.services[service["id"]] = service
        return service

    def _ui_invoice(self, data: dict[str, Any]) -> Response:
        sale = self.sales.get(data.get("id_venda", ""))
        if sale is None:
            return self.json(NOT_FOUND, 404)
        person = self.people.get(sale["id_cliente"], {})
        day = data.get("data") or sale["data_venda"]
        if data.get("tipo", "NFSE") == "NFE":
            key = "35" + "".join(str(secrets.randbelow(10)) for _ in range(42))
            note = {"chave_acesso": key, "numero_nota": len(self.nfe) + 1, "serie": "1", "id_venda": sale["id"],
                    "status": data.get("status", "EMITIDA"), "data_emissao": f"{day}T10:00:00",
                    "valor_total": sale["total"], "documento_tomador": person.get("documento", ""),
                    "nome_tomador": person.get("nome", "")}
            self.nfe[key] = note
            return self.json(note)
        note = {"id": new_id(), "id_venda": sale["id"], "numero_venda": str(sale["numero"]),
                "numero_rps": len(self.nfse) + 1, "numero_nfse": len(self.nfse) + 2001 if data.get("status", "EMITIDA")
                in ("EMITIDA", "CORRIGIDA_SUCESSO", "CANCELADA") else None,
                "status": data.get("status", "EMITIDA"), "valor_total_nfse": sale["total"], "data_competencia": day,
                "nome_cliente": person.get("nome", ""), "documento_cliente": person.get("documento", ""),
                "codigo_cnae": "7500100", "cidade_emissao": {"nome": "São Paulo", "estado": "SP"},
                "escriturado_manualmente": False,
                "informacao_transmissao": {"data_inicio_emissao": f"{day}T10:00:00"}, "_id_cliente": sale["id_cliente"]}
        self.nfse[note["id"]] = note
        return self.json({k: v for k, v in note.items() if not k.startswith("_")})

    def _ui_settlement(self, data: dict[str, Any]) -> Response:
        parcel = self.installments.get(data.get("parcela_id", ""))
        if parcel is None:
            return self.json(NOT_FOUND, 404)
        settlement = self._store_settlement(parcel, {
            "data_pagamento": data.get("data_pagamento") or now_sp().date().isoformat(),
            "composicao_valor": {"valor_bruto": float(data["valor"])}, "conta_financeira": parcel["conta_financeira"],
            "metodo_pagamento": data.get("metodo_pagamento", "DINHEIRO"), "observacao": data.get("observacao", "")})
        return self.json(self._settlement_row(settlement))

    def _ui_plan(self, data: dict[str, Any]) -> Response:
        self.plan_active = bool(data.get("ativo", True))
        return self.json({"ativo": self.plan_active})


# =========================================================================== helpers
def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else None


def _approve_page(action: str, params: Any) -> str:
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(params.get(k, ""))}">'
                     for k in ("response_type", "client_id", "redirect_uri", "state", "scope"))
    return ("<!doctype html><html lang='pt-BR'><head><meta charset='utf-8'><title>Conta Azul - Autorizar</title></head>"
            "<body><h1>Conta Azul (sandbox)</h1>"
            f"<p>O aplicativo <strong>{html.escape(params.get('client_id', ''))}</strong> quer acessar os dados de "
            f"<strong>{html.escape(DEMO_COMPANY['razao_social'])}</strong>.</p>"
            f"<form method='post' action='{html.escape(action)}'>{hidden}"
            "<button type='submit'>Approve</button></form></body></html>")


def _parse_filter_datetime(value: str) -> datetime | None:
    if _has_offset(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _window(start: str, end: str, max_days: int) -> tuple[datetime, datetime] | Response:
    """A date-time filter pair: no offset, start before end, at most `max_days` apart."""
    begin, finish = _parse_filter_datetime(start), _parse_filter_datetime(end)
    if begin is None or finish is None:
        return _error("Data inválida: use o formato AAAA-MM-DDTHH:MM:SS, sem fuso horário")
    if finish < begin:
        return _error("A data final deve ser posterior à data inicial")
    if finish - begin > timedelta(days=max_days):
        return _error(f"O intervalo entre as datas não pode ultrapassar {max_days} dias")
    return begin, finish


def _day_window(start: str, end: str) -> tuple[str, str] | Response:
    """Invoice lists: both dates required, at most 15 days counting both ends."""
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if last < first:
        return _error("A data final deve ser posterior à data inicial")
    if (last - first).days >= INVOICE_WINDOW_DAYS:
        return _error(f"O período de consulta não pode ultrapassar {INVOICE_WINDOW_DAYS} dias")
    return start, end


def _option_matches(option: str, count: int) -> bool:
    """`À vista` is one installment, `3x` three, `30,60` one per day offset."""
    if option == "À vista":
        return count == 1
    if re.fullmatch(r"\d+x", option):
        return int(option[:-1]) == count
    if re.fullmatch(r"\d+(,\d+)*", option):
        return len(option.split(",")) == count
    return False


def _installment_status(parcel: dict[str, Any]) -> str:
    if parcel["pago"] >= parcel["total"] - 0.005:
        return "QUITADO"
    if parcel["pago"] > 0:
        return "RECEBIDO_PARCIAL"
    if parcel["data_vencimento"] < now_sp().date().isoformat():
        return "ATRASADO"
    return "PENDENTE"


def _search_status(parcel: dict[str, Any]) -> str:
    return {"QUITADO": "RECEBIDO", "PENDENTE": "EM_ABERTO"}.get(_installment_status(parcel), _installment_status(parcel))


def _person_semantics(data: dict[str, Any], person_type: str | None) -> Response | None:
    """What the schema cannot say: check digits, the document matching the person type, e-mails."""
    if "cpf" in data and data["cpf"]:
        if person_type != "Física":
            return _error("O campo cpf só pode ser informado para pessoa Física")
        if not CPF().validate(data["cpf"]):
            return _error(f"O campo cpf é inválido: {data['cpf']} não é um CPF válido")
    if "cnpj" in data and data["cnpj"]:
        if person_type != "Jurídica":
            return _error("O campo cnpj só pode ser informado para pessoa Jurídica")
        if not CNPJ().validate(data["cnpj"]):
            return _error(f"O campo cnpj é inválido: {data['cnpj']} não é um CNPJ válido")
    for address in filter(None, (data.get("email") or "").split(",")):
        try:
            validate_email(address.strip(), check_deliverability=False)
        except EmailNotValidError:
            return _error(f"O campo email é inválido: {address.strip()}")
    return None


_PERSON_STORED = set(_PERSON_PROPERTIES) - {"cpf", "cnpj"}


def _apply_person(person: dict[str, Any], data: dict[str, Any]) -> None:
    """Known fields are stored; unknown ones are dropped silently, as Conta Azul does."""
    for key, value in data.items():
        if key in _PERSON_STORED:
            person[key] = value
    document = data.get("cpf") or data.get("cnpj")
    if document:
        person["documento"] = re.sub(r"[^0-9A-Z]", "", str(document).upper())
    person.setdefault("documento", "")
    person.setdefault("perfis", [])


def _person_summary(person: dict[str, Any]) -> dict[str, Any]:
    return {"id": person["id"], "nome": person["nome"], "documento": person.get("documento", ""),
            "email": person.get("email", ""), "telefone": person.get("telefone_celular") or person.get("telefone_comercial", ""),
            "tipo_pessoa": person["tipo_pessoa"], "perfis": [p["tipo_perfil"] for p in person.get("perfis", [])],
            "ativo": person.get("ativo", True), "codigo": person.get("codigo", ""),
            "id_legado": person["id_legado"], "uuid_legado": person["uuid_legado"]}


def _person_detail(person: dict[str, Any]) -> dict[str, Any]:
    """The full record; `data_alteracao` here is this sandbox's assumption (the filter exists)."""
    detail = {k: v for k, v in person.items() if not k.startswith("_")}
    detail["data_alteracao"] = stamp(person["_changed"])
    return detail

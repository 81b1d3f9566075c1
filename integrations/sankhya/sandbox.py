"""A fake Sankhya API Gateway for tests, benchmarks and demo mode.

What it reproduces, from /work/shared/erp/sankhya.md:
- OAuth client credentials at POST /authenticate (header X-Token, form body), short-lived bearer
  tokens (300 s by default), 401 GTW2510/GTW2511 without/with a malformed Authorization header,
  403 GTW3403 for an expired or unknown token;
- the service layer at /gateway/v1/{mge|mgecom}/service.sbr with its envelope (HTTP 200 and
  `status` "1"/"0"), {"$": ...} scalars, and CRUDServiceProvider.loadRecords with criteria,
  positional f0..fn rows, 50 rows per page, `entity` an object for one row and an array for many,
  no ordering honoured, 400 GTW2509 without offsetPage;
- CACSP/ServicosNfeSP.confirmarNota, SelecaoDocumentoSP.faturar, ServicosNfeSP.gerarLote,
  buscaProcessamentoLote and getAcompanhamentosNota, with STATUSNFE/STATUSNFSE and rejection texts;
- REST v1: POST/PUT /v1/parceiros/clientes, POST /v1/vendas/pedidos (created "a confirmar" with
  provisional receivables), POST /v1/financeiros/receitas/{nufin}/baixa (and the body variant);
  REST 4xx answers for unknown records have an empty body, as observed;
- Sankhya's own error texts (duplicate CPF/CNPJ, CPF length, IE/ICMS class, missing attribute,
  the PreparedStatement 'Bairro' error of a missing IBGE code, unknown field descriptor);
- 1,000 requests per minute per tenant (the cited, unconfirmed limit), answered 429 by the
  gateway beyond it; injected internal errors come as the gateway's 400 GTW3500 or a 503;
- `lost_response_rate`: a write is committed, then the gateway times out (504): the case where a
  blind resend duplicates records, since Sankhya has no idempotency key.
"""
from __future__ import annotations

import importlib.resources
import json
import re
import secrets
import time
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from validate_docbr import CNPJ, CPF
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..sandbox_kit import IdSequence, SandboxApp

DEMO_CREDENTIALS: dict[str, str] = {
    "x_token": "demo-gateway-token-3f9c1a7e",
    "client_id": "tecpet-demo-client",
    "client_secret": "demo-client-secret-8b2d4c6f",
}

# Tenant codes of the demo company below; support types the real ones at setup.
DEMO_SETTINGS: dict[str, str] = {
    "company_code": "1",
    "nota_modelo": "100",
    "service_product_code": "5001",
    "goods_product_code": "5002",
    "service_billing_top": "3200",
    "product_billing_top": "3100",
    "settle_top": "1400",
    "payment_types": "Dinheiro=1; Boleto=2; PIX=3; Cartão de Crédito=4",
    "pos_operation_codes": "3300",
}

ROWS_PER_PAGE = 50
DATETIME_OUT = "%d/%m/%Y %H:%M:%S"

COMPANIES = {1: {"CODEMP": 1, "NOMEFANTASIA": "Clínica Veterinária Demo",
                 "RAZAOSOCIAL": "Clinica Veterinaria Demo Ltda"}}
# Modelo de Nota: fixes company, TOP, nature and negotiation of an order.
NOTE_MODELS = {100: {"CODEMP": 1, "CODTIPOPER": 1000, "CODTIPVENDA": 10, "CODNAT": 101}}
OPERATIONS = {  # TOP -> movement type and the electronic document it issues
    1000: {"TIPMOV": "P", "fiscal": ""},
    3100: {"TIPMOV": "V", "fiscal": "NFE"},
    3200: {"TIPMOV": "V", "fiscal": "NFSE"},
    3300: {"TIPMOV": "V", "fiscal": "NFCE"},
    1400: {"TIPMOV": "I", "fiscal": ""},  # write-off (baixa) of receivables
}
PRODUCTS = {5001: "SERVICOS VETERINARIOS", 5002: "PRODUTOS PET SHOP"}
PAYMENT_TYPES = {1: "DINHEIRO", 2: "BOLETO", 3: "PIX", 4: "CARTAO DE CREDITO"}
BANK_ACCOUNTS = {1: "CONTA MOVIMENTO"}

ENTITY_FIELDS = {
    "Parceiro": ("CODPARC NOMEPARC RAZAOSOCIAL TIPPESSOA CGC_CPF IDENTINSCESTAD CLASSIFICMS EMAIL TELEFONE CEP "
                 "CODEND NUMEND COMPLEMENTO CODBAI CODCID ATIVO CLIENTE FORNECEDOR DTCAD DTALTER").split(),
    "CabecalhoNota": ("NUNOTA NUMNOTA CODEMP CODPARC CODTIPOPER CODTIPVENDA CODNAT CODVEND TIPMOV DTNEG OBSERVACAO "
                      "STATUSNOTA STATUSNFE STATUSNFSE CHAVENFE NUMNFSE NULOTENFSE VLRNOTA DTALTER").split(),
    "ItemNota": "NUNOTA SEQUENCIA CODPROD QTDNEG VLRUNIT VLRTOT CODVOL".split(),
    "Financeiro": ("NUFIN NUNOTA NUMNOTA CODEMP CODPARC CODTIPOPER CODTIPTIT DTNEG DTVENC VLRDESDOB DESDOBRAMENTO "
                   "RECDESP PROVISAO DHBAIXA VLRBAIXA CODCTABCOINT ORIGEM DTALTER").split(),
    "CompraVendavariosPedido": "NUNOTA SEQUENCIA NUNOTAORIG SEQUENCIAORIG".split(),
    "Empresa": "CODEMP NOMEFANTASIA RAZAOSOCIAL".split(),
    "Cidade": "CODCID NOMECID CODMUNFIS".split(),
    "Bairro": "CODBAI NOMEBAI".split(),
    "Endereco": "CODEND NOMEEND".split(),
    "Produto": "CODPROD DESCRPROD".split(),
}
SERVICE_MODULES = {
    "CRUDServiceProvider.loadRecords": "mge",
    "CACSP.confirmarNota": "mgecom",
    "ServicosNfeSP.confirmarNota": "mgecom",
    "SelecaoDocumentoSP.faturar": "mgecom",
    "ServicosNfeSP.gerarLote": "mgecom",
    "ServicosNfeSP.buscaProcessamentoLote": "mgecom",
    "ServicosNfeSP.getAcompanhamentosNota": "mgecom",
}


class ServiceFailure(Exception):
    """A business error: the service layer answers HTTP 200 with status "0" and this text."""


class RestFailure(Exception):
    """A REST v1 refusal: HTTP status and (possibly empty) error body."""

    def __init__(self, status: int, text: str = "", code: str = ""):
        super().__init__(text)
        self.status, self.text, self.code = status, text, code


def sao_paulo_now() -> datetime:
    """The tenant's server clock (America/Sao_Paulo, UTC-3, no daylight saving), whole seconds."""
    return (datetime.now(timezone.utc) - timedelta(hours=3)).replace(tzinfo=None, microsecond=0)


def _empty(value: Any) -> Any:
    """Oracle keeps '' as NULL."""
    return None if value is None or (isinstance(value, str) and value.strip() == "") else value


def _tax_digits(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text or "").upper()


def _valid_tax_id(text: str) -> bool:
    t = _tax_digits(text)
    return CPF().validate(t) if len(t) == 11 else len(t) == 14 and CNPJ().validate(t)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if str(value).strip() not in ("", "None") else None
    except InvalidOperation:
        return None


def _parse_date(text: Any) -> datetime | None:
    text = str(text or "").strip()
    for fmt in (DATETIME_OUT, "%d/%m/%Y", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _scalar(value: Any) -> str:
    """Service-layer values arrive wrapped ({"$": v}) or plain; accept both."""
    if isinstance(value, dict):
        return str(value.get("$", ""))
    return "" if value is None else str(value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _out(value: Any) -> Any:
    """A stored value as loadRecords writes it."""
    if value is None:
        return {}
    if isinstance(value, datetime):
        return {"$": value.strftime(DATETIME_OUT)}
    if isinstance(value, Decimal):
        return {"$": format(value.normalize(), "f")}
    return {"$": str(value)}


def _load_ibge_cities() -> dict[str, tuple[str, str]]:
    """IBGE code -> (UF, city name), from the table brutils ships (no network)."""
    raw = json.loads(importlib.resources.files("brutils").joinpath("data/cities_code.json").read_text("utf-8"))
    return {code: (uf, name.upper()) for uf, cities in raw.items() for name, code in cities.items()}


# --------------------------------------------------------------------------- criteria
_TOKEN = re.compile(r"\s*(?:(?P<field>this\.[A-Za-z_][A-Za-z0-9_]*)|(?P<param>\?)|(?P<string>'(?:[^']|'')*')"
                    r"|(?P<number>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|>|<)|(?P<lp>\()|(?P<rp>\))"
                    r"|(?P<comma>,)|(?P<word>[A-Za-z_]+))")


class Criteria:
    """The small SQL-like language of loadRecords criteria: this.FIELD op ?, IN, LIKE, IS NULL, AND/OR."""

    def __init__(self, expression: str, params: list[dict[str, Any]], fields: set[str]):
        self.tokens = self._tokenize(expression)
        self.pos = 0
        self.params = [self._param_value(p) for p in params]
        self.next_param = 0
        self.fields = fields
        self.predicate = self._or() if self.tokens else (lambda row: True)
        if self.pos != len(self.tokens):
            raise ServiceFailure(f"Erro de sintaxe na expressão do critério próximo a '{self.tokens[self.pos][1]}'")

    @staticmethod
    def _tokenize(expression: str) -> list[tuple[str, str]]:
        out, pos = [], 0
        expression = expression.strip()
        while pos < len(expression):
            m = _TOKEN.match(expression, pos)
            if not m or m.end() == pos:
                raise ServiceFailure(f"Erro de sintaxe na expressão do critério: '{expression[pos:pos + 20]}'")
            kind = m.lastgroup or ""
            out.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(expression) and expression[pos].isspace():
                pos += 1
        return out

    @staticmethod
    def _param_value(p: Any) -> Any:
        kind = (p.get("type", "S") if isinstance(p, dict) else "S").upper()
        text = _scalar(p)
        if kind == "I":
            return int(text)
        if kind == "F":
            return Decimal(text)
        if kind == "D":
            parsed = _parse_date(text)
            if parsed is None:
                raise ServiceFailure(f"Data inválida no parâmetro: '{text}'")
            return parsed
        return text

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("", "")

    def _take(self, kind: str, word: str | None = None) -> str:
        k, v = self._peek()
        if k != kind or (word is not None and v.upper() != word):
            raise ServiceFailure(f"Erro de sintaxe na expressão do critério próximo a '{v or 'fim'}'")
        self.pos += 1
        return v

    def _is_word(self, word: str) -> bool:
        k, v = self._peek()
        return k == "word" and v.upper() == word

    def _or(self) -> Callable[[dict], bool]:
        parts = [self._and()]
        while self._is_word("OR"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def _and(self) -> Callable[[dict], bool]:
        parts = [self._unary()]
        while self._is_word("AND"):
            self.pos += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def _unary(self) -> Callable[[dict], bool]:
        if self._is_word("NOT"):
            self.pos += 1
            inner = self._unary()
            return lambda row: not inner(row)
        if self._peek()[0] == "lp":
            self.pos += 1
            inner = self._or()
            self._take("rp")
            return inner
        return self._comparison()

    def _comparison(self) -> Callable[[dict], bool]:
        field = self._take("field")[5:]
        if field not in self.fields:
            raise ServiceFailure(f"Descritor do campo '{field}' inválido")
        if self._is_word("IS"):
            self.pos += 1
            negate = self._is_word("NOT")
            if negate:
                self.pos += 1
            self._take("word", "NULL")
            return (lambda row: row.get(field) is not None) if negate else (lambda row: row.get(field) is None)
        if self._is_word("IN"):
            self.pos += 1
            self._take("lp")
            values = [self._operand()]
            while self._peek()[0] == "comma":
                self.pos += 1
                values.append(self._operand())
            self._take("rp")
            return lambda row: row.get(field) is not None and any(_compare(row.get(field), v) == 0 for v in values)
        if self._is_word("LIKE"):
            self.pos += 1
            pattern = _like_regex(str(self._operand()))
            return lambda row: row.get(field) is not None and bool(pattern.fullmatch(str(row.get(field))))
        op = self._take("op")
        value = self._operand()
        test = {"=": lambda c: c == 0, "<>": lambda c: c != 0, "!=": lambda c: c != 0, ">": lambda c: c > 0,
                "<": lambda c: c < 0, ">=": lambda c: c >= 0, "<=": lambda c: c <= 0}[op]
        return lambda row: row.get(field) is not None and test(_compare(row.get(field), value))

    def _operand(self) -> Any:
        kind, text = self._peek()
        self.pos += 1
        if kind == "param":
            if self.next_param >= len(self.params):
                raise ServiceFailure("Quantidade de parâmetros menor que a esperada pela expressão")
            self.next_param += 1
            return self.params[self.next_param - 1]
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return Decimal(text)
        raise ServiceFailure(f"Erro de sintaxe na expressão do critério próximo a '{text}'")


def _like_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern), re.S)


def _compare(stored: Any, value: Any) -> int:
    """Compare a stored value with an operand, coercing the operand to the stored type."""
    if isinstance(stored, datetime):
        value = value if isinstance(value, datetime) else _parse_date(value)
        if value is None:
            return 1
    elif isinstance(stored, (int, Decimal)) and not isinstance(stored, bool):
        value = _decimal(value)
        if value is None:
            return 1
        stored = Decimal(stored)
    else:
        stored, value = str(stored), str(value)
    return (stored > value) - (stored < value)


# --------------------------------------------------------------------------- the app
class Sandbox(SandboxApp):
    name = "sankhya"
    default_rate_limit = [(1000, 60.0)]
    rules = [
        Rule("/authenticate", endpoint="authenticate", methods=["POST"]),
        Rule("/gateway/v1/<module>/service.sbr", endpoint="service", methods=["POST"]),
        Rule("/v1/parceiros/clientes", endpoint="create_partner", methods=["POST"]),
        Rule("/v1/parceiros/clientes/<code>", endpoint="update_partner", methods=["PUT"]),
        Rule("/v1/vendas/pedidos", endpoint="create_order", methods=["POST"]),
        Rule("/v1/financeiros/receitas/<code>/baixa", endpoint="settle_receivable", methods=["POST"]),
        Rule("/v1/financeiros/receitas/baixa", endpoint="settle_receivable_by_body", methods=["POST"]),
    ]

    def __init__(self, *, token_lifetime: int = 300, authorization_delay: float = 0.0,
                 credentials: dict[str, str] | None = None, lost_response_rate: float = 0.0, **faults: Any):
        self.token_lifetime = token_lifetime
        self.lost_response_rate = lost_response_rate
        self.authorization_delay = authorization_delay
        self.credentials = dict(credentials or DEMO_CREDENTIALS)
        self.denied_entities: set[str] = set()   # entities the integration user may not read
        self.ibge_cities = _load_ibge_cities()
        self.tokens: dict[str, tuple[str, float]] = {}
        super().__init__(**faults)

    # -- state
    def reset_data(self) -> None:
        self.partners: dict[int, dict[str, Any]] = {}
        self.cities: dict[int, dict[str, Any]] = {}
        self.districts: dict[int, dict[str, Any]] = {}
        self.streets: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, dict[str, Any]] = {}
        self.items: dict[tuple[int, int], dict[str, Any]] = {}
        self.financials: dict[int, dict[str, Any]] = {}
        self.links: list[dict[str, Any]] = []
        self.follow_ups: dict[int, list[dict[str, Any]]] = {}
        self.pending_authorization: dict[int, float] = {}
        self.tokens = {}
        self.authentications = 0
        self.rejected_tokens = 0
        self.partner_ids = IdSequence(1000)
        self.note_ids = IdSequence(50000)
        self.financial_ids = IdSequence(80000)
        self.place_ids = IdSequence(10)
        self.note_numbers: dict[int, int] = {}

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        with self.lock:
            out.update(authentications=self.authentications, rejected_tokens=self.rejected_tokens)
        return out

    def state(self) -> dict[str, Any]:
        def plain(rows):
            return [{k: (v.strftime(DATETIME_OUT) if isinstance(v, datetime) else v) for k, v in r.items()}
                    for r in rows]
        return {
            "partners": plain(self.partner_view(p) for p in self.partners.values()),
            "notes": plain(self.notes.values()),
            "items": plain(self.items.values()),
            "financials": plain(self.financials.values()),
            "links": plain(self.links),
        }

    # -- gateway behaviour
    def account_of(self, request: Request) -> str:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self.lock:
            entry = self.tokens.get(token)
        return entry[0] if entry else (request.headers.get("X-Token") or "anonymous")

    def throttled_response(self, request: Request, retry_after: float) -> Response:
        return self.json({"message": "API rate limit exceeded"}, 429, headers={"Retry-After": f"{retry_after:.0f}"})

    def server_error_response(self, request: Request) -> Response:
        if self.rng.random() < 0.5:
            return self.json({"message": "An invalid response was received from the upstream server"}, 503)
        return self.gateway_error(400, "GTW3500", "Erro de comunicação interna com o Sankhya Om")

    def gateway_error(self, status: int, code: str, text: str) -> Response:
        return self.json({"error": {"codigo": code, "descricao": text}}, status)

    def authenticate(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return self.json({"error": "unsupported_grant_type",
                              "error_description": "grant_type deve ser client_credentials"}, 400)
        ok = (request.headers.get("X-Token") == self.credentials["x_token"]
              and form.get("client_id") == self.credentials["client_id"]
              and form.get("client_secret") == self.credentials["client_secret"])
        if not ok:
            return self.json({"error": "invalid_client", "error_description": "Credenciais de cliente inválidas"}, 401)
        token = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = (self.credentials["x_token"], time.monotonic() + self.token_lifetime)
            self.authentications += 1
        return self.json({"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime})

    def authorize(self, request: Request) -> Response | None:
        """None when the bearer token is good; the gateway's refusal otherwise."""
        header = request.headers.get("Authorization", "")
        if not header:
            return self.gateway_error(401, "GTW2510", "Header Authorization não informado")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return self.gateway_error(401, "GTW2511", "Header Authorization mal formatado")
        with self.lock:
            if self.faults.expire_tokens:
                self.tokens.clear()
                self.faults.expire_tokens = False
            entry = self.tokens.get(header[7:].strip())
            if entry is None or entry[1] <= time.monotonic():
                self.rejected_tokens += 1
                return self.gateway_error(403, "GTW3403", "Bearer Token inválido ou Expirado.")
        return None

    # -- REST v1
    def rest(self, request: Request, handler: Callable[[Any], Any]) -> Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        body = self.body(request)
        if not isinstance(body, dict):
            return self.gateway_error(400, "GTW2500", "Requisição mal formatada")
        try:
            with self.lock:
                result = handler(body)
                lost = self.lost_response_rate and self.rng.random() < self.lost_response_rate
            if lost:
                return self.json({"message": "The upstream server is timing out"}, 504)
            return self.json(result)
        except RestFailure as exc:
            if not exc.text:
                return Response(b"", status=exc.status)
            return self.json({"error": {"codigo": exc.code or "CORE_E00000", "descricao": exc.text}}, exc.status)

    def create_partner(self, request: Request) -> Response:
        return self.rest(request, self._create_partner)

    def update_partner(self, request: Request, code: str) -> Response:
        return self.rest(request, lambda body: self._update_partner(code, body))

    def create_order(self, request: Request) -> Response:
        return self.rest(request, self._create_order)

    def settle_receivable(self, request: Request, code: str) -> Response:
        return self.rest(request, lambda body: self._settle(code, body))

    def settle_receivable_by_body(self, request: Request) -> Response:
        return self.rest(request, lambda body: self._settle(str(body.get("codigoFinanceiro", "")), body))

    # -- partners
    def _create_partner(self, body: dict[str, Any]) -> dict[str, Any]:
        row = self._partner_row(body, current=None)
        code = self.partner_ids.next()
        now = sao_paulo_now()
        row.update(CODPARC=code, ATIVO="S", CLIENTE="S", FORNECEDOR="N", DTCAD=now, DTALTER=now)
        self.partners[code] = row
        return {"codigoCliente": str(code), "mensagem": "Cliente incluído com sucesso"}

    def _update_partner(self, code: str, body: dict[str, Any]) -> dict[str, Any]:
        current = self.partners.get(int(code)) if code.isdigit() else None
        if current is None:
            raise RestFailure(404)
        row = self._partner_row(body, current=current)
        current.update(row, DTALTER=sao_paulo_now())
        return {"codigoCliente": str(current["CODPARC"]), "mensagem": "Cliente alterado com sucesso"}

    def _partner_row(self, body: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Validate a REST partner (a whole one, or the changed keys of one) as Sankhya does."""
        address = body.get("endereco") if isinstance(body.get("endereco"), dict) else {}
        merged = self._partner_as_rest(current) if current else {"endereco": {}}
        merged.update({k: v for k, v in body.items() if k != "endereco"})
        merged["endereco"] = {**merged.get("endereco", {}), **address}
        for name in ("tipo", "cnpjCpf", "nome"):
            if not str(merged.get(name) or "").strip():
                raise RestFailure(400, f"É necessário informar o atributo '{name}'")
        addr = merged["endereco"]
        ibge = str(addr.get("codigoIbge") or addr.get("codigolbge") or "").strip()
        if ibge not in self.ibge_cities:
            raise RestFailure(400, "Erro ao executar PreparedStatement: INSERT INTO TSIBAI (CODBAI, NOMEBAI, CODCID) "
                                   "VALUES (?, ?, ?) 'Bairro': param[0] = null")
        for name in ("logradouro", "numero", "bairro", "cidade", "uf", "cep"):
            if not str(addr.get(name) or "").strip():
                raise RestFailure(400, f"É necessário informar o atributo 'endereco.{name}'")
        kind = str(merged["tipo"]).upper()
        if kind not in ("F", "J", "PF", "PJ"):
            raise RestFailure(400, f"Valor inválido para o atributo 'tipo': '{merged['tipo']}'")
        kind = "J" if kind in ("J", "PJ") else "F"
        tax_id = str(merged["cnpjCpf"]).strip()
        self._check_tax_id(tax_id, kind, exclude=current["CODPARC"] if current else None)
        extra = {k: v for k, v in merged.items() if k.isupper()}
        for name in extra:
            if name not in ENTITY_FIELDS["Parceiro"] and not name.startswith("AD_"):
                raise RestFailure(400, f"Descritor do campo '{name}' inválido")
        ie = str(merged.get("ieRg") or "").strip().upper()
        icms = str(extra.get("CLASSIFICMS") or ("C" if not ie else "X")).upper()
        self._check_icms(ie, icms)
        city = self._city(ibge)
        return {
            "TIPPESSOA": kind, "CGC_CPF": tax_id, "NOMEPARC": str(merged["nome"]).strip(),
            "RAZAOSOCIAL": _empty(merged.get("razao")) or str(merged["nome"]).strip(),
            "IDENTINSCESTAD": _empty(ie), "CLASSIFICMS": icms, "EMAIL": _empty(merged.get("email")),
            "TELEFONE": _empty(f"{merged.get('telefoneDdd') or ''}{merged.get('telefoneNumero') or ''}"),
            "CEP": re.sub(r"\D", "", str(addr["cep"])), "CODEND": self._street(str(addr["logradouro"])),
            "NUMEND": str(addr["numero"]).strip(), "COMPLEMENTO": _empty(addr.get("complemento")),
            "CODBAI": self._district(str(addr["bairro"])), "CODCID": city,
        }

    def _partner_as_rest(self, row: dict[str, Any]) -> dict[str, Any]:
        view = self.partner_view(row)
        return {
            "tipo": row["TIPPESSOA"], "cnpjCpf": row["CGC_CPF"], "nome": row["NOMEPARC"],
            "razao": row.get("RAZAOSOCIAL"), "ieRg": row.get("IDENTINSCESTAD"), "email": row.get("EMAIL"),
            "telefoneNumero": row.get("TELEFONE"), "CLASSIFICMS": row.get("CLASSIFICMS"),
            "endereco": {"logradouro": view["Endereco_NOMEEND"], "numero": row.get("NUMEND"),
                         "complemento": row.get("COMPLEMENTO"), "bairro": view["Bairro_NOMEBAI"],
                         "cidade": view["Cidade_NOMECID"], "codigoIbge": view["Cidade_CODMUNFIS"],
                         "uf": self.ibge_cities.get(str(view["Cidade_CODMUNFIS"]), ("", ""))[0], "cep": row.get("CEP")},
        }

    def _check_tax_id(self, tax_id: str, kind: str, exclude: int | None) -> None:
        plain = _tax_digits(tax_id)
        if len(plain) != (11 if kind == "F" else 14):
            person = "Física" if kind == "F" else "Jurídica"
            raise RestFailure(400, f"Tamanho do CNPJ/CPF inválido para pessoa {person}!")
        if not _valid_tax_id(plain):
            raise RestFailure(400, f"CNPJ/CPF inválido: '{tax_id}'")
        for other in self.partners.values():
            if other["CODPARC"] != exclude and _tax_digits(other.get("CGC_CPF") or "") == plain:
                raise RestFailure(400, f"CNPJ/CPF já existente para o parceiro: '{other['NOMEPARC']}'")

    @staticmethod
    def _check_icms(ie: str, icms: str) -> None:
        if icms not in "CIPRTX" or len(icms) != 1:
            raise RestFailure(400, f"Valor inválido para o campo 'CLASSIFICMS': '{icms}'")
        if not ie and icms not in ("C", "P"):
            raise RestFailure(400, "Na ausência da Inscrição Estadual, apenas a Classificação ICMS "
                                   "'Consumidor Final' ou 'Produtor Rural' é permitida.")
        if icms == "I" and ie != "ISENTO":
            raise RestFailure(400, "Insira a palavra ISENTO para este tipo de inscrição estadual")

    def _city(self, ibge: str) -> int:
        for row in self.cities.values():
            if row["CODMUNFIS"] == int(ibge):
                return row["CODCID"]
        code = self.place_ids.next()
        self.cities[code] = {"CODCID": code, "NOMECID": self.ibge_cities[ibge][1], "CODMUNFIS": int(ibge)}
        return code

    def _district(self, name: str) -> int:
        return self._named_place(self.districts, "CODBAI", "NOMEBAI", name)

    def _street(self, name: str) -> int:
        return self._named_place(self.streets, "CODEND", "NOMEEND", name)

    def _named_place(self, table: dict[int, dict], key: str, field: str, name: str) -> int:
        wanted = name.strip().upper()
        for row in table.values():
            if row[field] == wanted:
                return row[key]
        code = self.place_ids.next()
        table[code] = {key: code, field: wanted}
        return code

    def partner_view(self, row: dict[str, Any]) -> dict[str, Any]:
        """A partner with the names of its street, district and city, as loadRecords joins them."""
        city = self.cities.get(row.get("CODCID")) or {}
        return {**row,
                "Endereco_NOMEEND": (self.streets.get(row.get("CODEND")) or {}).get("NOMEEND"),
                "Bairro_NOMEBAI": (self.districts.get(row.get("CODBAI")) or {}).get("NOMEBAI"),
                "Cidade_NOMECID": city.get("NOMECID"), "Cidade_CODMUNFIS": city.get("CODMUNFIS")}

    # -- orders and receivables
    def _create_order(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("notaModelo") in (None, ""):
            raise RestFailure(400, "É necessário informar o atributo 'notaModelo'")
        model = NOTE_MODELS.get(int(_decimal(body.get("notaModelo")) or 0))
        if model is None:
            raise RestFailure(400, f"Modelo de nota {body.get('notaModelo')} não encontrado")
        day = _parse_date(body.get("data"))
        if day is None:
            raise RestFailure(400, f"Data de negociação inválida: '{body.get('data')}'")
        partner = self.partners.get(int(_decimal(body.get("codigoCliente")) or 0))
        if partner is None or partner.get("ATIVO") != "S":
            raise RestFailure(400, f"Parceiro {body.get('codigoCliente')} não encontrado ou inativo")
        items = [self._order_item(i) for i in _as_list(body.get("itens"))]
        if not items:
            raise RestFailure(400, "É necessário informar o atributo 'itens'")
        installments = [self._order_installment(f) for f in _as_list(body.get("financeiros"))]
        return {"codigo": "200", "tipo": "SUCESSO", "mensagem": "Pedido incluído com sucesso",
                "retorno": {"codigoPedido": str(self._store_order(model, day, partner, body, items, installments))}}

    @staticmethod
    def _order_item(item: dict[str, Any]) -> dict[str, Any]:
        product = int(_decimal(item.get("codigoProduto")) or 0)
        quantity, price = _decimal(item.get("quantidade")), _decimal(item.get("valorUnitario"))
        if product not in PRODUCTS:
            raise RestFailure(400, f"Produto {item.get('codigoProduto')} não encontrado")
        if quantity is None or quantity <= 0 or price is None or price < 0:
            raise RestFailure(400, f"Quantidade ou valor unitário inválido no item {item.get('sequencia')}")
        return {"CODPROD": product, "QTDNEG": quantity, "VLRUNIT": price,
                "VLRTOT": (quantity * price).quantize(Decimal("0.01")), "CODVOL": item.get("unidade") or "UN"}

    @staticmethod
    def _order_installment(fin: dict[str, Any]) -> dict[str, Any]:
        due, value = _parse_date(fin.get("dataVencimento")), _decimal(fin.get("valorParcela"))
        if due is None:
            raise RestFailure(400, "É necessário informar o atributo 'financeiros.dataVencimento'")
        if value is None or value <= 0:
            raise RestFailure(400, f"Valor da parcela inválido: '{fin.get('valorParcela')}'")
        kind = fin.get("tipoPagamento")
        if kind not in (None, "") and int(_decimal(kind) or 0) not in PAYMENT_TYPES:
            raise RestFailure(400, f"Tipo de título {kind} não encontrado")
        return {"DTVENC": due, "VLRDESDOB": value, "CODTIPTIT": int(_decimal(kind) or 0) or None,
                "SEQ": int(_decimal(fin.get("sequencia")) or 0)}

    def _store_order(self, model, day, partner, body, items, installments) -> int:
        nunota, now = self.note_ids.next(), sao_paulo_now()
        total = sum((i["VLRTOT"] for i in items), Decimal("0"))
        self.notes[nunota] = {
            "NUNOTA": nunota, "NUMNOTA": self._next_number(model["CODTIPOPER"]),
            "CODEMP": int(_decimal(body.get("codigoEmpresa")) or model["CODEMP"]),
            "CODPARC": partner["CODPARC"], "CODTIPOPER": model["CODTIPOPER"], "CODTIPVENDA": model["CODTIPVENDA"],
            "CODNAT": model["CODNAT"], "CODVEND": int(_decimal(body.get("codigoVendedor")) or 0), "TIPMOV": "P",
            "DTNEG": day, "OBSERVACAO": _empty(body.get("observacao")), "STATUSNOTA": "A", "STATUSNFE": None,
            "STATUSNFSE": None, "CHAVENFE": None, "NUMNFSE": None, "NULOTENFSE": None, "VLRNOTA": total,
            "DTALTER": now,
        }
        for seq, item in enumerate(items, start=1):
            self.items[(nunota, seq)] = {"NUNOTA": nunota, "SEQUENCIA": seq, **item}
        if not installments:  # the negotiation type decides: one title in 30 days
            installments = [{"DTVENC": day + timedelta(days=30), "VLRDESDOB": total, "CODTIPTIT": None, "SEQ": 1}]
        for n, inst in enumerate(installments, start=1):
            self._store_financial(self.notes[nunota], inst, n, provisional=True)
        return nunota

    def _store_financial(self, note: dict[str, Any], inst: dict[str, Any], n: int, *, provisional: bool,
                         paid: bool = False) -> int:
        nufin, now = self.financial_ids.next(), sao_paulo_now()
        self.financials[nufin] = {
            "NUFIN": nufin, "NUNOTA": note["NUNOTA"], "NUMNOTA": note["NUMNOTA"], "CODEMP": note["CODEMP"],
            "CODPARC": note["CODPARC"], "CODTIPOPER": note["CODTIPOPER"], "CODTIPTIT": inst["CODTIPTIT"],
            "DTNEG": note["DTNEG"], "DTVENC": inst["DTVENC"], "VLRDESDOB": inst["VLRDESDOB"],
            "DESDOBRAMENTO": str(inst.get("SEQ") or n), "RECDESP": 1, "PROVISAO": "S" if provisional else "N",
            "DHBAIXA": now if paid else None, "VLRBAIXA": inst["VLRDESDOB"] if paid else None,
            "CODCTABCOINT": 1 if paid else None, "ORIGEM": "E", "DTALTER": now,
        }
        return nufin

    def _next_number(self, top: int) -> int:
        self.note_numbers[top] = self.note_numbers.get(top, 0) + 1
        return self.note_numbers[top]

    def _settle(self, code: str, body: dict[str, Any]) -> dict[str, Any]:
        row = self.financials.get(int(code)) if str(code).isdigit() else None
        if row is None or row["RECDESP"] != 1:
            raise RestFailure(404)
        if row["DHBAIXA"] is not None:
            raise RestFailure(400, f"Financeiro {code} já se encontra baixado")
        paid_day = _parse_date(body.get("dataBaixa"))
        if paid_day is None:
            raise RestFailure(400, "É necessário informar o atributo 'dataBaixa'")
        top = int(_decimal(body.get("codigoTipoOperacao")) or 0)
        if OPERATIONS.get(top, {}).get("TIPMOV") != "I":
            raise RestFailure(400, f"Tipo de operação de baixa {body.get('codigoTipoOperacao')} inválido")
        account = int(_decimal(body.get("codigoContaBancaria")) or 0) or (
            next(iter(BANK_ACCOUNTS)) if len(BANK_ACCOUNTS) == 1 else 0)
        if account not in BANK_ACCOUNTS:
            raise RestFailure(400, "É necessário informar o atributo 'codigoContaBancaria'")
        value = _decimal(body.get("valorBaixa", body.get("valor"))) or row["VLRDESDOB"]
        now = sao_paulo_now()
        row.update(DHBAIXA=datetime.combine(paid_day.date(), now.time()), VLRBAIXA=value, CODCTABCOINT=account,
                   DTALTER=now)
        return {"codigo": "200", "tipo": "SUCESSO", "mensagem": "Baixa realizada com sucesso",
                "retorno": {"codigoFinanceiro": str(row["NUFIN"])}}

    # -- service layer
    def service(self, request: Request, module: str) -> Response:
        refused = self.authorize(request)
        if refused is not None:
            return refused
        name = request.args.get("serviceName", "")
        body = self.body(request)
        if not isinstance(body, dict):
            return self.gateway_error(400, "GTW2500", "Requisição mal formatada")
        request_body = body.get("requestBody") or {}
        if name == "CRUDServiceProvider.loadRecords" and "offsetPage" not in (request_body.get("dataSet") or {}):
            return self.gateway_error(400, "GTW2509", "O parâmetro offsetPage é obrigatório")
        handler = getattr(self, "svc_" + name.replace(".", "_"), None)
        try:
            if handler is None or SERVICE_MODULES.get(name) != module:
                raise ServiceFailure(f"Serviço '{name}' não encontrado no módulo '{module}'")
            with self.lock:
                result = handler(request_body)
        except ServiceFailure as exc:
            return self.json({"serviceName": name, "status": "0", "pendingPrinting": "false",
                              "transactionId": uuid.uuid4().hex.upper(), "statusMessage": str(exc),
                              "tsError": {"tsErrorCode": "CORE_E00001", "tsErrorLevel": "ERROR"}})
        return self.json({"serviceName": name, "status": "1", "pendingPrinting": "false",
                          "transactionId": uuid.uuid4().hex.upper(), "responseBody": result})

    def svc_CRUDServiceProvider_loadRecords(self, body: dict[str, Any]) -> dict[str, Any]:
        data_set = body.get("dataSet") or {}
        entity = str(data_set.get("rootEntity", ""))
        if entity not in ENTITY_FIELDS:
            raise ServiceFailure(f"Entidade '{entity}' não encontrada no dicionário de dados")
        if entity in self.denied_entities:
            raise ServiceFailure("Não autorizado")
        names = self._requested_fields(entity, _as_list(data_set.get("entity")))
        criteria = data_set.get("criteria") or {}
        expression = _scalar(criteria.get("expression"))
        predicate = Criteria(expression, _as_list(criteria.get("parameter")), set(ENTITY_FIELDS[entity])).predicate
        rows = [r for r in self._rows(entity) if predicate(r)]
        rows.sort(key=lambda r: zlib.crc32(repr(self._key(entity, r)).encode()))  # no ordering honoured
        page = int(_decimal(data_set.get("offsetPage")) or 0)
        chunk = rows[page * ROWS_PER_PAGE:(page + 1) * ROWS_PER_PAGE]
        encoded = [{f"f{i}": _out(r.get(n)) for i, n in enumerate(names)} for r in chunk]
        entities: dict[str, Any] = {
            "total": str(len(rows)), "hasMoreResult": "true" if len(rows) > (page + 1) * ROWS_PER_PAGE else "false",
            "offsetPage": str(page), "offset": str(page * ROWS_PER_PAGE),
            "metadata": {"fields": {"field": [{"name": n} for n in names]}},
        }
        if encoded:
            entities["entity"] = encoded[0] if len(encoded) == 1 else encoded
        return {"entities": entities}

    def _requested_fields(self, entity: str, fieldsets: list[dict[str, Any]]) -> list[str]:
        joins = {"Parceiro": ("Endereco", "Bairro", "Cidade"), "CabecalhoNota": ("Parceiro",),
                 "ItemNota": ("Produto",), "Financeiro": ("Parceiro",)}
        names = []
        for fs in fieldsets or [{"path": "", "fieldset": {"list": ",".join(ENTITY_FIELDS[entity])}}]:
            path = str(fs.get("path") or "")
            listed = [f.strip() for f in str((fs.get("fieldset") or {}).get("list", "")).split(",") if f.strip()]
            if path and path not in joins.get(entity, ()):
                raise ServiceFailure(f"Caminho '{path}' inválido para a entidade '{entity}'")
            known = ENTITY_FIELDS[path or entity]
            for field in listed:
                if field not in known and not (path == "" and field.startswith("AD_")):
                    raise ServiceFailure(f"Descritor do campo '{field}' inválido")
                names.append(f"{path}_{field}" if path else field)
        return names

    def _rows(self, entity: str) -> list[dict[str, Any]]:
        if entity == "Parceiro":
            return [self.partner_view(p) for p in self.partners.values()]
        if entity == "CabecalhoNota":
            return [{**n, "Parceiro_NOMEPARC": (self.partners.get(n["CODPARC"]) or {}).get("NOMEPARC")}
                    for n in self.notes.values()]
        if entity == "ItemNota":
            return [{**i, "Produto_DESCRPROD": PRODUCTS.get(i["CODPROD"])} for i in self.items.values()]
        if entity == "Financeiro":
            return [{**f, "Parceiro_NOMEPARC": (self.partners.get(f["CODPARC"]) or {}).get("NOMEPARC")}
                    for f in self.financials.values()]
        if entity == "CompraVendavariosPedido":
            return list(self.links)
        if entity == "Empresa":
            return list(COMPANIES.values())
        tables = {"Cidade": self.cities, "Bairro": self.districts, "Endereco": self.streets}
        return list(tables[entity].values())

    @staticmethod
    def _key(entity: str, row: dict[str, Any]) -> Any:
        field = {"Parceiro": "CODPARC", "CabecalhoNota": "NUNOTA", "Financeiro": "NUFIN", "Empresa": "CODEMP"}
        if entity in field:
            return row[field[entity]]
        return tuple(sorted((k, str(v)) for k, v in row.items()))

    def _note(self, nunota: Any) -> dict[str, Any]:
        note = self.notes.get(int(_decimal(nunota) or 0))
        if note is None:
            raise ServiceFailure(f"Nota {nunota} não encontrada")
        return note

    def _confirm(self, body: dict[str, Any]) -> dict[str, Any]:
        note = self._note(_scalar((body.get("nota") or {}).get("NUNOTA")))
        if note["STATUSNOTA"] == "L":
            raise ServiceFailure(f"A nota {note['NUNOTA']} já foi confirmada.")
        if not any(k[0] == note["NUNOTA"] for k in self.items):
            raise ServiceFailure(f"Nota {note['NUNOTA']} sem produtos/serviços. Não pode ser confirmada.")
        now = sao_paulo_now()
        note.update(STATUSNOTA="L", DTALTER=now)
        for fin in self.financials.values():
            if fin["NUNOTA"] == note["NUNOTA"]:
                fin.update(PROVISAO="N", DTALTER=now)
        return {}

    svc_CACSP_confirmarNota = _confirm
    svc_ServicosNfeSP_confirmarNota = _confirm

    def svc_SelecaoDocumentoSP_faturar(self, body: dict[str, Any]) -> dict[str, Any]:
        notas = body.get("notas") or {}
        top = int(_decimal(_scalar(notas.get("codTipOper"))) or 0)
        if OPERATIONS.get(top, {}).get("TIPMOV") != "V":
            raise ServiceFailure(f"TOP {top} não permitida para faturamento deste pedido")
        day = _parse_date(_scalar(notas.get("dtFaturamento"))) or datetime.combine(sao_paulo_now().date(),
                                                                                  datetime.min.time())
        created = [self._bill(self._note(_scalar(n.get("NUNOTA"))), top, day) for n in _as_list(notas.get("nota"))]
        return {"notas": {"nota": [{"NUNOTA": {"$": str(n)}} for n in created]}}

    def _bill(self, order: dict[str, Any], top: int, day: datetime) -> int:
        if order["TIPMOV"] != "P":
            raise ServiceFailure(f"A nota {order['NUNOTA']} não é um pedido")
        if order["STATUSNOTA"] != "L":
            raise ServiceFailure(f"O pedido {order['NUNOTA']} precisa estar confirmado para ser faturado")
        if any(link["NUNOTAORIG"] == order["NUNOTA"] for link in self.links):
            raise ServiceFailure(f"O pedido {order['NUNOTA']} já foi totalmente faturado")
        nunota, now = self.note_ids.next(), sao_paulo_now()
        service = OPERATIONS[top]["fiscal"] == "NFSE"
        self.notes[nunota] = {**order, "NUNOTA": nunota, "NUMNOTA": self._next_number(top), "CODTIPOPER": top,
                              "TIPMOV": "V", "DTNEG": day, "STATUSNOTA": "L", "STATUSNFE": "M" if service else None,
                              "STATUSNFSE": None, "DTALTER": now}
        for (origin, seq), item in list(self.items.items()):
            if origin == order["NUNOTA"]:
                self.items[(nunota, seq)] = {**item, "NUNOTA": nunota}
                self.links.append({"NUNOTA": nunota, "SEQUENCIA": seq, "NUNOTAORIG": origin, "SEQUENCIAORIG": seq})
        for fin in self.financials.values():
            if fin["NUNOTA"] == order["NUNOTA"]:
                fin.update(NUNOTA=nunota, NUMNOTA=self.notes[nunota]["NUMNOTA"], CODTIPOPER=top, DTALTER=now)
        order["DTALTER"] = now
        return nunota

    def _nunotas(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._note(_scalar(n)) for n in _as_list((body.get("notas") or {}).get("nunota"))]

    def svc_ServicosNfeSP_gerarLote(self, body: dict[str, Any]) -> dict[str, Any]:
        notes = self._nunotas(body)
        lot = self.place_ids.next()
        for note in notes:
            fiscal = OPERATIONS.get(note["CODTIPOPER"], {}).get("fiscal")
            if fiscal not in ("NFE", "NFSE"):
                raise ServiceFailure(f"A TOP {note['CODTIPOPER']} da nota {note['NUNOTA']} não gera nota eletrônica")
            if note["STATUSNOTA"] != "L":
                raise ServiceFailure(f"A nota {note['NUNOTA']} precisa estar confirmada para ser enviada")
            field = "STATUSNFSE" if fiscal == "NFSE" else "STATUSNFE"
            if note.get(field) in ("E", "I", "A"):
                continue
            note.update({field: "E", "DTALTER": sao_paulo_now()}, NULOTENFSE=lot if fiscal == "NFSE" else None)
            self.pending_authorization[note["NUNOTA"]] = time.monotonic() + self.authorization_delay
            self._follow_up(note["NUNOTA"], f"Nota enviada no lote {lot}")
        return {"lote": {"$": str(lot)}}

    def svc_ServicosNfeSP_buscaProcessamentoLote(self, body: dict[str, Any]) -> dict[str, Any]:
        for note in self._nunotas(body):
            ready = self.pending_authorization.get(note["NUNOTA"])
            if ready is not None and ready <= time.monotonic():
                del self.pending_authorization[note["NUNOTA"]]
                self._authority_answer(note)
        return {}

    def _authority_answer(self, note: dict[str, Any]) -> None:
        """SEFAZ / the city hall rejects a document whose customer has an invalid CPF/CNPJ."""
        service = OPERATIONS[note["CODTIPOPER"]]["fiscal"] == "NFSE"
        partner = self.partners.get(note["CODPARC"]) or {}
        field = "STATUSNFSE" if service else "STATUSNFE"
        if not _valid_tax_id(partner.get("CGC_CPF") or ""):
            reason = ("Rejeição: CPF/CNPJ do tomador inválido" if service
                      else "Rejeição 237: CPF do destinatário inválido")
            note.update({field: "V", "DTALTER": sao_paulo_now()})
            self._follow_up(note["NUNOTA"], reason)
            return
        if service:
            note.update(STATUSNFSE="A", NUMNFSE=str(self._next_number(-note["CODTIPOPER"])))
        else:
            digits = f"35{note['DTNEG']:%y%m}{'11222333000181'}55001{note['NUMNOTA']:09d}1{note['NUNOTA'] % 10 ** 8:08d}"
            note.update(STATUSNFE="A", CHAVENFE=(digits + "0")[:44])
        note["DTALTER"] = sao_paulo_now()
        self._follow_up(note["NUNOTA"], "Autorizado o uso da nota")

    def _follow_up(self, nunota: int, text: str) -> None:
        self.follow_ups.setdefault(nunota, []).append(
            {"dhocorrencia": {"$": sao_paulo_now().strftime(DATETIME_OUT)}, "ocorrencias": {"$": text},
             "usuario": {"$": "SUP"}})

    def svc_ServicosNfeSP_getAcompanhamentosNota(self, body: dict[str, Any]) -> dict[str, Any]:
        out = []
        for note in self._nunotas(body):
            history = self.follow_ups.get(note["NUNOTA"], [])
            rejected = [h for h in history if h["ocorrencias"]["$"].startswith("Rejei")]
            observation = {"$": rejected[-1]["ocorrencias"]["$"]} if rejected else {}
            service = OPERATIONS.get(note["CODTIPOPER"], {}).get("fiscal") == "NFSE"
            out.append({"nunota": {"$": str(note["NUNOTA"])}, "statusnfe": _out(note.get("STATUSNFE")),
                        "statusnfse": _out(note.get("STATUSNFSE")),
                        "observacaoNfse" if service else "observacaoNfe": observation,
                        "acompanhamento": history[0] if len(history) == 1 else history})
        return {"notas": {"nota": out[0] if len(out) == 1 else out}}

    # -- what happens inside the ERP (tests and the demo call these directly)
    def seed_partner(self, *, name: str, tax_id: str, person_type: str = "F", ibge: str = "3550308",
                     street: str = "RUA DAS FLORES", number: str = "10", district: str = "CENTRO",
                     zip_code: str = "01310100", email: str = "", modified_at: datetime | None = None) -> int:
        """A partner typed by a person in Sankhya: no API validation, CPF/CNPJ as typed (maybe masked)."""
        with self.lock:
            code, now = self.partner_ids.next(), modified_at or sao_paulo_now()
            self.partners[code] = {
                "CODPARC": code, "NOMEPARC": name, "RAZAOSOCIAL": name, "TIPPESSOA": person_type, "CGC_CPF": tax_id,
                "IDENTINSCESTAD": None, "CLASSIFICMS": "C", "EMAIL": _empty(email), "TELEFONE": None,
                "CEP": zip_code, "CODEND": self._street(street), "NUMEND": number, "COMPLEMENTO": None,
                "CODBAI": self._district(district), "CODCID": self._city(ibge), "ATIVO": "S", "CLIENTE": "S",
                "FORNECEDOR": "N", "DTCAD": now, "DTALTER": now,
            }
            return code

    def edit_partner(self, code: int, **fields: Any) -> None:
        """A person edits a partner in Sankhya (DTALTER moves)."""
        with self.lock:
            self.partners[code].update(fields, DTALTER=fields.get("DTALTER") or sao_paulo_now())

    def record_counter_sale(self, *, partner: int, items: list[tuple[int, str, str]], payment_type: int = 3,
                            operation: int = 3300) -> int:
        """A counter sale (NFC-e) made in Sankhya's point of sale: paid on the spot."""
        with self.lock:
            now = sao_paulo_now()
            rows = [{"CODPROD": p, "QTDNEG": Decimal(q), "VLRUNIT": Decimal(u),
                     "VLRTOT": (Decimal(q) * Decimal(u)).quantize(Decimal("0.01")), "CODVOL": "UN"}
                    for p, q, u in items]
            nunota = self.note_ids.next()
            total = sum((r["VLRTOT"] for r in rows), Decimal("0"))
            self.notes[nunota] = {
                "NUNOTA": nunota, "NUMNOTA": self._next_number(operation), "CODEMP": 1, "CODPARC": partner,
                "CODTIPOPER": operation, "CODTIPVENDA": 1, "CODNAT": 101, "CODVEND": 0, "TIPMOV": "V", "DTNEG": now,
                "OBSERVACAO": None, "STATUSNOTA": "L", "STATUSNFE": "A", "STATUSNFSE": None, "CHAVENFE": None,
                "NUMNFSE": None, "NULOTENFSE": None, "VLRNOTA": total, "DTALTER": now,
            }
            for seq, row in enumerate(rows, start=1):
                self.items[(nunota, seq)] = {"NUNOTA": nunota, "SEQUENCIA": seq, **row}
            self._store_financial(self.notes[nunota], {"CODTIPTIT": payment_type, "DTVENC": now, "VLRDESDOB": total},
                                  1, provisional=False, paid=True)
            return nunota

    def partners_with_tax_id(self, tax_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.partners.values() if _tax_digits(p.get("CGC_CPF") or "") == _tax_digits(tax_id)]

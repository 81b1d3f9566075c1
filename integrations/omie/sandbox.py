"""A fake of Omie's API v1, faithful where TecPet depends on it.

What it reproduces (see /work/shared/erp/omie.md):
- JSON-RPC over POST: `{"call", "app_key", "app_secret", "param": [ {...} ]}` to per-area URLs
  under /api/v1/; answers are the call's result or a fault `{"faultstring": "ERROR: ...",
  "faultcode": ...}` on HTTP 500.
- Limits, all counted in `over_limit` when exceeded: 240 requests/min and 4 in flight per
  app key + method (HTTP 429), 960 requests/min per IP (HTTP 429); the same call with the same
  params again within 60 s is refused ("Consumo redundante", SOAP-ENV:Client-6); repeating a
  call that failed gets the app key blocked (MISUSE_API_PROCESS, "Tente novamente em N
  segundos"); every repeat of an already-failed call counts as over the limit.
- `lost_response_rate`: the call is processed but the caller gets a 504, as when a timeout
  cuts the answer; its repeat within the minute is then refused as redundant, as Omie does.
- Customers (UpsertCliente keyed by codigo_cliente_integracao, lotes of at most 50, duplicate
  CPF/CNPJ refused with the existing Id), service orders (IncluirOS, FaturarOS, StatusOS with
  the city hall answering a moment later), receivables and their baixas, counter sales
  (cupons) and webhooks with Omie's envelope.
- Empty pages answer fault 5113. Injected server errors answer either a SOAP-ENV:Server fault
  on HTTP 500 or a bare 503, as Omie's gateway does.

Control endpoints beyond the kit's: POST /__sandbox__/webhooks {"url"} (where events go, pinged
first), POST /__sandbox__/cupons (a counter sale rung up in Omie's POS).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
import urllib.request
import uuid
from collections import defaultdict, deque
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable
from zoneinfo import ZoneInfo

from validate_docbr import CNPJ, CPF
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..sandbox_kit import IdSequence, SandboxApp
from . import mapping as m

DEMO_CREDENTIALS: dict[str, str] = {"app_key": "3815264957013", "app_secret": "e4b1c9d27f3a4c6b8d0e2f5a7c9b1d3e"}

# Per-company codes support fetches from Omie at setup (ListarCategorias, ListarContasCorrentes,
# ListarCadastroServico); these are the ones this sandbox's company has.
DEMO_SETTINGS: dict[str, str] = {"category_code": "1.01.02", "bank_account_id": "2874310",
                                 "service_code_municipal": "05.01", "service_code_lc116": "05.01"}
DEMO_COMPANY = {"codigo_empresa": 1, "razao_social": "Clinica Veterinaria Sandbox Ltda",
                "nome_fantasia": "Clinica Sandbox", "cnpj": "11.222.333/0001-81"}
CATEGORIES = {"1.01.01", "1.01.02", "1.01.03"}
BANK_ACCOUNTS = {2874310, 2874311}
AUTHORIZED_SERVICE_CODES = {"05.01", "5.01", "05.08", "5.08"}
UFS = {"AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR",
       "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO"}
CUSTOMER_FIELDS = ("codigo_cliente_integracao", "razao_social", "nome_fantasia", "cnpj_cpf", "email",
                   "telefone1_ddd", "telefone1_numero", "endereco", "endereco_numero", "complemento", "bairro",
                   "cidade", "cidade_ibge", "estado", "cep", "codigo_pais", "inscricao_estadual", "contribuinte",
                   "optante_simples_nacional", "inativo", "observacao")
WRITE_PREFIXES = ("Incluir", "Alterar", "Upsert", "Associar", "Excluir", "Faturar", "Lancar")
VALIDATION = "SOAP-ENV:Client-102"
AUTH = "SOAP-ENV:Client-101"


class OmieFault(Exception):
    """A fault as Omie sends it; raised by call handlers."""

    def __init__(self, text: str, code: str = VALIDATION):
        super().__init__(text)
        self.text = text
        self.code = code


def empty_page(page: int) -> OmieFault:
    return OmieFault(f"Não existem registros para a página [{page}]!", "SOAP-ENV:Client-5113")


def fingerprint(call: str, param: Any) -> str:
    return hashlib.sha256((call + json.dumps(param, sort_keys=True, default=str)).encode()).hexdigest()


def parse_day(text: Any) -> date | None:
    return m.parse_omie_date(str(text or ""))


def paginate(rows: list[dict], params: dict, *, page_key: str, size_key: str, keys: tuple[str, str, str, str],
             list_key: str, cap: int, default_size: int = 50) -> dict[str, Any]:
    """Omie's paging; an empty or past-the-end page is fault 5113."""
    page = max(1, int(params.get(page_key) or 1))
    size = max(1, min(int(params.get(size_key) or default_size), cap))
    total_pages = math.ceil(len(rows) / size)
    if page > total_pages:
        raise empty_page(page)
    chunk = rows[(page - 1) * size: page * size]
    page_out, pages_out, count_out, total_out = keys
    return {page_out: page, pages_out: total_pages, count_out: len(chunk), total_out: len(rows), list_key: chunk}


LIST_KEYS = ("pagina", "total_de_paginas", "registros", "total_de_registros")
N_LIST_KEYS = ("nPagina", "nTotPaginas", "nRegistros", "nTotRegistros")


class Sandbox(SandboxApp):
    name = "omie"
    default_rate_limit = [(240, 60.0)]                  # per app key + method
    rules = [Rule(f"/api/v1/{area}", endpoint="api", defaults={"area": area}, methods=["POST"])
             for area in (m.AREA_COMPANIES, m.AREA_CUSTOMERS, m.AREA_SERVICE_ORDERS, m.AREA_SERVICE_BILLING,
                          m.AREA_RECEIVABLES, m.AREA_POS_SALES)] + [
        Rule("/__sandbox__/webhooks", endpoint="_webhooks", methods=["POST"]),
        Rule("/__sandbox__/cupons", endpoint="_cupons", methods=["POST"]),
    ]

    CALLS: dict[tuple[str, str], str] = {
        (m.AREA_COMPANIES, "ListarEmpresas"): "list_companies",
        (m.AREA_CUSTOMERS, "IncluirCliente"): "insert_customer",
        (m.AREA_CUSTOMERS, "AlterarCliente"): "alter_customer",
        (m.AREA_CUSTOMERS, "UpsertCliente"): "upsert_customer",
        (m.AREA_CUSTOMERS, "UpsertClientesPorLote"): "upsert_customer_lote",
        (m.AREA_CUSTOMERS, "ConsultarCliente"): "get_customer",
        (m.AREA_CUSTOMERS, "ListarClientes"): "list_customers",
        (m.AREA_CUSTOMERS, "ListarClientesResumido"): "list_customers_short",
        (m.AREA_CUSTOMERS, "AssociarCodIntCliente"): "associate_customer_code",
        (m.AREA_CUSTOMERS, "ExcluirCliente"): "delete_customer",
        (m.AREA_SERVICE_ORDERS, "IncluirOS"): "insert_service_order",
        (m.AREA_SERVICE_ORDERS, "ConsultarOS"): "get_service_order",
        (m.AREA_SERVICE_ORDERS, "StatusOS"): "service_order_status",
        (m.AREA_SERVICE_BILLING, "FaturarOS"): "bill_service_order",
        (m.AREA_RECEIVABLES, "IncluirContaReceber"): "insert_receivable",
        (m.AREA_RECEIVABLES, "ConsultarContaReceber"): "get_receivable",
        (m.AREA_RECEIVABLES, "ListarContasReceber"): "list_receivables",
        (m.AREA_RECEIVABLES, "LancarRecebimento"): "settle_receivable",
        (m.AREA_POS_SALES, "CuponsFiscais"): "list_pos_sales",
    }

    def __init__(self, *, ip_rate_limit: list[tuple[int, float]] | None = None, misuse_threshold: int = 3,
                 misuse_window: float = 600.0, misuse_block_seconds: float = 1678.0, redundancy_seconds: float = 60.0,
                 nfse_seconds: float = 1.0, page_cap: int = 500, block_duplicate_tax_id: bool = True,
                 authorized_service_codes: set[str] | None = None, timezone: str = "America/Sao_Paulo",
                 lost_response_rate: float = 0.0, **faults: Any):
        self.ip_rate_limit = [tuple(x) for x in (ip_rate_limit or [(960, 60.0)])]
        self.misuse_threshold = misuse_threshold
        self.misuse_window = misuse_window
        self.misuse_block_seconds = misuse_block_seconds
        self.redundancy_seconds = redundancy_seconds
        self.nfse_seconds = nfse_seconds
        self.page_cap = page_cap
        self.block_duplicate_tax_id = block_duplicate_tax_id
        self.authorized_service_codes = set(authorized_service_codes or AUTHORIZED_SERVICE_CODES)
        self.tz = ZoneInfo(timezone)
        self.lost_response_rate = lost_response_rate     # processed, but the answer never reaches the caller
        faults.setdefault("max_concurrency", 4)          # per app key + method
        super().__init__(**faults)

    # ------------------------------------------------------------------ state
    def reset_data(self) -> None:
        self.apps: dict[str, str] = {DEMO_CREDENTIALS["app_key"]: DEMO_CREDENTIALS["app_secret"]}
        self.ids = IdSequence(start=2_000_000)
        self.numbers = IdSequence(start=0)
        self.customers: dict[int, dict] = {}
        self.customer_by_code: dict[str, int] = {}
        self.customer_by_tax: dict[str, int] = {}
        self.orders: dict[int, dict] = {}
        self.receivables: dict[int, dict] = {}
        self.cupons: dict[int, dict] = {}
        self.recent: dict[tuple[str, str], float] = {}
        self.failures: dict[tuple[str, str], deque] = defaultdict(deque)
        self.blocked: dict[str, float] = {}
        self.ip_arrivals: dict[tuple[str, int, float], deque] = defaultdict(deque)
        self.by_call: dict[str, int] = defaultdict(int)
        self.webhook_url = ""
        self.webhooks_sent = 0
        self.pending_events: list[tuple[str, dict]] = []

    def state(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"apps": dict(self.apps), "customers": [dict(c) for c in self.customers.values()],
                "service_orders": [self.order_view(o) for o in self.orders.values()],
                "receivables": [self.receivable_view(r) for r in self.receivables.values()],
                "cupons": list(self.cupons.values()),
                "blocked": {k: round(v - now) for k, v in self.blocked.items() if v > now}}

    def stats(self) -> dict[str, Any]:
        data = super().stats()
        with self.lock:
            data.update(by_call=dict(self.by_call), webhooks_sent=self.webhooks_sent)
        return data

    def now(self) -> datetime:
        """Omie stamps records in Brasília time, to the second."""
        return datetime.now(self.tz).replace(tzinfo=None, microsecond=0)

    def info_created(self) -> dict[str, str]:
        now = self.now()
        return {"dInc": m.omie_date(now), "hInc": m.omie_time(now), "uInc": "API", "dAlt": "", "hAlt": "",
                "uAlt": "", "cImpAPI": "S"}

    def info_changed(self, info: dict[str, str]) -> dict[str, str]:
        now = self.now()
        return {**info, "dAlt": m.omie_date(now), "hAlt": m.omie_time(now), "uAlt": "API"}

    # ------------------------------------------------------------------ the kit's hooks
    def account_of(self, request: Request) -> str:
        """Omie counts limits per app key and per method."""
        envelope = self.body(request)
        if not isinstance(envelope, dict):
            return "invalid"
        return f"{envelope.get('app_key')}|{envelope.get('call')}"

    def throttled_response(self, request: Request, retry_after: float) -> Response:
        return self.json({"faultstring": "Too many requests", "faultcode": "429"}, 429,
                         headers={"Retry-After": f"{math.ceil(retry_after)}"})

    def server_error_response(self, request: Request) -> Response:
        if self.rng.random() < 0.5:
            return self.fault(OmieFault("Erro interno no processamento da requisição. Tente novamente.",
                                        "SOAP-ENV:Server"))
        return Response("<html><body>503 Service Temporarily Unavailable</body></html>", status=503,
                        content_type="text/html")

    def rejected_response(self, request: Request) -> Response:
        """The kit's injected refusal, in Omie's fault shape; Omie reads are POSTs too, so only
        writes are refused and reads are answered as usual."""
        envelope = self.body(request)
        call = str(envelope.get("call") or "") if isinstance(envelope, dict) else ""
        if not call.startswith(WRITE_PREFIXES):
            _, args = self.url_map.bind_to_environ(request.environ).match()
            return self.api(request, **args)
        with self.lock:
            self.by_call[call] += 1
        return self.fault(OmieFault("Registro recusado pela validação: a tag [razao_social] contém caracteres "
                                    "não permitidos (falha injetada)."))

    @staticmethod
    def fault(fault: OmieFault) -> Response:
        return SandboxApp.json({"faultstring": f"ERROR: {fault.text}", "faultcode": fault.code}, 500)

    # ------------------------------------------------------------------ the API
    def api(self, request: Request, area: str) -> Response:
        envelope = self.body(request)
        if not isinstance(envelope, dict):
            return self.fault(OmieFault("Invalid JSON Object", "SOAP-ENV:Client-1"))
        call, app_key = str(envelope.get("call") or ""), str(envelope.get("app_key") or "")
        param = envelope.get("param")
        with self.lock:
            self.by_call[call] += 1
            refusal = self.refusal(request, app_key)
            if refusal is not None:
                return refusal
            fp = fingerprint(call, param)
            try:
                handler = self.resolve(area, call, app_key, envelope.get("app_secret"), param)
                if self.redundant(app_key, fp):
                    self.over_limit += 1
                    wait = math.ceil(self.redundancy_seconds - (time.monotonic() - self.recent[(app_key, fp)]))
                    return self.fault(OmieFault(f"Consumo redundante detectado. Aguarde {wait} segundos para "
                                                f"executar novamente esta requisição.", "SOAP-ENV:Client-6"))
                result = self.transaction(lambda: handler(param[0]))
            except OmieFault as fault:
                self.pending_events.clear()
                if fault.code.endswith("-5113"):
                    self.recent[(app_key, fp)] = time.monotonic()
                    return self.fault(fault)
                return self.failed(app_key, fp, fault)
            self.recent[(app_key, fp)] = time.monotonic()
            self.flush_events(app_key)
            if self.lost_response_rate and self.rng.random() < self.lost_response_rate:
                return Response("<html><body>504 Gateway Time-out</body></html>", status=504, content_type="text/html")
            return self.json(result)

    def resolve(self, area: str, call: str, app_key: str, app_secret: Any, param: Any) -> Callable[[dict], dict]:
        if not self.authenticated(app_key, app_secret):
            raise OmieFault("A chave de acesso não é válida. Verifique o App Key e o App Secret informados!", AUTH)
        name = self.CALLS.get((area, call))
        if name is None:
            raise OmieFault(f"O método [{call}] não existe no serviço [{area}]!", "SOAP-ENV:Client-103")
        if not (isinstance(param, list) and len(param) == 1 and isinstance(param[0], dict)):
            raise OmieFault("A tag [param] deve conter exatamente um objeto!")
        return getattr(self, name)

    def authenticated(self, app_key: str, app_secret: Any) -> bool:
        """Keys have no expiry; `expire_tokens` plays the owner regenerating the app secret."""
        if app_key not in self.apps or self.apps[app_key] != app_secret:
            return False
        if self.faults.expire_tokens:
            self.faults.expire_tokens = False
            self.apps[app_key] = secrets.token_hex(16)
            return False
        return True

    def refusal(self, request: Request, app_key: str) -> Response | None:
        """The per-IP budget and the misuse block, checked before anything else."""
        now = time.monotonic()
        wait = self.ip_wait(request.remote_addr or "?", now)
        if wait > 0:
            self.over_limit += 1
            return self.throttled_response(request, max(wait, 1.0))
        until = self.blocked.get(app_key, 0.0)
        if until > now:
            self.over_limit += 1
            return self.fault(OmieFault(f"API bloqueada por consumo indevido. Tente novamente em "
                                        f"{math.ceil(until - now)} segundos.", "MISUSE_API_PROCESS"))
        return None

    def ip_wait(self, ip: str, now: float) -> float:
        wait = 0.0
        for count, seconds in self.ip_rate_limit:
            arrivals = self.ip_arrivals[(ip, count, seconds)]
            while arrivals and arrivals[0] <= now - seconds:
                arrivals.popleft()
            if len(arrivals) >= count:
                wait = max(wait, arrivals[0] + seconds - now)
        if wait <= 0:
            for count, seconds in self.ip_rate_limit:
                self.ip_arrivals[(ip, count, seconds)].append(now)
        return wait

    def redundant(self, app_key: str, fp: str) -> bool:
        seen = self.recent.get((app_key, fp))
        return seen is not None and time.monotonic() - seen < self.redundancy_seconds

    def failed(self, app_key: str, fp: str, fault: OmieFault) -> Response:
        """Remember failures: repeating one is misuse, and enough repeats block the app key."""
        now = time.monotonic()
        history = self.failures[(app_key, fp)]
        while history and history[0] <= now - self.misuse_window:
            history.popleft()
        if history:
            self.over_limit += 1
        history.append(now)
        if len(history) >= self.misuse_threshold:
            self.blocked[app_key] = now + self.misuse_block_seconds
        return self.fault(fault)

    def transaction(self, work: Callable[[], dict]) -> dict:
        """All or nothing, as a lote is: undo every stored change when the call faults."""
        saved = (dict(self.customers), dict(self.customer_by_code), dict(self.customer_by_tax),
                 dict(self.orders), dict(self.receivables))
        try:
            return work()
        except OmieFault:
            (self.customers, self.customer_by_code, self.customer_by_tax, self.orders, self.receivables) = saved
            raise

    # ------------------------------------------------------------------ webhooks
    def emit(self, topic: str, event: dict) -> None:
        """Queued until the call succeeds: a faulted call (a refused lote) notifies nothing."""
        self.pending_events.append((topic, json.loads(json.dumps(event, default=str))))

    def flush_events(self, app_key: str) -> None:
        events, self.pending_events = self.pending_events, []
        for topic, event in events:
            self.deliver({"messageId": str(uuid.uuid4()), "topic": topic, "event": event,
                          "author": {"email": "api@omie.sandbox", "name": "API", "userId": 1},
                          "appKey": app_key, "appHash": f"sandbox-{app_key[-4:]}", "origin": "omie-sandbox"})

    def deliver(self, envelope: dict) -> None:
        if not self.webhook_url:
            return
        self.webhooks_sent += 1
        threading.Thread(target=post_json, args=(self.webhook_url, envelope), daemon=True).start()

    def _control(self, endpoint: str, request: Request) -> Response:
        if endpoint == "_webhooks":
            with self.lock:
                self.webhook_url = str((self.body(request) or {}).get("url") or "")
                if self.webhook_url:
                    self.deliver({"ping": "omie"})
            return self.json({"ok": True})
        if endpoint == "_cupons":
            with self.lock:
                return self.json(self.ring_up_sale(self.body(request) or {}))
        return super()._control(endpoint, request)

    # ------------------------------------------------------------------ companies
    def list_companies(self, params: dict) -> dict:
        return paginate([dict(DEMO_COMPANY)], params, page_key="pagina", size_key="registros_por_pagina",
                        keys=LIST_KEYS, list_key="empresas_cadastro", cap=self.page_cap)

    # ------------------------------------------------------------------ customers
    def insert_customer(self, params: dict) -> dict:
        return self.save_customer(params, mode="insert")

    def alter_customer(self, params: dict) -> dict:
        return self.save_customer(params, mode="update")

    def upsert_customer(self, params: dict) -> dict:
        return self.save_customer(params, mode="upsert")

    def upsert_customer_lote(self, params: dict) -> dict:
        records = params.get("clientes_cadastro") or []
        lote = params.get("lote") or 0
        if not isinstance(records, list) or not records:
            raise OmieFault("A tag [clientes_cadastro] não foi informada!")
        if len(records) > m.LOTE_LIMIT:
            raise OmieFault(f"O lote [{lote}] excede o limite de {m.LOTE_LIMIT} registros por requisição!")
        for record in records:
            try:
                self.save_customer(record, mode="upsert")
            except OmieFault as fault:
                code = record.get("codigo_cliente_integracao") or record.get("codigo_cliente_omie") or "?"
                raise OmieFault(f"Lote [{lote}] rejeitado. Cliente [{code}]: {fault.text}", fault.code) from None
        return {"lote": lote, "codigo_status": "0", "descricao_status": "Lote processado com sucesso!"}

    def save_customer(self, params: dict, *, mode: str) -> dict:
        existing_id = self.locate_customer(params, mode)
        merged = dict(self.customers.get(existing_id) or {})
        merged.update({k: params[k] for k in CUSTOMER_FIELDS if k in params})
        self.validate_customer(merged, existing_id)
        saved = self.store_customer(existing_id, merged)
        verb = "alterado" if existing_id else "cadastrado"
        return {"codigo_cliente_omie": saved["codigo_cliente_omie"],
                "codigo_cliente_integracao": saved.get("codigo_cliente_integracao", ""),
                "codigo_status": "0", "descricao_status": f"Cliente {verb} com sucesso."}

    def locate_customer(self, params: dict, mode: str) -> int | None:
        omie_id = params.get("codigo_cliente_omie")
        code = str(params.get("codigo_cliente_integracao") or "")
        if omie_id:
            if int(omie_id) not in self.customers:
                raise OmieFault(f"Cliente não cadastrado para o Código [{omie_id}]!")
            found = int(omie_id)
            stored = self.customers[found].get("codigo_cliente_integracao") or ""
            if code and stored and stored != code:
                raise OmieFault(f"O Código de Integração [{code}] diverge do informado no cliente [{found}]!")
            return found
        found = self.customer_by_code.get(code) if code else None
        if mode == "insert" and found:
            raise OmieFault(f"Cliente já cadastrado para o Código de Integração [{code}] com o nCod [{found}]!")
        if mode == "update" and not found:
            raise OmieFault(f"Cliente não cadastrado para o Código de Integração [{code}]!")
        return found

    def validate_customer(self, record: dict, existing_id: int | None) -> None:
        if not str(record.get("razao_social") or "").strip():
            raise OmieFault("A tag [razao_social] não foi informada!")
        tax = m.tax_id_key(record.get("cnpj_cpf"))
        if tax and not valid_tax_id(tax):
            raise OmieFault(f"O CNPJ/CPF [{record.get('cnpj_cpf')}] informado é inválido!")
        email = str(record.get("email") or "")
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise OmieFault(f"O e-mail [{email}] informado é inválido!")
        uf = str(record.get("estado") or "")
        if uf and uf.upper() not in UFS:
            raise OmieFault(f"A sigla do estado [{uf}] é inválida!")
        zip_code = re.sub(r"\D", "", str(record.get("cep") or ""))
        if record.get("cep") and len(zip_code) != 8:
            raise OmieFault(f"O CEP [{record.get('cep')}] informado é inválido!")
        other = self.customer_by_tax.get(tax) if tax else None
        if self.block_duplicate_tax_id and other and other != existing_id:
            raise OmieFault(f"Cliente já cadastrado para o CPF/CNPJ [{m.format_tax_id(tax)}] com o Id [{other}]!")

    def store_customer(self, existing_id: int | None, record: dict) -> dict:
        tax = m.tax_id_key(record.get("cnpj_cpf"))
        record["cnpj_cpf"] = m.format_tax_id(tax) if tax else ""
        record["pessoa_fisica"] = "S" if len(tax) == 11 else "N"
        record.setdefault("inativo", "N")
        if existing_id:
            old = self.customers[existing_id]
            self.forget_customer_keys(old)
            record["info"] = self.info_changed(old.get("info") or {})
            topic = "ClienteFornecedor.Alterado"
        else:
            existing_id = self.ids.next()
            record["info"] = self.info_created()
            topic = "ClienteFornecedor.Incluido"
        record["codigo_cliente_omie"] = existing_id
        self.customers[existing_id] = record
        if record.get("codigo_cliente_integracao"):
            self.customer_by_code[record["codigo_cliente_integracao"]] = existing_id
        if tax:
            self.customer_by_tax[tax] = existing_id
        self.emit(topic, record)
        return record

    def forget_customer_keys(self, record: dict) -> None:
        code = record.get("codigo_cliente_integracao")
        if code and self.customer_by_code.get(code) == record["codigo_cliente_omie"]:
            del self.customer_by_code[code]
        tax = m.tax_id_key(record.get("cnpj_cpf"))
        if tax and self.customer_by_tax.get(tax) == record["codigo_cliente_omie"]:
            del self.customer_by_tax[tax]

    def find_customer(self, params: dict) -> dict:
        omie_id = params.get("codigo_cliente_omie")
        code = params.get("codigo_cliente_integracao")
        found = int(omie_id) if omie_id else self.customer_by_code.get(str(code or ""))
        if not found or found not in self.customers:
            raise OmieFault(f"Cliente não cadastrado para o Código [{omie_id or code}]!")
        return self.customers[found]

    def get_customer(self, params: dict) -> dict:
        return dict(self.find_customer(params))

    def associate_customer_code(self, params: dict) -> dict:
        record = self.find_customer({"codigo_cliente_omie": params.get("codigo_cliente_omie")})
        code = str(params.get("codigo_cliente_integracao") or "")
        holder = self.customer_by_code.get(code)
        if not code:
            raise OmieFault("A tag [codigo_cliente_integracao] não foi informada!")
        if holder and holder != record["codigo_cliente_omie"]:
            raise OmieFault(f"Cliente já cadastrado para o Código de Integração [{code}] com o nCod [{holder}]!")
        self.store_customer(record["codigo_cliente_omie"], {**record, "codigo_cliente_integracao": code})
        return {"codigo_cliente_omie": record["codigo_cliente_omie"], "codigo_cliente_integracao": code,
                "codigo_status": "0", "descricao_status": "Código de integração associado com sucesso."}

    def delete_customer(self, params: dict) -> dict:
        record = self.find_customer(params)
        self.forget_customer_keys(record)
        del self.customers[record["codigo_cliente_omie"]]
        self.emit("ClienteFornecedor.Excluido", record)
        return {"codigo_cliente_omie": record["codigo_cliente_omie"], "codigo_status": "0",
                "descricao_status": "Cliente excluído com sucesso."}

    def list_customers(self, params: dict) -> dict:
        rows = [dict(c) for c in self.filter_customers(params)]
        return paginate(rows, params, page_key="pagina", size_key="registros_por_pagina", keys=LIST_KEYS,
                        list_key="clientes_cadastro", cap=self.page_cap)

    def list_customers_short(self, params: dict) -> dict:
        rows = [{"codigo_cliente": c["codigo_cliente_omie"], "codigo_cliente_integracao": c.get("codigo_cliente_integracao", ""),
                 "razao_social": c.get("razao_social", ""), "nome_fantasia": c.get("nome_fantasia", ""),
                 "cnpj_cpf": c.get("cnpj_cpf", "")} for c in self.filter_customers(params)]
        return paginate(rows, params, page_key="pagina", size_key="registros_por_pagina", keys=LIST_KEYS,
                        list_key="clientes_cadastro_resumido", cap=self.page_cap)

    def filter_customers(self, params: dict) -> list[dict]:
        rows = sorted(self.customers.values(), key=lambda c: c["codigo_cliente_omie"])
        rows = [c for c in rows if customer_matches(c, params.get("clientesFiltro") or {})]
        wanted = params.get("clientesPorCodigo") or []
        if wanted:
            ids = {int(w["codigo_cliente_omie"]) for w in wanted if w.get("codigo_cliente_omie")}
            codes = {str(w["codigo_cliente_integracao"]) for w in wanted if w.get("codigo_cliente_integracao")}
            rows = [c for c in rows if c["codigo_cliente_omie"] in ids or c.get("codigo_cliente_integracao") in codes]
        if params.get("apenas_importado_api") == "S":
            rows = [c for c in rows if (c.get("info") or {}).get("cImpAPI") == "S"]
        return [c for c in rows if changed_within(c.get("info") or {}, params)]

    # ------------------------------------------------------------------ service orders
    def insert_service_order(self, params: dict) -> dict:
        head = dict(params.get("Cabecalho") or {})
        extra = dict(params.get("InformacoesAdicionais") or {})
        services = [dict(s) for s in params.get("ServicosPrestados") or []]
        parcels = [dict(p) for p in params.get("Parcelas") or []]
        code = str(head.get("cCodIntOS") or "")
        clash = next((o for o in self.orders.values() if code and o["cCodIntOS"] == code), None)
        if clash:
            raise OmieFault(f"Ordem de Serviço já cadastrada para o Código de Integração [{code}] com o nCod [{clash['nCodOS']}]!")
        customer = self.order_customer(head)
        self.validate_order(head, extra, services, parcels)
        order_id = self.ids.next()
        order = {"nCodOS": order_id, "cNumOS": f"{self.numbers.next():06d}", "cCodIntOS": code,
                 "nCodCli": customer["codigo_cliente_omie"], "Cabecalho": head, "InformacoesAdicionais": extra,
                 "ServicosPrestados": services, "Parcelas": parcels, "nValorTotal": float(order_total(services)),
                 "cEtapa": str(head.get("cEtapa") or "10"), "cFaturada": "N", "cCancelada": "N", "dDtFat": "",
                 "cHrFat": "", "rps": [], "info": self.info_created()}
        self.orders[order_id] = order
        self.emit("OrdemServico.Incluida", self.order_view(order))
        return {"cCodIntOS": code, "nCodOS": order_id, "cNumOS": order["cNumOS"], "cCodStatus": "0",
                "cDescStatus": "Ordem de Serviço cadastrada com sucesso!"}

    def order_customer(self, head: dict) -> dict:
        if head.get("nCodCli"):
            found = self.customers.get(int(head["nCodCli"]))
        else:
            found = self.customers.get(self.customer_by_code.get(str(head.get("cCodIntCli") or ""), 0))
        if not found:
            raise OmieFault(f"Cliente [{head.get('nCodCli') or head.get('cCodIntCli')}] não cadastrado!")
        return found

    def validate_order(self, head: dict, extra: dict, services: list[dict], parcels: list[dict]) -> None:
        if not head.get("cCodParc"):
            raise OmieFault("A tag [cCodParc] não foi informada!")
        if str(head.get("cEtapa") or "10") not in {"10", "20", "30", "40", "50"}:
            raise OmieFault(f"A etapa [{head.get('cEtapa')}] da Ordem de Serviço é inválida!")
        self.validate_category(extra.get("cCodCateg"), "cCodCateg")
        self.validate_account(extra.get("nCodCC"), "nCodCC")
        if not services:
            raise OmieFault("A tag [ServicosPrestados] não foi informada!")
        for n, service in enumerate(services, start=1):
            validate_service(n, service)
        if str(head.get("cCodParc")) == m.MANUAL_INSTALLMENTS:
            validate_parcels(head, parcels, order_total(services))

    def validate_category(self, code: Any, tag: str) -> None:
        if not code:
            raise OmieFault(f"A tag [{tag}] não foi informada!")
        if code not in CATEGORIES:
            raise OmieFault(f"A categoria [{code}] não está cadastrada!")

    def validate_account(self, account: Any, tag: str, required: bool = True) -> None:
        if not account:
            if required:
                raise OmieFault(f"A tag [{tag}] não foi informada!")
            return
        if int(account) not in BANK_ACCOUNTS:
            raise OmieFault(f"A conta corrente [{account}] não está cadastrada!")

    def find_order(self, params: dict) -> dict:
        order_id, code = params.get("nCodOS"), str(params.get("cCodIntOS") or "")
        found = self.orders.get(int(order_id)) if order_id else next(
            (o for o in self.orders.values() if code and o["cCodIntOS"] == code), None)
        if not found:
            raise OmieFault(f"Ordem de Serviço não cadastrada para o Código [{order_id or code}]!")
        return found

    def get_service_order(self, params: dict) -> dict:
        order = self.find_order(params)
        return {"Cabecalho": {**order["Cabecalho"], "nCodOS": order["nCodOS"], "cNumOS": order["cNumOS"],
                              "nValorTotal": order["nValorTotal"], "cEtapa": order["cEtapa"]},
                "InformacoesAdicionais": order["InformacoesAdicionais"],
                "ServicosPrestados": order["ServicosPrestados"], "Parcelas": order["Parcelas"],
                "InfoCadastro": {"cFaturada": order["cFaturada"], "cCancelada": order["cCancelada"],
                                 "dDtInc": order["info"]["dInc"], "cHrInc": order["info"]["hInc"],
                                 "dDtFat": order["dDtFat"], "cHrFat": order["cHrFat"]}}

    def service_order_status(self, params: dict) -> dict:
        order = self.find_order(params)
        self.advance_city_hall(order)
        show_messages = bool(params.get("lMsg"))
        rps_list = [{k: v for k, v in rps.items() if k != "sent_at" and (show_messages or k != "mensagens")}
                    for rps in order["rps"]]
        return {"cCodIntOS": order["cCodIntOS"], "nCodOS": order["nCodOS"], "cNumOS": order["cNumOS"],
                "cEtapa": order["cEtapa"], "cFaturada": order["cFaturada"], "cCancelada": order["cCancelada"],
                "cAmbiente": "H", "dDtFat": order["dDtFat"], "cHrFat": order["cHrFat"],
                "nValorTot": order["nValorTotal"], "ListaRpsNfse": rps_list}

    def bill_service_order(self, params: dict) -> dict:
        """FaturarOS: bills the OS, sends the RPS to the city hall and, unless the items say
        cNaoGerarFinanceiro "S", creates receivables from the parcelas."""
        order = self.find_order(params)
        if order["cFaturada"] == "S":
            raise OmieFault(f"A Ordem de Serviço [{order['cNumOS']}] já foi faturada!")
        now = self.now()
        order.update(cFaturada="S", cEtapa="60", dDtFat=m.omie_date(now), cHrFat=m.omie_time(now),
                     info=self.info_changed(order["info"]))
        number = self.numbers.next()
        order["rps"].append({"nLote": number, "cStatusLote": "002", "nRps": str(number), "cStatusRps": "002",
                             "nNfse": "", "cCodVerif": "", "cUrlNfse": "", "mensagens": [],
                             "sent_at": time.monotonic()})
        if any(s.get("cNaoGerarFinanceiro") != "S" for s in order["ServicosPrestados"]):
            self.receivables_from_billing(order)
        self.emit("OrdemServico.Faturada", self.order_view(order))
        return {"cCodIntOS": order["cCodIntOS"], "nCodOS": order["nCodOS"], "cCodStatus": "0",
                "cDescStatus": "Ordem de Serviço faturada com sucesso!"}

    def receivables_from_billing(self, order: dict) -> None:
        for parcel in order["Parcelas"]:
            self.store_receivable({"codigo_cliente_fornecedor": order["nCodCli"],
                                   "data_vencimento": parcel.get("dDtVenc"), "valor_documento": parcel.get("nValor"),
                                   "codigo_categoria": order["InformacoesAdicionais"].get("cCodCateg"),
                                   "id_conta_corrente": order["InformacoesAdicionais"].get("nCodCC"),
                                   "numero_documento": order["cNumOS"], "nCodOS": order["nCodOS"],
                                   "numero_parcela": f"{parcel.get('nParcela', 1):03d}/{len(order['Parcelas']):03d}",
                                   "id_origem": "VENR"})

    def advance_city_hall(self, order: dict) -> None:
        """The city hall answers `nfse_seconds` after the RPS was sent."""
        for rps in order["rps"]:
            if rps["cStatusRps"] != "002" or time.monotonic() - rps["sent_at"] < self.nfse_seconds:
                continue
            refused = [s for s in order["ServicosPrestados"]
                       if (s.get("cCodServMun") or s.get("cCodServLC116")) not in self.authorized_service_codes]
            if refused:
                code = refused[0].get("cCodServMun") or refused[0].get("cCodServLC116")
                rps.update(cStatusRps="003", cStatusLote="003", mensagens=[{
                    "cCodigo": "E160", "cSituacao": "ERRO",
                    "cDescricao": f"Item da lista de serviço [{code}] incompatível com o código de tributação "
                                  f"do prestador.",
                    "cCorrecao": "Informe o código de serviço municipal autorizado para a inscrição municipal do "
                                 "prestador e reenvie a NFS-e."}])
                continue
            number = self.numbers.next()
            rps.update(cStatusRps="004", cStatusLote="004", nNfse=str(number), cCodVerif=secrets.token_hex(4).upper(),
                       cUrlNfse=f"https://nfse.sandbox.invalid/{number}",
                       mensagens=[{"cCodigo": "A001", "cSituacao": "SUCESSO", "cDescricao": "NFS-e autorizada."}])
            self.emit("NFSe.NotaAutorizada", {"nCodOS": order["nCodOS"], "nNumeroNFSe": rps["nNfse"]})

    def order_view(self, order: dict) -> dict:
        return {k: v for k, v in order.items() if k != "rps"} | {
            "rps": [{k: v for k, v in r.items() if k != "sent_at"} for r in order["rps"]]}

    # ------------------------------------------------------------------ receivables
    def insert_receivable(self, params: dict) -> dict:
        code = str(params.get("codigo_lancamento_integracao") or "")
        clash = next((r for r in self.receivables.values() if code and r.get("codigo_lancamento_integracao") == code), None)
        if clash:
            raise OmieFault(f"Lançamento já cadastrado para o Código de Integração [{code}] com o nCod "
                            f"[{clash['codigo_lancamento_omie']}]!")
        customer_id = params.get("codigo_cliente_fornecedor") or self.customer_by_code.get(
            str(params.get("codigo_cliente_fornecedor_integracao") or ""))
        if not customer_id or int(customer_id) not in self.customers:
            raise OmieFault(f"Cliente [{customer_id}] não cadastrado!")
        if parse_day(params.get("data_vencimento")) is None:
            raise OmieFault("A tag [data_vencimento] não foi informada ou é inválida!")
        if Decimal(str(params.get("valor_documento") or 0)) <= 0:
            raise OmieFault("A tag [valor_documento] deve ser maior que zero!")
        self.validate_category(params.get("codigo_categoria"), "codigo_categoria")
        self.validate_account(params.get("id_conta_corrente"), "id_conta_corrente", required=False)
        if params.get("nCodOS") and int(params["nCodOS"]) not in self.orders:
            raise OmieFault(f"Ordem de Serviço [{params['nCodOS']}] não cadastrada!")
        stored = self.store_receivable({**params, "codigo_cliente_fornecedor": int(customer_id), "id_origem": "APIR"})
        return {"codigo_lancamento_omie": stored["codigo_lancamento_omie"], "codigo_lancamento_integracao": code,
                "codigo_status": "0", "descricao_status": "Lançamento cadastrado com sucesso!"}

    def store_receivable(self, fields: dict) -> dict:
        receivable = {**fields, "codigo_lancamento_omie": self.ids.next(), "info": self.info_created(),
                      "baixas": [], "valor_recebido": 0.0}
        self.receivables[receivable["codigo_lancamento_omie"]] = receivable
        self.emit("Financas.ContaReceber.Incluido", self.receivable_view(receivable))
        return receivable

    def find_receivable(self, params: dict, id_key: str) -> dict:
        rid, code = params.get(id_key), str(params.get("codigo_lancamento_integracao") or "")
        found = self.receivables.get(int(rid)) if rid else next(
            (r for r in self.receivables.values() if code and r.get("codigo_lancamento_integracao") == code), None)
        if not found:
            raise OmieFault(f"Lançamento não cadastrado para o Código [{rid or code}]!")
        return found

    def get_receivable(self, params: dict) -> dict:
        return self.receivable_view(self.find_receivable(params, "codigo_lancamento_omie"))

    def receivable_view(self, receivable: dict) -> dict:
        view = {k: v for k, v in receivable.items() if k not in ("baixas", "valor_recebido")}
        view["status_titulo"] = self.title_status(receivable)
        return view

    def title_status(self, receivable: dict) -> str:
        if receivable.get("cancelado"):
            return "CANCELADO"
        if Decimal(str(receivable["valor_recebido"])) >= Decimal(str(receivable.get("valor_documento") or 0)):
            return "RECEBIDO"
        due, today = parse_day(receivable.get("data_vencimento")), self.now().date()
        return "ATRASADO" if due and due < today else "VENCE HOJE" if due == today else "A VENCER"

    def list_receivables(self, params: dict) -> dict:
        rows = [self.receivable_view(r) for r in sorted(self.receivables.values(), key=lambda r: r["codigo_lancamento_omie"])]
        status = str(params.get("filtrar_por_status") or "").replace(" ", "").upper()
        if status:
            rows = [r for r in rows if r["status_titulo"].replace(" ", "") == status]
        if params.get("filtrar_apenas_titulos_em_aberto") == "S":
            rows = [r for r in rows if r["status_titulo"] not in ("RECEBIDO", "CANCELADO")]
        if params.get("filtrar_cliente"):
            rows = [r for r in rows if r["codigo_cliente_fornecedor"] == int(params["filtrar_cliente"])]
        rows = [r for r in rows if changed_on_days(r.get("info") or {}, params.get("filtrar_por_data_de"),
                                                   params.get("filtrar_por_data_ate"))]
        return paginate(rows, params, page_key="pagina", size_key="registros_por_pagina", keys=LIST_KEYS,
                        list_key="conta_receber_cadastro", cap=self.page_cap)

    def settle_receivable(self, params: dict) -> dict:
        receivable = self.find_receivable(params, "codigo_lancamento")
        code = str(params.get("codigo_baixa_integracao") or "")
        clash = next((b for r in self.receivables.values() for b in r["baixas"] if code and b["codigo_baixa_integracao"] == code), None)
        if clash:
            raise OmieFault(f"Baixa já cadastrada para o Código de Integração [{code}] com o nCod [{clash['codigo_baixa']}]!")
        amount = Decimal(str(params.get("valor") or 0)).quantize(Decimal("0.01"))
        if amount <= 0:
            raise OmieFault("A tag [valor] deve ser maior que zero!")
        if parse_day(params.get("data")) is None:
            raise OmieFault("A tag [data] não foi informada ou é inválida!")
        self.validate_account(params.get("codigo_conta_corrente"), "codigo_conta_corrente", required=False)
        balance = Decimal(str(receivable.get("valor_documento") or 0)) - Decimal(str(receivable["valor_recebido"]))
        if balance <= 0:
            raise OmieFault(f"O lançamento [{receivable['codigo_lancamento_omie']}] já está liquidado!")
        if amount > balance:
            raise OmieFault(f"O valor da baixa [{amount}] é maior que o saldo do lançamento [{balance}]!")
        baixa = {"codigo_baixa": self.ids.next(), "codigo_baixa_integracao": code, "valor": float(amount),
                 "data": params.get("data")}
        updated = {**receivable, "baixas": receivable["baixas"] + [baixa],
                   "valor_recebido": float(Decimal(str(receivable["valor_recebido"])) + amount),
                   "info": self.info_changed(receivable["info"])}
        self.receivables[receivable["codigo_lancamento_omie"]] = updated
        liquidated = "S" if self.title_status(updated) == "RECEBIDO" else "N"
        self.emit("Financas.ContaReceber.BaixaRealizada", self.receivable_view(updated))
        return {"codigo_lancamento": updated["codigo_lancamento_omie"],
                "codigo_lancamento_integracao": updated.get("codigo_lancamento_integracao", ""),
                "codigo_baixa": baixa["codigo_baixa"], "codigo_baixa_integracao": code, "liquidado": liquidated,
                "valor_baixado": float(amount), "codigo_status": "0",
                "descricao_status": "Recebimento lançado com sucesso!"}

    # ------------------------------------------------------------------ counter sales
    def ring_up_sale(self, sale: dict) -> dict:
        """A sale made at Omie's POS (NFC-e); not an API call, the clinic's cashier did it."""
        if sale.get("cancel"):
            cupom = self.cupons[int(sale["cancel"])]
            now = self.now()
            cupom["cabecalhoCupom"]["info"].update(cCupomCancelado="S", dDtAlteracao=m.omie_date(now),
                                                    cHrAlteracao=m.omie_time(now))
            return cupom
        now, cupom_id = self.now(), self.ids.next()
        items = [{"idItem": n, "nSequencia": n, "xProd": i.get("xProd", "Item"), "nQuant": i.get("nQuant", 1),
                  "vUnit": i.get("vUnit", 0), "vItem": round(float(i.get("nQuant", 1)) * float(i.get("vUnit", 0)), 2),
                  "cItemCancelado": "N", "cItemDevolvido": "N"} for n, i in enumerate(sale.get("itens") or [], start=1)]
        total = round(sum(i["vItem"] for i in items), 2)
        payments = [{"nSequencia": n, "cTipoDoc": p.get("cTipoDoc", "DIN"), "nValorDocumento": p.get("nValorDocumento", total)}
                    for n, p in enumerate(sale.get("pagamentos") or [{"cTipoDoc": "DIN"}], start=1)]
        header = {"nIdCupom": cupom_id, "cModeloCupom": "65", "nNumCupom": self.numbers.next(), "nSerieCupom": "1",
                  "nValorCupom": total, "dDtEmissaoCupom": m.omie_date(now), "cHrEmisaoCupom": m.omie_time(now),
                  "idCliente": int(sale.get("idCliente") or 0),
                  "info": {"dDtInclusao": m.omie_date(now), "cHrInclusao": m.omie_time(now), "dDtAlteracao": "",
                           "cHrAlteracao": "", "cCupomCancelado": "N", "cCupomDevolvido": "N"}}
        self.cupons[cupom_id] = {"cabecalhoCupom": header, "itensCupom": items, "pagamentosCupom": payments}
        return self.cupons[cupom_id]

    def list_pos_sales(self, params: dict) -> dict:
        rows = []
        for cupom in sorted(self.cupons.values(), key=lambda c: c["cabecalhoCupom"]["nIdCupom"]):
            header, info = cupom["cabecalhoCupom"], cupom["cabecalhoCupom"]["info"]
            if (day_within(info.get("dDtInclusao"), params.get("dDtInclusaoDe"), params.get("dDtInclusaoAte"))
                    and day_within(info.get("dDtAlteracao"), params.get("dDtAlteracaoDe"), params.get("dDtAlteracaoAte"))
                    and day_within(header.get("dDtEmissaoCupom"), params.get("dDtEmissaoDe"), params.get("dDtEmissaoAte"))):
                rows.append(json.loads(json.dumps(cupom)))
        return paginate(rows, params, page_key="nPagina", size_key="nRegPorPagina", keys=N_LIST_KEYS,
                        list_key="cupons", cap=self.page_cap)


# ---------------------------------------------------------------------- helpers
def valid_tax_id(key: str) -> bool:
    if len(key) == 11:
        return key.isdigit() and CPF().validate(key)
    return len(key) == 14 and CNPJ().validate(key)


def customer_matches(record: dict, filters: dict) -> bool:
    if filters.get("codigo_cliente_omie") and int(filters["codigo_cliente_omie"]) != record["codigo_cliente_omie"]:
        return False
    if filters.get("codigo_cliente_integracao") and filters["codigo_cliente_integracao"] != record.get("codigo_cliente_integracao"):
        return False
    if filters.get("cnpj_cpf") and m.tax_id_key(filters["cnpj_cpf"]) != m.tax_id_key(record.get("cnpj_cpf")):
        return False
    if filters.get("razao_social") and str(filters["razao_social"]).casefold() not in str(record.get("razao_social")).casefold():
        return False
    if filters.get("email") and str(filters["email"]).casefold() != str(record.get("email") or "").casefold():
        return False
    return True


def changed_within(info: dict, params: dict) -> bool:
    """filtrar_por_data_de/hora_de .. data_ate/hora_ate against the inclusion or last change."""
    if params.get("filtrar_apenas_inclusao") == "S":
        stamp = m.parse_omie_stamp(info.get("dInc"), info.get("hInc"))
    elif params.get("filtrar_apenas_alteracao") == "S":
        stamp = m.parse_omie_stamp(info.get("dAlt"), info.get("hAlt"))
    else:
        stamp = m.parse_omie_stamp(info.get("dAlt"), info.get("hAlt")) or m.parse_omie_stamp(info.get("dInc"), info.get("hInc"))
    lower = m.parse_omie_stamp(params.get("filtrar_por_data_de"), params.get("filtrar_por_hora_de") or "00:00:00")
    upper = m.parse_omie_stamp(params.get("filtrar_por_data_ate"), params.get("filtrar_por_hora_ate") or "23:59:59")
    if (lower or upper) and stamp is None:
        return False
    return (lower is None or stamp >= lower) and (upper is None or stamp <= upper)


def changed_on_days(info: dict, first: Any, last: Any) -> bool:
    day = parse_day(info.get("dAlt")) or parse_day(info.get("dInc"))
    return day_within(m.omie_date(day) if day else "", first, last)


def day_within(value: Any, first: Any, last: Any) -> bool:
    lower, upper = parse_day(first), parse_day(last)
    if lower is None and upper is None:
        return True
    day = parse_day(value)
    return day is not None and (lower is None or day >= lower) and (upper is None or day <= upper)


def order_total(services: list[dict]) -> Decimal:
    return sum((Decimal(str(s.get("nQtde") or 0)) * Decimal(str(s.get("nValUnit") or 0)) for s in services),
               Decimal("0")).quantize(Decimal("0.01"))


def validate_service(n: int, service: dict) -> None:
    if not str(service.get("cDescServ") or "").strip():
        raise OmieFault(f"A tag [cDescServ] do item [{n}] não foi informada!")
    if Decimal(str(service.get("nQtde") or 0)) <= 0:
        raise OmieFault(f"A tag [nQtde] do item [{n}] deve ser maior que zero!")
    if Decimal(str(service.get("nValUnit") or 0)) <= 0:
        raise OmieFault(f"A tag [nValUnit] do item [{n}] deve ser maior que zero!")
    if not (service.get("cCodServMun") or service.get("cCodServLC116") or service.get("nCodServico")):
        raise OmieFault(f"Informe a tag [cCodServMun] ou [cCodServLC116] do item [{n}]!")


def validate_parcels(head: dict, parcels: list[dict], total: Decimal) -> None:
    if not parcels:
        raise OmieFault("As parcelas devem ser informadas quando a condição de pagamento for [999]!")
    if int(head.get("nQtdeParc") or 0) != len(parcels):
        raise OmieFault(f"A quantidade de parcelas [{head.get('nQtdeParc')}] difere das parcelas informadas [{len(parcels)}]!")
    for parcel in parcels:
        if parse_day(parcel.get("dDtVenc")) is None:
            raise OmieFault(f"A tag [dDtVenc] da parcela [{parcel.get('nParcela')}] é inválida!")
    informed = sum((Decimal(str(p.get("nValor") or 0)) for p in parcels), Decimal("0")).quantize(Decimal("0.01"))
    if informed != total:
        raise OmieFault(f"A soma das parcelas [{informed}] é diferente do valor total da Ordem de Serviço [{total}]!")


def post_json(url: str, payload: dict) -> None:
    """Webhook delivery; Omie does not retry a failed delivery here either (fire and forget)."""
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except OSError:
        pass


def demo_settings(url: str) -> dict[str, str]:
    """Omie's calls live under /api/v1/ of the sandbox, as under app.omie.com.br."""
    return {"base_url": url.rstrip("/") + "/api/v1/", **DEMO_SETTINGS}

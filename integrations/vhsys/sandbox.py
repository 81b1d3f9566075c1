"""A faithful fake of the VHSYS API v2, served on loopback for tests and the demo.

What it reproduces (see /work/shared/erp/vhsys.md):
- static `access-token` + `secret-access-token` headers; bad tokens answer HTTP 200 with code 401 in the body;
  a request without a User-Agent is blocked like the CDN in front of VHSYS does;
- the {code, status, data} envelope, `paging` on lists, limit (max 250) / offset, order/sort;
- "nothing found" as HTTP 403 {"data": "Nenhum ... encontrado!"}; unknown routes as HTTP 200 with code 404;
- `data_modificacao` ("created or modified at or after", Brasília time) on every list;
- CPF/CNPJ stored as sent (masked) and searched by substring, so a masked and a bare query differ;
- field length limits and CPF/CNPJ validity checks on /clientes (the sandbox refuses what breaks them);
- service orders with /servicos and /parcelas (posting parcelas replaces them), receivables with baixa by PUT;
- NFS-e created, then issued by /emitir: the municipality answers on a later status read, issuing when the
  customer has a valid CPF/CNPJ and a full address and rejecting with a municipal-style reason otherwise;
- counter sales (/vendas-balcao + /produtos) that tests and the demo create "from the ERP side".

Assumptions where the real API is UNCONFIRMED are marked in place. `expire_tokens` simulates the clinic
regenerating its token pair in VHSYS: the pair in use stops working and a new pair is issued
(readable in /__sandbox__/state under "credentials").
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from validate_docbr import CNPJ, CPF
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..sandbox_kit import IdSequence, SandboxApp
from .client import ASSUMED_ERP_LIMITS
from .mapping import BRASILIA

DEMO_CREDENTIALS: dict[str, str] = {
    "access_token": "vhsys-demo-access-token-0001",
    "secret_access_token": "vhsys-demo-secret-access-token-0001",
}

LIMIT_MAX = 250

CUSTOMER_MAX_LENGTHS = {
    "razao_cliente": 255, "cnpj_cliente": 18, "numero_cliente": 7, "bairro_cliente": 45,
    "complemento_cliente": 45, "cep_cliente": 10, "uf_cliente": 2, "celular_cliente": 20, "fone_cliente": 20,
}


def _route(path: str, endpoint: str, *methods: str) -> Rule:
    return Rule(path, endpoint=endpoint, methods=list(methods))


def authenticated(handler: Callable) -> Callable:
    """Every ERP endpoint checks the token pair (and the User-Agent) before doing anything."""

    @functools.wraps(handler)
    def wrapper(self: "Sandbox", request: Request, **kwargs: Any) -> Response:
        denied = self.deny(request)
        return denied if denied is not None else handler(self, request, **kwargs)

    return wrapper


def _now_text() -> str:
    return datetime.now(BRASILIA).strftime("%Y-%m-%d %H:%M:%S")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def _alnum(text: Any) -> str:
    return "".join(c for c in str(text or "") if c.isalnum()).upper()


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _load_ibge() -> dict[str, dict[str, str]]:
    """brutils ships the IBGE municipality table; VHSYS fills `cidade_cliente_cod` from it."""
    try:
        import brutils
        with open(os.path.join(os.path.dirname(brutils.__file__), "data", "cities_code.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (ImportError, OSError, ValueError):
        return {}


IBGE = _load_ibge()


class Sandbox(SandboxApp):
    name = "vhsys"
    # VHSYS documents no limit; the sandbox enforces what the connector assumes VHSYS enforces.
    default_rate_limit = [tuple(w) for w in ASSUMED_ERP_LIMITS]

    ROUTES = [
        ("/clientes", "list_customers", "GET"), ("/clientes", "create_customer", "POST"),
        ("/clientes/<int:item_id>", "get_customer", "GET"),
        ("/clientes/<int:item_id>", "update_customer", "PUT"),
        ("/clientes/<int:item_id>", "delete_customer", "DELETE"),
        ("/ordens-servico", "list_orders", "GET"), ("/ordens-servico", "create_order", "POST"),
        ("/ordens-servico/<int:item_id>", "get_order", "GET"),
        ("/ordens-servico/<int:item_id>/servicos", "list_order_services", "GET"),
        ("/ordens-servico/<int:item_id>/servicos", "add_order_services", "POST"),
        ("/ordens-servico/<int:item_id>/parcelas", "list_order_installments", "GET"),
        ("/ordens-servico/<int:item_id>/parcelas", "replace_order_installments", "POST"),
        ("/contas-receber", "list_receivables", "GET"), ("/contas-receber", "create_receivable", "POST"),
        ("/contas-receber/<int:item_id>", "get_receivable", "GET"),
        ("/contas-receber/<int:item_id>", "update_receivable", "PUT"),
        ("/notas-servico", "list_service_invoices", "GET"),
        ("/notas-servico", "create_service_invoice", "POST"),
        ("/notas-servico/<int:item_id>", "get_service_invoice", "GET"),
        ("/notas-servico/<int:item_id>/emitir", "issue_service_invoice", "POST"),
        ("/vendas-balcao", "list_counter_sales", "GET"), ("/vendas-balcao", "create_counter_sale", "POST"),
        ("/vendas-balcao/<int:item_id>", "get_counter_sale", "GET"),
        ("/vendas-balcao/<int:item_id>/produtos", "list_counter_sale_items", "GET"),
        ("/vendas-balcao/<int:item_id>/produtos", "add_counter_sale_items", "POST"),
        ("/contas-bancarias", "list_bank_accounts", "GET"),
    ]

    @property
    def rules(self) -> list[Rule]:
        """Fresh Rule objects per instance: werkzeug binds a Rule to one Map only, and tests run many sandboxes."""
        return [_route(path, endpoint, *methods) for path, endpoint, *methods in self.ROUTES]

    def __init__(self, *, nfse_pending_reads: int = 1, **faults: Any):
        """`nfse_pending_reads`: status reads that still answer "Processando" before the municipality decides."""
        self.nfse_pending_reads = nfse_pending_reads
        super().__init__(**faults)

    # ------------------------------------------------------------------ state
    def reset_data(self) -> None:
        self.ids = IdSequence(1000)
        self.numbers = IdSequence(0)
        self.nfse_numbers = IdSequence(2024000)
        self.tokens: dict[str, str] = {DEMO_CREDENTIALS["access_token"]: DEMO_CREDENTIALS["secret_access_token"]}
        self.customers: dict[int, dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.order_services: dict[int, list[dict[str, Any]]] = {}
        self.order_installments: dict[int, list[dict[str, Any]]] = {}
        self.receivables: dict[int, dict[str, Any]] = {}
        self.service_invoices: dict[int, dict[str, Any]] = {}
        self.counter_sales: dict[int, dict[str, Any]] = {}
        self.counter_sale_items: dict[int, list[dict[str, Any]]] = {}
        self.bank_accounts = [{"id_banco_cad": 1, "nome_banco_cad": "Caixa", "status_banco": "Ativo"}]

    def state(self) -> dict[str, Any]:
        access, secret = next(iter(self.tokens.items()))
        return {
            "credentials": {"access_token": access, "secret_access_token": secret},
            "clientes": list(self.customers.values()),
            "ordens_servico": [dict(o, servicos=self.order_services.get(i, []),
                                    parcelas=self.order_installments.get(i, [])) for i, o in self.orders.items()],
            "contas_receber": list(self.receivables.values()),
            "notas_servico": list(self.service_invoices.values()),
            "vendas_balcao": [dict(s, produtos=self.counter_sale_items.get(i, []))
                              for i, s in self.counter_sales.items()],
        }

    # ------------------------------------------------------------------ envelope helpers
    def ok(self, data: Any, code: int = 200) -> Response:
        return self.json({"code": code, "status": "success", "data": data})

    def error(self, message: str, code: int = 400, http_status: int | None = None) -> Response:
        return self.json({"code": code, "status": "error", "data": message}, http_status or code)

    def not_found(self, request: Request) -> Response:
        return self.json({"code": 404, "status": "error", "data": "Rota inválida ou inexistente!"}, 200)

    def throttled_response(self, request: Request, retry_after: float) -> Response:
        # 429 body shape is UNCONFIRMED; the Retry-After header is what clients rely on.
        return self.json({"code": 429, "status": "error", "data": "Limite de requisições excedido."}, 429,
                         headers={"Retry-After": f"{retry_after:.0f}", "x-ratelimit-remaining": "0"})

    def rejected_response(self, request: Request) -> Response:
        return self.error("Registro recusado pela validação do VHSYS (falha injetada pelo sandbox)", 400)

    def server_error_response(self, request: Request) -> Response:
        return self.json({"code": 500, "status": "error", "data": "Erro interno, tente novamente."}, 503)

    def nothing_found(self, noun: str) -> Response:
        return self.error(f"Nenhum {noun} encontrado!", 403)

    # ------------------------------------------------------------------ auth
    def account_of(self, request: Request) -> str:
        """All valid tokens belong to the one sandbox company; limits are counted per company."""
        return "empresa-1" if request.headers.get("access-token") in self.tokens else "anonymous"

    def deny(self, request: Request) -> Response | None:
        if not request.headers.get("User-Agent"):
            return Response("Error 1010: Access denied (missing User-Agent)", 403, content_type="text/html")
        access = request.headers.get("access-token", "")
        secret = request.headers.get("secret-access-token", "")
        with self.lock:
            if self.faults.expire_tokens and access in self.tokens:
                self.rotate_tokens()
            if self.tokens.get(access) != secret or not secret:
                return self.json({"code": 401, "status": "error",
                                  "data": "Token de acesso inválido ou expirado!"}, 200)
        return None

    def rotate_tokens(self) -> None:
        """What "Gerar Novo Token" does in VHSYS: the old pair stops working at once."""
        self.tokens = {f"vhsys-access-{secrets.token_hex(8)}": f"vhsys-secret-{secrets.token_hex(12)}"}
        self.faults.expire_tokens = False

    # ------------------------------------------------------------------ lists
    def listing(self, request: Request, rows: list[dict[str, Any]], *, noun: str, modified: str,
                filters: dict[str, Callable[[dict[str, Any], str], bool]] | None = None) -> Response:
        """Filters, data_modificacao, order/sort and limit/offset paging, as VHSYS lists do."""
        args = request.args
        for name, test in (filters or {}).items():
            if args.get(name):
                rows = [r for r in rows if test(r, args[name])]
        if args.get("lixeira"):
            rows = [r for r in rows if r.get("lixeira", "Nao") == args["lixeira"]]
        if args.get("data_modificacao"):
            since = self._timestamp_arg(args["data_modificacao"])
            rows = [r for r in rows if str(r.get(modified) or "") >= since]
        order = args.get("order")
        key_field = order if order and rows and order in rows[0] else None
        rows = sorted(rows, key=lambda r: (str(r.get(key_field) or "") if key_field else "", self._pk(r)),
                      reverse=args.get("sort", "Asc").lower() == "desc")
        limit = min(max(int(args.get("limit") or LIMIT_MAX), 1), LIMIT_MAX)
        offset = max(int(args.get("offset") or 0), 0)
        page = rows[offset: offset + limit]
        if not page:
            return self.nothing_found(noun)
        return self.json({"code": 200, "status": "success", "data": page,
                          "paging": {"total_count": len(rows), "total": len(rows), "offset": offset,
                                     "limit": limit, "limit_max": LIMIT_MAX}})

    @staticmethod
    def _pk(row: dict[str, Any]) -> int:
        for key in ("id_conta_rec", "id_ordem", "id_servico", "id_frente", "id_cliente"):
            if key in row:
                return int(row[key])
        return 0

    @staticmethod
    def _timestamp_arg(text: str) -> str:
        """Accepts YYYY-MM-DD or YYYY-MM-DD HH:MM:SS (Brasília, no zone), like the real filter."""
        text = text.strip().replace("T", " ")
        return text if len(text) > 10 else f"{text} 00:00:00"

    # ------------------------------------------------------------------ customers
    def validate_customer(self, data: dict[str, Any], creating: bool) -> list[str]:
        """The sandbox's customer checks (VHSYS's exact server-side list is UNCONFIRMED)."""
        problems = []
        if creating and not str(data.get("razao_cliente") or "").strip():
            problems.append("O campo razao_cliente é obrigatório!")
        for field_name, limit in CUSTOMER_MAX_LENGTHS.items():
            if len(str(data.get(field_name) or "")) > limit:
                problems.append(f"O campo {field_name} deve ter no máximo {limit} caracteres!")
        person = data.get("tipo_pessoa")
        if person is not None and person not in ("PF", "PJ"):
            problems.append("O campo tipo_pessoa deve ser PF ou PJ!")
        doc = _alnum(data.get("cnpj_cliente"))
        if doc:
            valid = CPF().validate(doc) if len(doc) == 11 else CNPJ().validate(doc) if len(doc) == 14 else False
            if not valid:
                problems.append("CPF/CNPJ inválido! Verifique o campo cnpj_cliente.")
            elif person and (len(doc) == 11) != (person == "PF"):
                problems.append("O documento do campo cnpj_cliente não corresponde ao tipo_pessoa informado!")
        return problems

    def _city_code(self, city: str, uf: str) -> str:
        return IBGE.get((uf or "").upper(), {}).get(_fold(city), "")

    def _customer_body(self, request: Request) -> dict[str, Any] | Response:
        body = self.body(request)
        if not isinstance(body, dict):
            return self.error("JSON inválido!", 400)
        return body

    @authenticated
    def list_customers(self, request: Request) -> Response:
        with self.lock:
            rows = list(self.customers.values())
        return self.listing(request, rows, noun="cliente", modified="data_mod_cliente", filters={
            "tipo_pessoa": lambda r, v: r.get("tipo_pessoa") == v,
            "cnpj_cliente": lambda r, v: v in str(r.get("cnpj_cliente") or ""),
            "razao_cliente": lambda r, v: _fold(v) in _fold(r.get("razao_cliente", "")),
            "fantasia_cliente": lambda r, v: _fold(v) in _fold(r.get("fantasia_cliente", "")),
            "data_cadastro": lambda r, v: str(r.get("data_cad_cliente")) >= self._timestamp_arg(v),
        })

    @authenticated
    def get_customer(self, request: Request, item_id: int) -> Response:
        with self.lock:
            row = self.customers.get(item_id)
        return self.ok(row) if row else self.error("Cliente não encontrado!", 404)

    @authenticated
    def create_customer(self, request: Request) -> Response:
        body = self._customer_body(request)
        if isinstance(body, Response):
            return body
        problems = self.validate_customer(body, creating=True)
        if problems:
            return self.error("; ".join(problems), 400)
        with self.lock:
            now = _now_text()
            item_id = self.ids.next()
            row = {"tipo_pessoa": "PJ", "tipo_cadastro": "Cliente", "situacao_cliente": "Ativo", **body,
                   "id_cliente": item_id, "id_empresa": 1, "lixeira": "Nao", "data_cad_cliente": now,
                   "data_mod_cliente": now}
            row["cidade_cliente_cod"] = self._city_code(row.get("cidade_cliente", ""), row.get("uf_cliente", ""))
            self.customers[item_id] = row
        return self.ok(row)

    @authenticated
    def update_customer(self, request: Request, item_id: int) -> Response:
        body = self._customer_body(request)
        if isinstance(body, Response):
            return body
        with self.lock:
            row = self.customers.get(item_id)
            if row is None:
                return self.error("Cliente não encontrado!", 404)
            merged = {**row, **body}
            problems = self.validate_customer(merged, creating=False)
            if problems:
                return self.error("; ".join(problems), 400)
            merged.update(id_cliente=item_id, data_mod_cliente=_now_text(),
                          cidade_cliente_cod=self._city_code(merged.get("cidade_cliente", ""),
                                                             merged.get("uf_cliente", "")))
            self.customers[item_id] = merged
        return self.ok(merged)

    @authenticated
    def delete_customer(self, request: Request, item_id: int) -> Response:
        with self.lock:
            row = self.customers.get(item_id)
            if row is None:
                return self.error("Cliente não encontrado!", 404)
            row.update(lixeira="Sim", data_mod_cliente=_now_text())
        return self.ok("Cliente movido para a lixeira!")

    # ------------------------------------------------------------------ service orders
    @authenticated
    def list_orders(self, request: Request) -> Response:
        with self.lock:
            rows = list(self.orders.values())
        return self.listing(request, rows, noun="ordem de serviço", modified="data_mod_pedido", filters={
            "id_cliente": lambda r, v: str(r.get("id_cliente")) == v,
            "status_pedido": lambda r, v: r.get("status_pedido") == v,
        })

    @authenticated
    def get_order(self, request: Request, item_id: int) -> Response:
        with self.lock:
            row = self.orders.get(item_id)
        return self.ok(row) if row else self.error("Ordem de serviço não encontrada!", 404)

    @authenticated
    def create_order(self, request: Request) -> Response:
        body = self.body(request)
        if not isinstance(body, dict):
            return self.error("JSON inválido!", 400)
        with self.lock:
            if int(body.get("id_cliente") or 0) not in self.customers:
                return self.error("Cliente não encontrado! Informe um id_cliente válido.", 400)
            if not body.get("data_pedido"):
                return self.error("O campo data_pedido é obrigatório!", 400)
            now = _now_text()
            item_id = self.ids.next()
            row = {"status_pedido": "Em Aberto", **body, "id_ordem": item_id, "id_pedido": self.numbers.next(),
                   "valor_total_os": "0.00", "contas_pedido": 0, "lixeira": "Nao",
                   "data_cad_pedido": now, "data_mod_pedido": now}
            self.orders[item_id] = row
        return self.ok(row)

    @authenticated
    def list_order_services(self, request: Request, item_id: int) -> Response:
        with self.lock:
            if item_id not in self.orders:
                return self.error("Ordem de serviço não encontrada!", 404)
            rows = list(self.order_services.get(item_id, []))
        return self.ok(rows) if rows else self.nothing_found("serviço")

    @authenticated
    def add_order_services(self, request: Request, item_id: int) -> Response:
        body = self.body(request)
        if not isinstance(body, list) or not body:
            return self.error("Envie uma lista de serviços!", 400)
        for line in body:
            if not isinstance(line, dict) or not line.get("desc_servico") or _decimal(line.get("valor_unit_servico")) is None:
                return self.error("Cada serviço precisa de desc_servico e valor_unit_servico!", 400)
        with self.lock:
            order = self.orders.get(item_id)
            if order is None:
                return self.error("Ordem de serviço não encontrada!", 404)
            lines = self.order_services.setdefault(item_id, [])
            for line in body:
                lines.append({**line, "id_ordem_servico": self.ids.next(), "id_ordem": item_id})
            total = sum((_decimal(l.get("horas_servico") or 1) or Decimal(1)) * _decimal(l["valor_unit_servico"])
                        for l in lines)
            order.update(valor_total_os=f"{Decimal(total).quantize(Decimal('0.01'))}", data_mod_pedido=_now_text())
        return self.ok(lines)

    @authenticated
    def list_order_installments(self, request: Request, item_id: int) -> Response:
        with self.lock:
            rows = [{k: v for k, v in p.items() if k not in ("conta_liquidada", "valor_pago")}
                    for p in self.order_installments.get(item_id, [])]
        return self.ok(rows) if rows else self.nothing_found("parcela")

    @authenticated
    def replace_order_installments(self, request: Request, item_id: int) -> Response:
        body = self.body(request)
        valid = isinstance(body, list) and body and all(
            isinstance(p, dict) and p.get("data_parcela") and _decimal(p.get("valor_parcela")) is not None for p in body)
        with self.lock:
            order = self.orders.get(item_id)
            if order is None or not valid:
                return self.error("Erro ao cadastrar a parcela para o pedido!", 403)
            self.order_installments[item_id] = [{**p, "id_parcela": self.ids.next()} for p in body]
            order["data_mod_pedido"] = _now_text()
            rows = list(self.order_installments[item_id])
        return self.ok(rows)

    # ------------------------------------------------------------------ receivables
    @authenticated
    def list_receivables(self, request: Request) -> Response:
        with self.lock:
            rows = list(self.receivables.values())
        return self.listing(request, rows, noun="conta a receber", modified="data_mod_rec", filters={
            "liquidado": lambda r, v: r.get("liquidado_rec") == v,
            "id_cliente": lambda r, v: str(r.get("id_cliente")) == v,
            "data_vencimento": lambda r, v: str(r.get("vencimento_rec")) >= v.split(",")[0],
        })

    @authenticated
    def get_receivable(self, request: Request, item_id: int) -> Response:
        with self.lock:
            row = self.receivables.get(item_id)
        return self.ok(row) if row else self.error("Conta a receber não encontrada!", 404)

    def validate_receivable(self, body: dict[str, Any]) -> list[str]:
        problems = [f"O campo {f} é obrigatório!" for f in ("nome_conta", "id_banco", "vencimento_rec", "valor_rec",
                                                             "data_emissao") if not str(body.get(f) or "").strip()]
        if len(str(body.get("nome_conta") or "")) > 45:
            problems.append("O campo nome_conta deve ter no máximo 45 caracteres!")
        if len(str(body.get("n_documento_rec") or "")) > 45:
            problems.append("O campo n_documento_rec deve ter no máximo 45 caracteres!")
        if body.get("id_banco") and int(body["id_banco"]) not in {b["id_banco_cad"] for b in self.bank_accounts}:
            problems.append("Conta bancária (id_banco) não encontrada!")
        if body.get("valor_rec") and _decimal(body["valor_rec"]) is None:
            problems.append("O campo valor_rec deve ser numérico!")
        return problems

    @authenticated
    def create_receivable(self, request: Request) -> Response:
        body = self.body(request)
        if not isinstance(body, dict):
            return self.error("JSON inválido!", 400)
        problems = self.validate_receivable(body)
        if problems:
            return self.error("; ".join(problems), 400)
        with self.lock:
            now = _now_text()
            item_id = self.ids.next()
            # Whether the API lets a client set `identificacao` is UNCONFIRMED; the sandbox keeps what it gets.
            row = {"liquidado_rec": "Nao", "valor_pago": "0.00", "data_pagamento": "0000-00-00",
                   "identificacao": "", "observacoes_rec": "", "n_documento_rec": "", **body,
                   "id_conta_rec": item_id, "vencimento_original": body.get("vencimento_rec"), "lixeira": "Nao",
                   "data_cad_rec": now, "data_mod_rec": now}
            row["status"] = 3 if row["liquidado_rec"] == "Sim" else 1
            self.receivables[item_id] = row
        return self.ok(row)

    @authenticated
    def update_receivable(self, request: Request, item_id: int) -> Response:
        body = self.body(request)
        if not isinstance(body, dict):
            return self.error("JSON inválido!", 400)
        with self.lock:
            row = self.receivables.get(item_id)
            if row is None:
                return self.error("Conta a receber não encontrada!", 404)
            merged = {**row, **body}
            problems = self.validate_receivable(merged)
            if problems:
                return self.error("; ".join(problems), 400)
            self._apply_settlement(merged, body)
            merged.update(id_conta_rec=item_id, data_mod_rec=_now_text())
            self.receivables[item_id] = merged
        return self.ok(merged)

    @staticmethod
    def _apply_settlement(row: dict[str, Any], body: dict[str, Any]) -> None:
        """liquidado_rec Sim settles (defaults: full value, today); Nao undoes the baixa."""
        if body.get("liquidado_rec") == "Sim":
            row["valor_pago"] = body.get("valor_pago") or row.get("valor_rec")
            row["valor_baixa"] = row["valor_pago"]
            if str(row.get("data_pagamento") or "0000").startswith("0000"):
                row["data_pagamento"] = date.today().isoformat()
            row["status"] = 3
        elif body.get("liquidado_rec") == "Nao":
            row.update(valor_pago="0.00", valor_baixa="0.00", data_pagamento="0000-00-00", status=1)

    # ------------------------------------------------------------------ NFS-e
    @authenticated
    def list_service_invoices(self, request: Request) -> Response:
        with self.lock:
            rows = list(self.service_invoices.values())
        return self.listing(request, rows, noun="nota de serviço", modified="data_mod_pedido", filters={
            "id_cliente": lambda r, v: str(r.get("id_cliente")) == v,
        })

    @authenticated
    def create_service_invoice(self, request: Request) -> Response:
        body = self.body(request)
        if not isinstance(body, dict):
            return self.error("JSON inválido!", 400)
        with self.lock:
            if int(body.get("id_cliente") or 0) not in self.customers:
                return self.error("Cliente não encontrado! Informe um id_cliente válido.", 403, 200)
            if not body.get("desc_servicos") or (_decimal(body.get("valor_total_nota")) or 0) <= 0:
                return self.error("Informe a descrição e o valor dos serviços da nota!", 403, 200)
            now = _now_text()
            item_id = self.ids.next()
            row = {**body, "id_servico": item_id, "id_pedido": self.numbers.next(), "status_nota": "Em aberto",
                   "nota_emitida": "Nao", "NumeroNFS": "", "mensagem_nota": "", "codigo_verificacao": "",
                   "lixeira": "Nao", "data_cad_pedido": now, "data_mod_pedido": now, "_reads": 0}
            self.service_invoices[item_id] = row
        return self.ok(self._public(row))

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if not k.startswith("_")}

    @authenticated
    def issue_service_invoice(self, request: Request, item_id: int) -> Response:
        with self.lock:
            row = self.service_invoices.get(item_id)
            if row is None:
                return self.error("Nota de serviço não encontrada!", 404)
            if row["status_nota"] == "Emitida":
                return self.error("Esta nota já foi emitida!", 403, 200)
            if row["status_nota"] == "Processando":
                return self.error("A nota está em processamento na prefeitura!", 403, 200)
            if not row.get("atividade") and not row.get("itemLista_servico"):
                return self.error("Código do serviço (atividade) não informado para a nota!", 403, 200)
            row.update(status_nota="Processando", mensagem_nota="", _reads=0, data_mod_pedido=_now_text())
            return self.ok(self._public(row))

    @authenticated
    def get_service_invoice(self, request: Request, item_id: int) -> Response:
        with self.lock:
            row = self.service_invoices.get(item_id)
            if row is None:
                return self.error("Nota de serviço não encontrada!", 404)
            if row["status_nota"] == "Processando":
                if row["_reads"] >= self.nfse_pending_reads:
                    self._municipality_decides(row)
                else:
                    row["_reads"] += 1
            return self.ok(self._public(row))

    def _municipality_decides(self, row: dict[str, Any]) -> None:
        reason = self.municipal_rejection(self.customers.get(int(row["id_cliente"]), {}))
        if reason:
            row.update(status_nota="Rejeitada", mensagem_nota=reason, nota_emitida="Nao")
        else:
            row.update(status_nota="Emitida", nota_emitida="Sim", NumeroNFS=str(self.nfse_numbers.next()),
                       codigo_verificacao=secrets.token_hex(4).upper(), mensagem_nota="")
        row["data_mod_pedido"] = _now_text()

    @staticmethod
    def municipal_rejection(customer: dict[str, Any]) -> str:
        """The tomador checks a city hall makes, worded like municipal NFS-e error codes."""
        doc = _alnum(customer.get("cnpj_cliente"))
        valid = CPF().validate(doc) if len(doc) == 11 else CNPJ().validate(doc) if len(doc) == 14 else False
        if not valid:
            return "E46 - CPF/CNPJ do tomador inválido ou não informado."
        labels = {"endereco_cliente": "logradouro", "numero_cliente": "número", "bairro_cliente": "bairro",
                  "cep_cliente": "CEP", "cidade_cliente": "município", "uf_cliente": "UF"}
        missing = [label for field_name, label in labels.items() if not str(customer.get(field_name) or "").strip()]
        if missing:
            return f"E160 - Endereço do tomador incompleto: informe {', '.join(missing)}."
        return ""

    # ------------------------------------------------------------------ counter sales
    @authenticated
    def list_counter_sales(self, request: Request) -> Response:
        with self.lock:
            rows = list(self.counter_sales.values())
        return self.listing(request, rows, noun="venda", modified="data_mod_pedido", filters={
            "id_cliente": lambda r, v: str(r.get("id_cliente")) == v,
        })

    @authenticated
    def get_counter_sale(self, request: Request, item_id: int) -> Response:
        with self.lock:
            row = self.counter_sales.get(item_id)
        return self.ok(row) if row else self.error("Venda não encontrada!", 404)

    @authenticated
    def create_counter_sale(self, request: Request) -> Response:
        body = self.body(request)
        if not isinstance(body, dict):
            return self.error("JSON inválido!", 400)
        with self.lock:
            customer_id = int(body.get("id_cliente") or 0)
            if customer_id and customer_id not in self.customers:
                return self.error("Cliente não encontrado! Informe um id_cliente válido.", 400)
            now = datetime.now(BRASILIA)
            item_id = self.ids.next()
            customer = self.customers.get(customer_id, {})
            row = {"status_pedido": "Atendido", "forma_pagamento": "Dinheiro", "valor_total_nota": "0.00",
                   "valor_total_produtos": "0.00", "nome_cliente": customer.get("razao_cliente", "Consumidor"),
                   **body, "id_frente": item_id, "id_pedido": self.numbers.next(), "id_cliente": customer_id,
                   "data_pedido": body.get("data_pedido") or now.date().isoformat(),
                   "hora_pedido": body.get("hora_pedido") or now.strftime("%H:%M:%S"), "lixeira": "Nao",
                   "data_cad_pedido": now.strftime("%Y-%m-%d %H:%M:%S"),
                   "data_mod_pedido": now.strftime("%Y-%m-%d %H:%M:%S")}
            self.counter_sales[item_id] = row
        return self.ok(row)

    @authenticated
    def list_counter_sale_items(self, request: Request, item_id: int) -> Response:
        with self.lock:
            rows = list(self.counter_sale_items.get(item_id, []))
        return self.ok(rows) if rows else self.nothing_found("produto")

    @authenticated
    def add_counter_sale_items(self, request: Request, item_id: int) -> Response:
        body = self.body(request)
        lines = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
        if not lines or any(not l.get("desc_produto") or _decimal(l.get("valor_unit_produto")) is None for l in lines):
            return self.error("Cada produto precisa de desc_produto e valor_unit_produto!", 400)
        with self.lock:
            sale = self.counter_sales.get(item_id)
            if sale is None:
                return self.error("Venda não encontrada!", 404)
            stored = self.counter_sale_items.setdefault(item_id, [])
            for line in lines:
                stored.append({**line, "id_frente_produto": self.ids.next(), "id_frente": item_id})
            total = sum((_decimal(l.get("qtde_produto") or 1) or Decimal(1)) * _decimal(l["valor_unit_produto"])
                        for l in stored)
            sale.update(valor_total_produtos=f"{Decimal(total).quantize(Decimal('0.01'))}",
                        data_mod_pedido=_now_text())
            if _decimal(sale.get("valor_total_nota")) in (None, Decimal(0)):
                sale["valor_total_nota"] = sale["valor_total_produtos"]
        return self.ok(stored)

    # ------------------------------------------------------------------ lookups
    @authenticated
    def list_bank_accounts(self, request: Request) -> Response:
        return self.listing(request, list(self.bank_accounts), noun="conta bancária", modified="")

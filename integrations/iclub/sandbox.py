"""A fake iClub implementing the REST contract TecPet proposed (see /work/shared/erp/iclub.md).

It is the contract tests run on until the vendor answers: auth (bearer token, X-Api-Key, OAuth client
credentials with expiring tokens), customers, sales with receivables made from installments, settling,
NFS-e/NF-e requests that move from "processando" to "autorizada" or "rejeitada", counter sales and
receipts feeds, pagination by `alterado_desde`, Idempotency-Key replays, the `{"erro": ...}` body,
the proposed rate limits (10/s and 300/min per tenant) and signed webhooks to a configured URL.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import requests
from validate_docbr import CNPJ, CPF
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..sandbox_kit import IdSequence, SandboxApp
from . import mapping

DEMO_CREDENTIALS: dict[str, str] = {"api_token": "iclub-demo-token", "client_id": "tecpet-demo",
                                    "client_secret": "iclub-demo-secret", "webhook_secret": "iclub-demo-webhook"}

BRT = timezone(timedelta(hours=-3))
UFS = {"AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR", "PE", "PI",
       "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO"}
# The sandbox's own address stands for the tenant's API base (`https://<tenant-host>/api/v1`), so a
# connector configured with base_url = the sandbox URL calls exactly the contract's paths.
PREFIX = ""


class ApiError(Exception):
    """Raised inside handlers; becomes the contract's error body."""

    def __init__(self, status: int, code: str, message: str, fields: list[tuple[str, str]] = ()):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, list(fields)


class Sandbox(SandboxApp):
    name = "iclub"
    default_rate_limit = [(10, 1.0), (300, 60.0)]

    @property
    def rules(self) -> list[Rule]:
        """Fresh Rule objects per instance (werkzeug binds a Rule to a single Map)."""
        route = lambda path, endpoint, *methods: Rule(PREFIX + path, endpoint=endpoint, methods=list(methods))  # noqa: E731
        return [
            route("/oauth/token", "token", "POST"),
            route("/clientes", "list_clientes", "GET"), route("/clientes", "create_cliente", "POST"),
            route("/clientes/<int:item_id>", "get_cliente", "GET"),
            route("/clientes/<int:item_id>", "patch_cliente", "PATCH"),
            route("/vendas", "list_vendas", "GET"), route("/vendas", "create_venda", "POST"),
            route("/vendas/<int:item_id>", "get_venda", "GET"),
            route("/contas-receber", "list_contas", "GET"),
            route("/contas-receber/<int:item_id>/baixa", "baixa", "POST"),
            route("/notas-fiscais", "create_nota", "POST"), route("/notas-fiscais/<int:item_id>", "get_nota", "GET"),
            route("/pdv/vendas", "list_pdv", "GET"),
            route("/recebimentos", "list_recebimentos", "GET"),
            Rule("/__sandbox__/pdv", endpoint="_pdv", methods=["POST"]),
        ]

    def __init__(self, *, credentials: dict[str, str] | None = None, token_ttl: float = 3600.0,
                 webhook_url: str = "", polls_until_issued: int = 1, **faults: Any):
        self.credentials = dict(credentials or DEMO_CREDENTIALS)
        self.token_ttl = token_ttl
        self.webhook_url = webhook_url
        self.polls_until_issued = polls_until_issued
        super().__init__(**faults)

    # ------------------------------------------------------------------ state
    def reset_data(self) -> None:
        self.ids = IdSequence(1000)
        self.tables: dict[str, dict[int, dict[str, Any]]] = {
            name: {} for name in ("clientes", "vendas", "contas", "notas", "pdv", "recebimentos")}
        self.replays: dict[str, tuple[int, Any]] = {}
        self.tokens: dict[str, float] = {}
        self.expire_static_next = False
        self.nota_polls: dict[int, int] = {}
        self.webhooks_sent: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        return {name: list(rows.values()) for name, rows in self.tables.items()} | {"webhooks": self.webhooks_sent}

    @staticmethod
    def now() -> str:
        """Second resolution, like most ERPs: several changes share one alterado_em."""
        return datetime.now(BRT).replace(microsecond=0).isoformat()

    def add_pos_sale(self, *, items: list[tuple[str, str, str, str]], payments: list[tuple[str, str]],
                     document: str = "", cancelled: bool = False) -> dict[str, Any]:
        """A counter sale as iClub's POS would record it: items (code, description, qty, total)."""
        with self.lock:
            sale_id = self.ids.next()
            stamp = self.now()
            sale = {"id": sale_id, "data_hora": stamp, "caixa": "1", "cupom": str(sale_id), "cliente_cpf_cnpj": document,
                    "itens": [{"codigo": c, "descricao": d, "quantidade": q, "valor_unitario": t, "valor_total": t}
                              for c, d, q, t in items],
                    "pagamentos": [{"forma": f, "valor": v} for f, v in payments], "cancelada": cancelled,
                    "chave_nfce": "", "alterado_em": stamp}
            self.tables["pdv"][sale_id] = sale
        self._notify("venda.criada", sale)
        return sale

    # ------------------------------------------------------------------ plumbing
    def throttled_response(self, request: Request, retry_after: float) -> Response:
        return self.json({"erro": {"codigo": "LIMITE", "mensagem": "Limite de requisições excedido"}}, 429,
                         headers={"Retry-After": f"{max(1, round(retry_after))}"})

    def server_error_response(self, request: Request) -> Response:
        return self.json({"erro": {"codigo": "INDISPONIVEL", "mensagem": "Serviço em manutenção"}}, 503,
                         headers={"Retry-After": "1"})

    def _handle(self, request: Request, handler: Callable[[], tuple[int, Any]], *, idempotent_write: bool = False):
        """Auth, Idempotency-Key replay and the error body around one handler."""
        try:
            self._authenticate(request)
            key = request.headers.get("Idempotency-Key") if idempotent_write else None
            with self.lock:
                if key and key in self.replays:
                    status, data = self.replays[key]
                    return self.json(data, status, headers={"Idempotent-Replayed": "true"})
                status, data = handler()
                if key:
                    self.replays[key] = (status, data)
            return self.json(data, status)
        except ApiError as exc:
            body = {"codigo": exc.code, "mensagem": exc.message}
            if exc.fields:
                body["campos"] = [{"campo": f, "mensagem": m} for f, m in exc.fields]
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
            return self.json({"erro": body}, exc.status, headers=headers)

    def _authenticate(self, request: Request) -> None:
        with self.lock:
            if self.faults.expire_tokens:
                self.tokens.clear()
                self.expire_static_next = True
                self.faults.expire_tokens = False
        api_key = request.headers.get("X-Api-Key", "")
        bearer = request.headers.get("Authorization", "")
        token = bearer[7:].strip() if bearer.startswith("Bearer ") else api_key
        if not token:
            raise ApiError(401, "NAO_AUTORIZADO", "Credenciais não informadas")
        if token == self.credentials["api_token"]:
            with self.lock:
                if self.expire_static_next:
                    self.expire_static_next = False
                    raise ApiError(401, "NAO_AUTORIZADO", "Token expirado")
            return
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None or expires < time.monotonic():
            raise ApiError(401, "NAO_AUTORIZADO", "Token inválido ou expirado")

    # ------------------------------------------------------------------ auth endpoint
    def token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return self.json({"erro": {"codigo": "VALIDACAO", "mensagem": "grant_type deve ser client_credentials"}}, 400)
        basic = request.authorization
        client_id = form.get("client_id") or (basic.username if basic else "")
        client_secret = form.get("client_secret") or (basic.password if basic else "")
        if (client_id, client_secret) != (self.credentials["client_id"], self.credentials["client_secret"]):
            return self.json({"erro": {"codigo": "NAO_AUTORIZADO", "mensagem": "Cliente ou segredo inválido"}}, 401)
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
        return self.json({"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl)})

    # ------------------------------------------------------------------ lists
    def _page(self, request: Request, rows: list[dict[str, Any]]) -> tuple[int, Any]:
        """The contract's list envelope, ordered by (alterado_em, id); alterado_desde is inclusive."""
        args = request.args
        since = args.get("alterado_desde")
        if since:
            try:
                floor = datetime.fromisoformat(since)
            except ValueError:
                raise ApiError(422, "VALIDACAO", "alterado_desde inválido", [("alterado_desde", "formato ISO-8601")])
            rows = [r for r in rows if datetime.fromisoformat(r["alterado_em"]) >= floor]
        rows = sorted(rows, key=lambda r: (datetime.fromisoformat(r["alterado_em"]), r["id"]))
        page, size = max(1, int(args.get("pagina", 1))), min(500, max(1, int(args.get("por_pagina", 100))))
        chunk = rows[(page - 1) * size: page * size]
        return 200, {"dados": chunk, "pagina": page, "por_pagina": size, "total": len(rows),
                     "tem_mais": page * size < len(rows)}

    def _filtered(self, table: str, request: Request, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        rows = list(self.tables[table].values())
        for name in fields:
            if name in request.args:
                rows = [r for r in rows if str(r.get(name)) == request.args[name]]
        return rows

    # ------------------------------------------------------------------ customers
    def list_clientes(self, request: Request) -> Response:
        return self._handle(request, lambda: self._page(
            request, self._filtered("clientes", request, ("cpf_cnpj", "codigo_externo"))))

    def get_cliente(self, request: Request, item_id: int) -> Response:
        return self._handle(request, lambda: (200, self._row("clientes", item_id, "Cliente")))

    def create_cliente(self, request: Request) -> Response:
        def create() -> tuple[int, Any]:
            data = self._json_body(request)
            _check_cliente(data)
            self._unique(data)
            row = dict(data, id=self.ids.next(), alterado_em=self.now())
            self.tables["clientes"][row["id"]] = row
            self._notify("cliente.alterado", row)
            return 201, row
        return self._handle(request, create, idempotent_write=True)

    def patch_cliente(self, request: Request, item_id: int) -> Response:
        def patch() -> tuple[int, Any]:
            row = self._row("clientes", item_id, "Cliente")
            data = self._json_body(request)
            merged = dict(row, **{k: v for k, v in data.items() if k != "endereco"})
            merged["endereco"] = dict(row.get("endereco") or {}, **(data.get("endereco") or {}))
            _check_cliente(merged)
            self._unique(merged, ignore=item_id)
            merged["alterado_em"] = self.now()
            self.tables["clientes"][item_id] = merged
            self._notify("cliente.alterado", merged)
            return 200, merged
        return self._handle(request, patch, idempotent_write=True)

    def _unique(self, data: dict[str, Any], ignore: int | None = None) -> None:
        for other in self.tables["clientes"].values():
            if other["id"] == ignore:
                continue
            if other.get("cpf_cnpj") == data.get("cpf_cnpj"):
                raise ApiError(409, "CONFLITO", "Já existe um cliente com este CPF/CNPJ",
                               [("cpf_cnpj", f"duplicado (cliente {other['id']})")])
            if data.get("codigo_externo") and other.get("codigo_externo") == data.get("codigo_externo"):
                raise ApiError(409, "CONFLITO", "Já existe um cliente com este codigo_externo",
                               [("codigo_externo", "duplicado")])

    # ------------------------------------------------------------------ sales and receivables
    def list_vendas(self, request: Request) -> Response:
        return self._handle(request, lambda: self._page(request, self._filtered("vendas", request, ("codigo_externo",))))

    def get_venda(self, request: Request, item_id: int) -> Response:
        return self._handle(request, lambda: (200, self._row("vendas", item_id, "Venda")))

    def create_venda(self, request: Request) -> Response:
        return self._handle(request, lambda: self._create_venda(self._json_body(request)), idempotent_write=True)

    def _create_venda(self, data: dict[str, Any]) -> tuple[int, Any]:
        problems = _venda_problems(data, self.tables["clientes"])
        if problems:
            raise ApiError(422, "VALIDACAO", "Venda inválida", problems)
        if any(v.get("codigo_externo") == data.get("codigo_externo") for v in self.tables["vendas"].values()):
            raise ApiError(409, "CONFLITO", "Já existe uma venda com este codigo_externo", [("codigo_externo", "duplicado")])
        stamp = self.now()
        venda = dict(data, id=self.ids.next(), numero=str(len(self.tables["vendas"]) + 1), status="aberta",
                     alterado_em=stamp)
        self.tables["vendas"][venda["id"]] = venda
        for parcela in data["parcelas"]:
            conta_id = self.ids.next()
            self.tables["contas"][conta_id] = {
                "id": conta_id, "venda_id": venda["id"], "cliente_id": data["cliente_id"], "numero": parcela["numero"],
                "vencimento": parcela["vencimento"], "valor": parcela["valor"],
                "forma_pagamento": parcela.get("forma_pagamento", ""), "status": "aberto", "valor_pago": "0.00",
                "alterado_em": stamp}
        return 201, venda

    def list_contas(self, request: Request) -> Response:
        return self._handle(request, lambda: self._page(request, self._filtered("contas", request, ("venda_id",))))

    def baixa(self, request: Request, item_id: int) -> Response:
        def settle() -> tuple[int, Any]:
            conta = self._row("contas", item_id, "Conta a receber")
            data = self._json_body(request)
            paid = _decimal(data.get("valor_pago"))
            if paid is None or paid <= 0 or not _is_date(data.get("data_pagamento")):
                raise ApiError(422, "VALIDACAO", "Baixa inválida", [("valor_pago", "obrigatório e positivo"),
                                                                    ("data_pagamento", "AAAA-MM-DD")])
            if conta["status"] == "pago":
                raise ApiError(409, "CONFLITO", "Conta a receber já baixada")
            stamp = self.now()
            total_paid = Decimal(conta["valor_pago"]) + paid
            conta.update(valor_pago=str(total_paid.quantize(Decimal("0.01"))), alterado_em=stamp,
                         status="pago" if total_paid >= Decimal(conta["valor"]) else "parcial")
            receipt_id = self.ids.next()
            recebimento = {"id": receipt_id, "conta_receber_id": item_id, "venda_id": conta["venda_id"],
                           "cliente_id": conta["cliente_id"], "data_pagamento": data["data_pagamento"],
                           "valor_pago": str(paid.quantize(Decimal("0.01"))),
                           "forma_pagamento": data.get("forma_pagamento") or conta["forma_pagamento"],
                           "alterado_em": stamp}
            self.tables["recebimentos"][receipt_id] = recebimento
            self._notify("recebimento.baixado", recebimento)
            return 200, conta
        return self._handle(request, settle, idempotent_write=True)

    # ------------------------------------------------------------------ invoices
    def create_nota(self, request: Request) -> Response:
        def create() -> tuple[int, Any]:
            data = self._json_body(request)
            venda = self.tables["vendas"].get(int(data.get("venda_id") or 0))
            if venda is None:
                raise ApiError(422, "VALIDACAO", "Venda não encontrada", [("venda_id", "inexistente")])
            if data.get("modelo") not in {"nfse", "nfe", "nfce"}:
                raise ApiError(422, "VALIDACAO", "Modelo inválido", [("modelo", "use nfse, nfe ou nfce")])
            nota = {"id": self.ids.next(), "venda_id": venda["id"], "modelo": data["modelo"], "status": "processando",
                    "motivo": "", "numero": "", "serie": "", "chave_acesso": "", "alterado_em": self.now()}
            self.tables["notas"][nota["id"]] = nota
            return 202, nota
        return self._handle(request, create, idempotent_write=True)

    def get_nota(self, request: Request, item_id: int) -> Response:
        def read() -> tuple[int, Any]:
            nota = self._row("notas", item_id, "Nota fiscal")
            self.nota_polls[item_id] = self.nota_polls.get(item_id, 0) + 1
            if nota["status"] == "processando" and self.nota_polls[item_id] >= self.polls_until_issued:
                self._decide(nota)
            return 200, nota
        return self._handle(request, read)

    def _decide(self, nota: dict[str, Any]) -> None:
        """The tax authority's answer: rejected when the tomador's address is incomplete."""
        venda = self.tables["vendas"][nota["venda_id"]]
        cliente = self.tables["clientes"].get(int(venda["cliente_id"]), {})
        address = cliente.get("endereco") or {}
        missing = [name for name in ("logradouro", "numero", "bairro", "cep", "codigo_ibge") if not address.get(name)]
        if missing:
            nota.update(status="rejeitada", motivo=f"Endereço do tomador incompleto: {', '.join(missing)} não informado")
        else:
            number = str(len([n for n in self.tables["notas"].values() if n["status"] == "autorizada"]) + 1)
            nota.update(status="autorizada", numero=number, serie="1", chave_acesso=f"{nota['id']:044d}",
                        protocolo=f"135{nota['id']:012d}", emitida_em=self.now())
        nota["alterado_em"] = self.now()
        self._notify("nota.status", nota)

    # ------------------------------------------------------------------ feeds
    def list_pdv(self, request: Request) -> Response:
        return self._handle(request, lambda: self._page(request, list(self.tables["pdv"].values())))

    def list_recebimentos(self, request: Request) -> Response:
        return self._handle(request, lambda: self._page(request, list(self.tables["recebimentos"].values())))

    # ------------------------------------------------------------------ helpers
    def _row(self, table: str, item_id: int, label: str) -> dict[str, Any]:
        row = self.tables[table].get(item_id)
        if row is None:
            raise ApiError(404, "NAO_ENCONTRADO", f"{label} {item_id} não encontrado")
        return row

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            raise ApiError(400, "VALIDACAO", "Corpo não é JSON válido") from None
        if not isinstance(data, dict):
            raise ApiError(400, "VALIDACAO", "Corpo deve ser um objeto JSON")
        return data

    def _notify(self, event: str, data: dict[str, Any]) -> None:
        """Signed webhook to the configured URL; delivery failures are recorded, never raised."""
        if not self.webhook_url:
            return
        body = json.dumps({"evento": event, "id": secrets.token_hex(8), "enviado_em": self.now(), "dados": data},
                          ensure_ascii=False, default=str).encode("utf-8")
        headers = {"Content-Type": "application/json", mapping.SIGNATURE_HEADER:
                   mapping.signature(self.credentials.get("webhook_secret", ""), body)}
        record = {"evento": event, "status": None}
        self.webhooks_sent.append(record)
        threading.Thread(target=_deliver, args=(self.webhook_url, body, headers, record), daemon=True).start()

    def _control(self, endpoint: str, request: Request) -> Response:
        """Adds `POST /__sandbox__/pdv` {items: [[code, description, qty, total]], payments: [[forma, valor]]}."""
        if endpoint != "_pdv":
            return super()._control(endpoint, request)
        data = self.body(request) or {}
        sale = self.add_pos_sale(items=[tuple(i) for i in data.get("items", [])],
                                 payments=[tuple(p) for p in data.get("payments", [])],
                                 document=str(data.get("document", "")))
        return self.json(sale)


def _deliver(url: str, body: bytes, headers: dict[str, str], record: dict[str, Any]) -> None:
    try:
        record["status"] = requests.post(url, data=body, headers=headers, timeout=5).status_code
    except requests.RequestException as exc:
        record["status"] = type(exc).__name__


# --------------------------------------------------------------------------- validation
def _check_cliente(data: dict[str, Any]) -> None:
    """The contract's customer rules, as 422 VALIDACAO with `campos`."""
    problems: list[tuple[str, str]] = []
    document = str(data.get("cpf_cnpj") or "")
    kind = data.get("tipo_pessoa")
    if kind not in {"F", "J"}:
        problems.append(("tipo_pessoa", "use F ou J"))
    if not document:
        problems.append(("cpf_cnpj", "obrigatório"))
    elif kind == "F" and not (len(document) == 11 and CPF().validate(document)):
        problems.append(("cpf_cnpj", "CPF inválido"))
    elif kind == "J" and not (len(document) == 14 and CNPJ().validate(document)):
        problems.append(("cpf_cnpj", "CNPJ inválido"))
    if len(str(data.get("nome") or "").strip()) < 2:
        problems.append(("nome", "obrigatório"))
    address = data.get("endereco") or {}
    if not re.fullmatch(r"\d{8}", str(address.get("cep") or "")):
        problems.append(("endereco.cep", "obrigatório, 8 dígitos"))
    if not re.fullmatch(r"\d{7}", str(address.get("codigo_ibge") or "")):
        problems.append(("endereco.codigo_ibge", "obrigatório, 7 dígitos"))
    if str(address.get("uf") or "") not in UFS:
        problems.append(("endereco.uf", "UF inexistente"))
    if problems:
        raise ApiError(422, "VALIDACAO", "Cliente inválido", problems)


def _venda_problems(data: dict[str, Any], clientes: dict[int, dict[str, Any]]) -> list[tuple[str, str]]:
    problems = []
    try:
        if int(data.get("cliente_id") or 0) not in clientes:
            problems.append(("cliente_id", "cliente inexistente"))
    except (TypeError, ValueError):
        problems.append(("cliente_id", "cliente inexistente"))
    items, parcelas = data.get("itens") or [], data.get("parcelas") or []
    if not items:
        problems.append(("itens", "ao menos um item"))
    if not parcelas:
        problems.append(("parcelas", "ao menos uma parcela"))
    total = sum(((_decimal(i.get("quantidade")) or 0) * (_decimal(i.get("valor_unitario")) or 0)
                 - (_decimal(i.get("desconto")) or 0) for i in items), Decimal(0))
    installments = sum(((_decimal(p.get("valor")) or 0) for p in parcelas), Decimal(0))
    if items and parcelas and total.quantize(Decimal("0.01")) != installments.quantize(Decimal("0.01")):
        problems.append(("parcelas", f"soma {installments:.2f} difere do total {total:.2f}"))
    if not all(_is_date(p.get("vencimento")) for p in parcelas):
        problems.append(("parcelas.vencimento", "AAAA-MM-DD"))
    return problems


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, TypeError):
        return None


def _is_date(value: Any) -> bool:
    try:
        date.fromisoformat(str(value))
        return True
    except ValueError:
        return False

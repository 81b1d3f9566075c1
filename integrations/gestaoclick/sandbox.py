"""A loopback fake of Gestão Click's REST API, faithful to what the reference says of it.

What it reproduces, because the connector must cope with each of these in production:
- two static headers, `access-token` and `secret-access-token`, per company; tokens the owner
  regenerates stop working at once (fault `expire_tokens` revokes the pair in use);
- the documented limits, 3 requests per second and 30,000 per day per company, counted by
  arrival; over them the answer is 429 "O limite de requisicoes foi atingido" with no Retry-After;
- the envelope `{code, status, meta, data}`, ids and money as strings, at most 100 records a page,
  `pagina` / `limite` (or `limit`) / `ordenacao` / `direcao`, `proxima_pagina` null on the last page;
- validation failures as HTTP 404 with the reason in `data.mensagem` (the same status as an
  unknown route);
- PUT replaces the whole record: fields left out are cleared, required fields are required again;
- a service order situação whose `tipo_lancamento` is 1 or 3 launches receivables by itself;
- NFS-e created, then sent with `/emitir/{id}`, processed by the city hall on a later read
  (authorised, or rejected with the reason in `mensagem_retorno`); single reads come wrapped in
  `{"NotaFiscalServico": {...}}`, lists come bare;
- `cpf_cnpj` search is a substring match on the text as stored (formatted), not on digits.

Behaviour the reference marks UNCONFIRMED is chosen strictly here (duplicate service-order codes
are refused, the 401 body shape, the NFS-e status words) so the connector's settings get exercised.
Paths are served both at the root and under `/api`, as the real hosts do.
"""
from __future__ import annotations

import secrets
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from validate_docbr import CNPJ, CPF
from werkzeug.exceptions import abort
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from integrations.sandbox_kit import IdSequence, SandboxApp

DOCUMENTED_RATE_LIMIT: list[tuple[int, float]] = [(3, 1.0), (30000, 86400.0)]
PAGE_LIMIT = 100

DEMO_CREDENTIALS: dict[str, str] = {
    "access_token": "gc-demo-access-5b0e7d1c94a2",
    "secret_access_token": "gc-demo-secret-a83f62e0b7d4",
}

LIMIT_MESSAGE = "O limite de requisicoes foi atingido"

# Account-specific lookups the support person picks ids from at setup.
LOJAS = [{"id": "1", "nome": "Clínica Demo - Matriz"}]
SITUACOES_OS = [
    {"id": "11", "nome": "Em aberto", "tipo_lancamento": "0"},
    {"id": "12", "nome": "Faturado (lança financeiro)", "tipo_lancamento": "3"},
    {"id": "13", "nome": "Concluído", "tipo_lancamento": "2"},
]
FORMAS_PAGAMENTO = [
    {"id": "21", "nome": "Dinheiro"}, {"id": "22", "nome": "PIX"}, {"id": "23", "nome": "Boleto"},
    {"id": "24", "nome": "Cartão de Crédito"},
]
CONTAS_BANCARIAS = [{"id": "31", "nome": "Conta Movimento"}]
PLANOS_CONTAS = [{"id": "41", "nome": "Receita de serviços", "tipo": "C"}]
ENABLED_ACTIVITY_CODES = {"0501", "05.01", "5.01"}

LOOKUPS = {"lojas": LOJAS, "situacoes_ordens_servicos": SITUACOES_OS, "formas_pagamentos": FORMAS_PAGAMENTO,
           "contas_bancarias": CONTAS_BANCARIAS, "planos_contas": PLANOS_CONTAS}

CLIENT_TEXT_FIELDS = ("tipo_pessoa", "nome", "razao_social", "cnpj", "cpf", "rg", "inscricao_estadual",
                      "inscricao_municipal", "data_nascimento", "telefone", "celular", "fax", "email")
ADDRESS_FIELDS = ("cep", "logradouro", "numero", "complemento", "bairro", "cidade_id", "nome_cidade", "estado")
RECEIVABLE_REQUIRED = ("descricao", "data_vencimento", "plano_contas_id", "forma_pagamento_id",
                       "conta_bancaria_id", "valor", "data_competencia")
NFSE_REQUIRED = ("destinatario_id_cliente", "valor_servico", "codigo_atividade", "codigo_natureza_operacao",
                 "iss_retido", "cidade_incidencia_issqn", "estado_incidencia_issqn", "descricao")


def _routes() -> list[Rule]:
    """Every resource at the root and under /api: integrators use both spellings of the base URL."""
    table = [
        ("/lojas", "lookup_lojas", ["GET"]),
        ("/situacoes_ordens_servicos", "lookup_situacoes", ["GET"]),
        ("/formas_pagamentos", "lookup_formas", ["GET"]),
        ("/contas_bancarias", "lookup_contas", ["GET"]),
        ("/planos_contas", "lookup_planos", ["GET"]),
        ("/clientes", "list_clientes", ["GET"]),
        ("/clientes", "create_cliente", ["POST"]),
        ("/clientes/<cid>", "get_cliente", ["GET"]),
        ("/clientes/<cid>", "update_cliente", ["PUT"]),
        ("/clientes/<cid>", "delete_cliente", ["DELETE"]),
        ("/ordens_servicos", "list_ordens", ["GET"]),
        ("/ordens_servicos", "create_ordem", ["POST"]),
        ("/ordens_servicos/<oid>", "get_ordem", ["GET"]),
        ("/recebimentos", "list_recebimentos", ["GET"]),
        ("/recebimentos", "create_recebimento", ["POST"]),
        ("/recebimentos/<rid>", "get_recebimento", ["GET"]),
        ("/recebimentos/<rid>", "update_recebimento", ["PUT"]),
        ("/notas_fiscais_servicos", "list_nfse", ["GET"]),
        ("/notas_fiscais_servicos", "create_nfse", ["POST"]),
        ("/notas_fiscais_servicos/<nid>", "get_nfse", ["GET"]),
        ("/notas_fiscais_servicos/<nid>", "update_nfse", ["PUT"]),
        ("/notas_fiscais_servicos/emitir/<nid>", "emit_nfse", ["POST"]),
        ("/vendas", "list_vendas", ["GET"]),
    ]
    rules = []
    for prefix in ("", "/api"):
        rules += [Rule(prefix + path, endpoint=endpoint, methods=methods) for path, endpoint, methods in table]
    return rules


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _fold(text: Any) -> str:
    """Accent- and case-insensitive text, as the ERP's LIKE searches behave."""
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _money(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value).replace(",", ".")).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None


def _valid_date(value: Any) -> bool:
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class Sandbox(SandboxApp):
    """Gestão Click for one demo company; construct with `rate_limit=` to scale its limits."""

    name = "gestaoclick"
    default_rate_limit = list(DOCUMENTED_RATE_LIMIT)

    def __init__(self, *, lost_response_rate: float = 0.0, nfse_processing_reads: int = 1, **faults: Any):
        # lost_response_rate: share of creations that are stored but answered 503, as when the
        # ERP commits and the connection drops; retries of such POSTs are where duplicates come from.
        self.lost_response_rate = lost_response_rate
        self.nfse_processing_reads = nfse_processing_reads
        # Fresh Rule objects per instance: a werkzeug Rule binds to one Map only, and tests run
        # several sandboxes in one process.
        self.rules = _routes()
        self.tokens: dict[tuple[str, str], str] = {}
        self.revoked: set[tuple[str, str]] = set()
        self.tokens[(DEMO_CREDENTIALS["access_token"], DEMO_CREDENTIALS["secret_access_token"])] = "company-1"
        super().__init__(**faults)

    # ------------------------------------------------------------------ state
    def reset_data(self) -> None:
        self.errors_injected = 0
        self.lost_responses = 0
        self.ids = IdSequence(1000)
        self.nfse_numbers = IdSequence(0)
        self.clientes: dict[str, dict] = {}
        self.ordens: dict[str, dict] = {}
        self.recebimentos: dict[str, dict] = {}
        self.nfse: dict[str, dict] = {}
        self.vendas: dict[str, dict] = {}
        self.reads_left: dict[str, int] = {}

    def state(self) -> dict[str, Any]:
        return {"clientes": list(self.clientes.values()), "ordens_servicos": list(self.ordens.values()),
                "recebimentos": list(self.recebimentos.values()),
                "notas_fiscais_servicos": list(self.nfse.values()), "vendas": list(self.vendas.values())}

    def stats(self) -> dict[str, Any]:
        """The kit's counters plus the failures this sandbox injected (to prove a fault test bit)."""
        with self.lock:
            return {**super().stats(), "errors_injected": self.errors_injected, "lost_responses": self.lost_responses}

    def issue_tokens(self, company: str = "company-1") -> dict[str, str]:
        """What the owner does in Configurações → API after revoking: a new pair for the same company."""
        pair = (f"gc-access-{secrets.token_hex(8)}", f"gc-secret-{secrets.token_hex(8)}")
        with self.lock:
            self.tokens[pair] = company
        return {"access_token": pair[0], "secret_access_token": pair[1]}

    # ------------------------------------------------------------------ kit hooks
    def account_of(self, request: Request) -> str:
        return self.tokens.get(self._pair(request), "anonymous")

    def throttled_response(self, request: Request, retry_after: float) -> Response:
        return self.json({"code": 429, "status": "error", "data": {"mensagem": LIMIT_MESSAGE}}, 429)

    def server_error_response(self, request: Request | None) -> Response:
        with self.lock:
            self.errors_injected += 1
        return self.json({"code": 503, "status": "error", "data": {"mensagem": "Serviço indisponível"}}, 503)

    def not_found(self, request: Request) -> Response:
        return self.json({"code": 404, "status": "error", "data": {"erro": "Not Found", "mensagem": ""}}, 404)

    # ------------------------------------------------------------------ envelope helpers
    @staticmethod
    def _pair(request: Request) -> tuple[str, str]:
        return (request.headers.get("access-token", ""), request.headers.get("secret-access-token", ""))

    def _authenticate(self, request: Request) -> str:
        """Refuse unknown or revoked token pairs; `expire_tokens` revokes the pair presented."""
        pair = self._pair(request)
        with self.lock:
            if self.faults.expire_tokens and pair in self.tokens:
                self.faults.expire_tokens = False
                self.revoked.add(pair)
            if pair in self.revoked or pair not in self.tokens:
                abort(self.json({"code": 401, "status": "error",
                                 "data": {"mensagem": "Token de acesso inválido ou revogado"}}, 401))
            return self.tokens[pair]

    def _refuse(self, mensagem: str) -> None:
        """The ERP's validation answer: HTTP 404 with the real reason in data.mensagem."""
        abort(self.json({"code": 404, "status": "error", "data": {"erro": "Not Found", "mensagem": mensagem}}, 404))

    def _ok(self, data: Any, status: int = 200) -> Response:
        return self.json({"code": status, "status": "success", "data": data}, status)

    def _created(self, data: Any) -> Response:
        """A stored record; sometimes the answer is lost on the way, as configured."""
        if self.lost_response_rate and self.rng.random() < self.lost_response_rate:
            with self.lock:
                self.lost_responses += 1
            return self.server_error_response(None)
        return self._ok(data, 201)

    def _page(self, request: Request, records: list[dict]) -> Response:
        """The documented list envelope: at most 100 a page, proxima_pagina null at the end."""
        args = request.args
        records = self._ordered(records, args.get("ordenacao"), args.get("direcao", "asc"))
        try:
            limit = min(PAGE_LIMIT, max(1, int(args.get("limite") or args.get("limit") or PAGE_LIMIT)))
            page = max(1, int(args.get("pagina") or 1))
        except ValueError:
            self._refuse("Parâmetro de paginação inválido")
        total = len(records)
        pages = max(1, -(-total // limit))
        chunk = records[(page - 1) * limit: page * limit]
        base = request.base_url
        meta = {"total_registros": total, "total_paginas": pages, "total_registros_pagina": len(chunk),
                "pagina_atual": page, "limite_por_pagina": limit,
                "pagina_anterior": page - 1 if page > 1 else None,
                "url_anterior": f"{base}?pagina={page - 1}" if page > 1 else None,
                "proxima_pagina": page + 1 if page < pages else None,
                "proxima_url": f"{base}?pagina={page + 1}" if page < pages else None}
        return self.json({"code": 200, "status": "success", "meta": meta, "data": chunk})

    @staticmethod
    def _ordered(records: list[dict], field: str | None, direction: str) -> list[dict]:
        """Numeric-aware ordering (ids and codes are strings holding numbers)."""
        key_field = field or "id"

        def key(rec: dict) -> tuple:
            value = _text(rec.get(key_field))
            return (0, int(value), "") if value.isdigit() else (1, 0, value)

        return sorted(records, key=key, reverse=(direction or "asc").lower() == "desc")

    def _find(self, table: dict[str, dict], rid: str, what: str) -> dict:
        record = table.get(rid)
        if record is None:
            self._refuse(f"{what} não encontrado")
        return record

    # ------------------------------------------------------------------ lookups
    def _lookup(self, request: Request, name: str) -> Response:
        self._authenticate(request)
        return self._page(request, [dict(r) for r in LOOKUPS[name]])

    def lookup_lojas(self, request: Request) -> Response:
        return self._lookup(request, "lojas")

    def lookup_situacoes(self, request: Request) -> Response:
        return self._lookup(request, "situacoes_ordens_servicos")

    def lookup_formas(self, request: Request) -> Response:
        return self._lookup(request, "formas_pagamentos")

    def lookup_contas(self, request: Request) -> Response:
        return self._lookup(request, "contas_bancarias")

    def lookup_planos(self, request: Request) -> Response:
        return self._lookup(request, "planos_contas")

    # ------------------------------------------------------------------ customers
    def list_clientes(self, request: Request) -> Response:
        self._authenticate(request)
        args = request.args
        with self.lock:
            found = list(self.clientes.values())
        if args.get("cpf_cnpj"):
            needle = args["cpf_cnpj"]
            found = [c for c in found if needle in c["cpf"] or needle in c["cnpj"]]
        for name in ("nome", "email", "telefone"):
            if args.get(name):
                found = [c for c in found if _fold(args[name]) in _fold(c[name])]
        if args.get("tipo_pessoa"):
            found = [c for c in found if c["tipo_pessoa"] == args["tipo_pessoa"]]
        return self._page(request, found)

    def get_cliente(self, request: Request, cid: str) -> Response:
        self._authenticate(request)
        with self.lock:
            return self._ok(self._find(self.clientes, cid, "Cliente"))

    def create_cliente(self, request: Request) -> Response:
        self._authenticate(request)
        record = self._cliente_from_body(self.body(request))
        with self.lock:
            record.update(id=str(self.ids.next()), cadastrado_em=_now(), modificado_em=_now())
            self.clientes[record["id"]] = record
        return self._created(record)

    def update_cliente(self, request: Request, cid: str) -> Response:
        """PUT replaces the record: whatever the body leaves out is gone."""
        self._authenticate(request)
        with self.lock:
            current = self._find(self.clientes, cid, "Cliente")
        record = self._cliente_from_body(self.body(request))
        with self.lock:
            record.update(id=cid, cadastrado_em=current["cadastrado_em"], modificado_em=_now())
            self.clientes[cid] = record
        return self._ok(record)

    def delete_cliente(self, request: Request, cid: str) -> Response:
        self._authenticate(request)
        with self.lock:
            self._find(self.clientes, cid, "Cliente")
            del self.clientes[cid]
        return self._ok("Cliente excluido com sucesso")

    def _cliente_from_body(self, body: Any) -> dict:
        """Validate like the ERP: tipo_pessoa and nome required, CPF/CNPJ check digits."""
        if not isinstance(body, dict):
            self._refuse("Corpo da requisição inválido")
        if _text(body.get("tipo_pessoa")) not in ("PF", "PJ", "ES"):
            self._refuse("O campo tipo_pessoa é obrigatório (PF, PJ ou ES)")
        if not _text(body.get("nome")).strip():
            self._refuse("O campo nome é obrigatório")
        if body.get("cpf") and not CPF().validate(_text(body["cpf"])):
            self._refuse("CPF inválido")
        if body.get("cnpj") and not CNPJ().validate(_text(body["cnpj"]).upper()):
            self._refuse("CNPJ inválido")
        if body.get("email") and "@" not in _text(body["email"]):
            self._refuse("E-mail inválido")
        record = {k: _text(body.get(k)) for k in CLIENT_TEXT_FIELDS}
        record["ativo"] = _text(body.get("ativo") or "1")
        record["contatos"] = list(body.get("contatos") or [])
        record["enderecos"] = [{"endereco": {k: _text((e.get("endereco") or {}).get(k)) for k in ADDRESS_FIELDS}}
                               for e in (body.get("enderecos") or []) if isinstance(e, dict)]
        return record

    def erp_user_edits_customer(self, cid: str, **changes: Any) -> dict:
        """A person editing the customer inside the ERP (for pull tests and ERP-only fields)."""
        with self.lock:
            record = self.clientes[cid]
            address = changes.pop("endereco", None)
            record.update({k: _text(v) for k, v in changes.items()})
            if address:
                record["enderecos"][0]["endereco"].update({k: _text(v) for k, v in address.items()})
            record["modificado_em"] = _now()
            return dict(record)

    def erp_user_adds_customer(self, **fields: Any) -> dict:
        """A customer typed into the ERP by a person (same rules as the API)."""
        record = self._cliente_from_body(fields)
        with self.lock:
            record.update(id=str(self.ids.next()), cadastrado_em=_now(), modificado_em=_now())
            self.clientes[record["id"]] = record
            return dict(record)

    # ------------------------------------------------------------------ service orders
    def list_ordens(self, request: Request) -> Response:
        self._authenticate(request)
        args = request.args
        with self.lock:
            found = list(self.ordens.values())
        for name in ("cliente_id", "codigo", "situacao_id", "loja_id"):
            if args.get(name):
                found = [o for o in found if o[name] == args[name]]
        found = self._in_dates(found, "data", args)
        return self._page(request, found)

    @staticmethod
    def _in_dates(records: list[dict], field: str, args) -> list[dict]:
        start, end = args.get("data_inicio"), args.get("data_fim")
        if start:
            records = [r for r in records if (r.get(field) or "")[:10] >= start]
        if end:
            records = [r for r in records if (r.get(field) or "")[:10] and r[field][:10] <= end]
        return records

    def get_ordem(self, request: Request, oid: str) -> Response:
        self._authenticate(request)
        with self.lock:
            return self._ok(self._find(self.ordens, oid, "Ordem de serviço"))

    def create_ordem(self, request: Request) -> Response:
        self._authenticate(request)
        body = self.body(request)
        with self.lock:
            record = self._ordem_from_body(body)
            record.update(id=str(self.ids.next()), cadastrado_em=_now(), modificado_em=_now())
            self.ordens[record["id"]] = record
            situacao = next(s for s in SITUACOES_OS if s["id"] == record["situacao_id"])
            if situacao["tipo_lancamento"] in ("1", "3"):
                self._launch_receivables(record)
        return self._created(record)

    def _ordem_from_body(self, body: Any) -> dict:
        """Required codigo/cliente_id/situacao_id/data; parcelas must add up to the order."""
        if not isinstance(body, dict):
            self._refuse("Corpo da requisição inválido")
        codigo = _text(body.get("codigo"))
        if not codigo.isdigit():
            self._refuse("O campo codigo é obrigatório e deve ser numérico")
        if any(o["codigo"] == codigo for o in self.ordens.values()):
            self._refuse(f"Já existe uma ordem de serviço com o código {codigo}")
        cliente = self.clientes.get(_text(body.get("cliente_id")))
        if cliente is None:
            self._refuse("Cliente não encontrado")
        if not any(s["id"] == _text(body.get("situacao_id")) for s in SITUACOES_OS):
            self._refuse("Situação não encontrada")
        if not _valid_date(body.get("data")):
            self._refuse("O campo data é obrigatório")
        servicos = self._servicos(body.get("servicos") or [])
        pagamentos = self._pagamentos(body.get("pagamentos") or [])
        total = sum((_money(s["servico"]["valor_total"]) for s in servicos), Decimal("0.00"))
        if pagamentos and sum((_money(p["pagamento"]["valor"]) for p in pagamentos), Decimal("0.00")) != total:
            self._refuse("O valor do pedido não pode ser diferente do valor das parcelas")
        return {"codigo": codigo, "cliente_id": cliente["id"], "nome_cliente": cliente["nome"],
                "situacao_id": _text(body["situacao_id"]), "data": _text(body["data"]),
                "loja_id": _text(body.get("loja_id") or "1"), "valor_total": str(total),
                "condicao_pagamento": _text(body.get("condicao_pagamento") or "a_vista"),
                "numero_parcelas": str(len(pagamentos)), "observacoes": _text(body.get("observacoes")),
                "observacoes_interna": _text(body.get("observacoes_interna")),
                "servicos": servicos, "pagamentos": pagamentos}

    def _servicos(self, items: list) -> list[dict]:
        out = []
        for item in items:
            s = (item or {}).get("servico") or {}
            quantity, price = _money(s.get("quantidade")), _money(s.get("valor_venda"))
            if not _text(s.get("nome_servico")) and not s.get("servico_id"):
                self._refuse("Informe o serviço (servico_id ou nome_servico)")
            if quantity is None or price is None:
                self._refuse("Quantidade e valor do serviço são obrigatórios")
            out.append({"servico": {**{k: _text(v) for k, v in s.items()}, "quantidade": str(quantity),
                                    "valor_venda": str(price), "valor_total": str((quantity * price).quantize(Decimal("0.01")))}})
        return out

    def _pagamentos(self, items: list) -> list[dict]:
        out = []
        for item in items:
            p = (item or {}).get("pagamento") or {}
            if not _valid_date(p.get("data_vencimento")) or _money(p.get("valor")) is None:
                self._refuse("Data de vencimento e valor da parcela são obrigatórios")
            if not any(f["id"] == _text(p.get("forma_pagamento_id")) for f in FORMAS_PAGAMENTO):
                self._refuse("Forma de pagamento não encontrada")
            out.append({"pagamento": {k: _text(v) for k, v in p.items()}})
        return out

    def _launch_receivables(self, ordem: dict) -> None:
        """What a situação with tipo_lancamento 1/3 does: one receivable per parcela."""
        for p in ordem["pagamentos"]:
            pay = p["pagamento"]
            self._store_receivable({"descricao": f"Ordem de serviço de nº {ordem['codigo']}",
                                    "data_vencimento": pay["data_vencimento"], "valor": pay["valor"],
                                    "plano_contas_id": pay.get("plano_contas_id") or PLANOS_CONTAS[0]["id"],
                                    "forma_pagamento_id": pay["forma_pagamento_id"],
                                    "conta_bancaria_id": CONTAS_BANCARIAS[0]["id"],
                                    "data_competencia": ordem["data"], "entidade": "C",
                                    "cliente_id": ordem["cliente_id"], "loja_id": ordem["loja_id"]})

    # ------------------------------------------------------------------ receivables
    def list_recebimentos(self, request: Request) -> Response:
        self._authenticate(request)
        args = request.args
        with self.lock:
            found = list(self.recebimentos.values())
        for name in ("cliente_id", "codigo", "loja_id", "forma_pagamento_id", "conta_bancaria_id"):
            if args.get(name):
                found = [r for r in found if r[name] == args[name]]
        status = args.get("liquidado")
        if status == "pg":
            found = [r for r in found if r["liquidado"] == "1"]
        elif status in ("ab", "at"):
            today = date.today().isoformat()
            found = [r for r in found if r["liquidado"] == "0" and (status == "ab" or r["data_vencimento"] < today)]
        found = self._in_dates(found, "data_vencimento", args)
        return self._page(request, found)

    def get_recebimento(self, request: Request, rid: str) -> Response:
        self._authenticate(request)
        with self.lock:
            return self._ok(self._find(self.recebimentos, rid, "Recebimento"))

    def create_recebimento(self, request: Request) -> Response:
        self._authenticate(request)
        body = self.body(request)
        with self.lock:
            record = self._store_receivable(self._receivable_from_body(body))
        return self._created(record)

    def update_recebimento(self, request: Request, rid: str) -> Response:
        """The only way to settle: PUT the whole record with liquidado=1 and data_liquidacao."""
        self._authenticate(request)
        body = self.body(request)
        with self.lock:
            current = self._find(self.recebimentos, rid, "Recebimento")
            fields = self._receivable_from_body(body)
            liquidado = _text(body.get("liquidado") or "0")
            if liquidado == "1" and not _valid_date(body.get("data_liquidacao")):
                self._refuse("O campo data_liquidacao é obrigatório para recebimentos liquidados")
            record = self._receivable_record(fields)
            record.update(id=rid, codigo=current["codigo"], cadastrado_em=current["cadastrado_em"],
                          modificado_em=_now(), liquidado=liquidado,
                          data_liquidacao=_text(body.get("data_liquidacao")) if liquidado == "1" else None)
            self.recebimentos[rid] = record
        return self._ok(record)

    def _receivable_from_body(self, body: Any) -> dict:
        if not isinstance(body, dict):
            self._refuse("Corpo da requisição inválido")
        for name in RECEIVABLE_REQUIRED:
            if not _text(body.get(name)).strip():
                self._refuse(f"O campo {name} é obrigatório")
        for name in ("data_vencimento", "data_competencia"):
            if not _valid_date(body[name]):
                self._refuse(f"O campo {name} deve estar no formato AAAA-MM-DD")
        for name in ("valor", "juros", "desconto", "taxa_banco", "taxa_operadora"):
            if body.get(name) not in (None, "") and _money(body[name]) is None:
                self._refuse(f"O campo {name} deve ser numérico")
        for name, table in (("plano_contas_id", PLANOS_CONTAS), ("forma_pagamento_id", FORMAS_PAGAMENTO),
                            ("conta_bancaria_id", CONTAS_BANCARIAS)):
            if not any(r["id"] == _text(body[name]) for r in table):
                self._refuse(f"Registro informado em {name} não encontrado")
        if body.get("cliente_id") and _text(body["cliente_id"]) not in self.clientes:
            self._refuse("Cliente não encontrado")
        return dict(body)

    def _receivable_record(self, body: dict) -> dict:
        def amount(name: str) -> Decimal:
            return _money(body.get(name)) or Decimal("0.00")

        total = amount("valor") + amount("juros") - amount("desconto") - amount("taxa_banco") - amount("taxa_operadora")
        cliente = self.clientes.get(_text(body.get("cliente_id")), {})
        forma = next(f for f in FORMAS_PAGAMENTO if f["id"] == _text(body["forma_pagamento_id"]))
        conta = next(c for c in CONTAS_BANCARIAS if c["id"] == _text(body["conta_bancaria_id"]))
        return {"descricao": _text(body["descricao"]), "valor": str(amount("valor")), "juros": str(amount("juros")),
                "desconto": str(amount("desconto")), "taxa_banco": str(amount("taxa_banco")),
                "taxa_operadora": str(amount("taxa_operadora")), "valor_total": str(total),
                "plano_contas_id": _text(body["plano_contas_id"]), "forma_pagamento_id": forma["id"],
                "nome_forma_pagamento": forma["nome"], "conta_bancaria_id": conta["id"],
                "nome_conta_bancaria": conta["nome"], "entidade": _text(body.get("entidade") or "C"),
                "cliente_id": _text(body.get("cliente_id")), "nome_cliente": cliente.get("nome", ""),
                "loja_id": _text(body.get("loja_id") or "1"), "data_vencimento": _text(body["data_vencimento"]),
                "data_competencia": _text(body["data_competencia"]), "liquidado": "0", "data_liquidacao": None}

    def _store_receivable(self, body: dict) -> dict:
        record = self._receivable_record(body)
        rid = str(self.ids.next())
        record.update(id=rid, codigo=rid, cadastrado_em=_now(), modificado_em=_now())
        self.recebimentos[rid] = record
        return record

    def erp_user_settles(self, rid: str, paid_on: str) -> dict:
        """A person marking the receivable paid inside the ERP (for receipt pulls)."""
        with self.lock:
            record = self.recebimentos[rid]
            record.update(liquidado="1", data_liquidacao=paid_on, modificado_em=_now())
            return dict(record)

    # ------------------------------------------------------------------ NFS-e
    def list_nfse(self, request: Request) -> Response:
        self._authenticate(request)
        with self.lock:
            self._advance_all()
            found = [dict(n) for n in self.nfse.values()]
        return self._page(request, self._in_dates(found, "cadastrado_em", request.args))

    def get_nfse(self, request: Request, nid: str) -> Response:
        self._authenticate(request)
        with self.lock:
            note = self._find(self.nfse, nid, "Nota fiscal")
            self._advance(note)
            return self._ok({"NotaFiscalServico": dict(note)})

    def create_nfse(self, request: Request) -> Response:
        self._authenticate(request)
        body = self.body(request)
        with self.lock:
            fields = self._nfse_from_body(body)
            nid = str(self.ids.next())
            note = {**fields, "id": nid, "situacao": "Em aberto", "numero": "", "serie": "", "rps": "",
                    "codigo_verificacao": "", "data_emissao": None, "mensagem_retorno": "",
                    "cadastrado_em": _now(), "modificado_em": _now()}
            self.nfse[nid] = note
            if _text(body.get("envio_automatico")) == "1":
                self._send(note)
        return self._created({"NotaFiscalServico": dict(note)})

    def update_nfse(self, request: Request, nid: str) -> Response:
        self._authenticate(request)
        body = self.body(request)
        with self.lock:
            note = self._find(self.nfse, nid, "Nota fiscal")
            if note["situacao"] not in ("Em aberto", "Rejeitada"):
                self._refuse("Somente notas em aberto ou rejeitadas podem ser alteradas")
            note.update(self._nfse_from_body(body), modificado_em=_now())
            return self._ok({"NotaFiscalServico": dict(note)})

    def emit_nfse(self, request: Request, nid: str) -> Response:
        self._authenticate(request)
        with self.lock:
            note = self._find(self.nfse, nid, "Nota fiscal")
            if note["situacao"] not in ("Em aberto", "Rejeitada"):
                self._refuse(f"A nota fiscal não pode ser emitida na situação {note['situacao']}")
            self._send(note)
            return self._ok({"NotaFiscalServico": dict(note)})

    def _nfse_from_body(self, body: Any) -> dict:
        if not isinstance(body, dict):
            self._refuse("Corpo da requisição inválido")
        for name in NFSE_REQUIRED:
            if not _text(body.get(name)).strip():
                self._refuse(f"O campo {name} é obrigatório")
        cliente = self.clientes.get(_text(body["destinatario_id_cliente"]))
        if cliente is None:
            self._refuse("Destinatário não encontrado")
        value = _money(body["valor_servico"])
        if value is None or value <= 0:
            self._refuse("O campo valor_servico deve ser maior que zero")
        return {**{name: _text(body[name]) for name in NFSE_REQUIRED}, "valor_servico": str(value),
                "valor_total": str(value), "destinatario_cpf": cliente["cpf"], "destinatario_cnpj": cliente["cnpj"],
                "loja_id": _text(body.get("loja_id") or "1")}

    def _send(self, note: dict) -> None:
        note.update(situacao="Em processamento", mensagem_retorno="", modificado_em=_now())
        self.reads_left[note["id"]] = self.nfse_processing_reads

    def _advance_all(self) -> None:
        for note in self.nfse.values():
            self._advance(note)

    def _advance(self, note: dict) -> None:
        """The city hall answers after a few reads: authorised, or rejected with its reason."""
        if note["situacao"] != "Em processamento":
            return
        left = self.reads_left.get(note["id"], 0)
        if left > 0:
            self.reads_left[note["id"]] = left - 1
            return
        reason = self._city_hall_reason(note)
        if reason:
            note.update(situacao="Rejeitada", mensagem_retorno=reason, modificado_em=_now())
            return
        number = self.nfse_numbers.next()
        note.update(situacao="Autorizada", numero=str(number), rps=str(number), serie="1",
                    codigo_verificacao=secrets.token_hex(4).upper(), data_emissao=_now(), modificado_em=_now())

    def _city_hall_reason(self, note: dict) -> str:
        cliente = self.clientes.get(note["destinatario_id_cliente"], {})
        address = ((cliente.get("enderecos") or [{}])[0] or {}).get("endereco") or {}
        if not (cliente.get("cpf") or cliente.get("cnpj")):
            return "E160 - CPF/CNPJ do tomador não informado"
        if not all(address.get(k) for k in ("cep", "logradouro", "numero", "nome_cidade", "estado")):
            return "E172 - Endereço do tomador incompleto"
        if note["codigo_atividade"] not in ENABLED_ACTIVITY_CODES:
            return f"E203 - Código de atividade {note['codigo_atividade']} não habilitado para o prestador"
        return ""

    # ------------------------------------------------------------------ counter sales
    def list_vendas(self, request: Request) -> Response:
        self._authenticate(request)
        args = request.args
        with self.lock:
            found = [dict(v) for v in self.vendas.values()]
        if args.get("tipo"):
            found = [v for v in found if v["tipo"] == args["tipo"]]
        for name in ("cliente_id", "situacao_id", "loja_id"):
            if args.get(name):
                found = [v for v in found if v[name] == args[name]]
        return self._page(request, self._in_dates(found, "data", args))

    def erp_user_sells_at_counter(self, total: str, *, sold_on: str | None = None, cliente_id: str = "",
                                  forma: str = "PIX", item: str = "Ração 1kg") -> dict:
        """A counter (balcão) sale made in the ERP."""
        forma_rec = next(f for f in FORMAS_PAGAMENTO if f["nome"] == forma)
        with self.lock:
            vid = str(self.ids.next())
            sold_on = sold_on or date.today().isoformat()
            record = {"id": vid, "codigo": vid, "tipo": "vendas_balcao", "data": sold_on,
                      "cliente_id": cliente_id, "nome_cliente": self.clientes.get(cliente_id, {}).get("nome", ""),
                      "valor_total": total, "situacao_id": "51", "nome_situacao": "Concretizada", "loja_id": "1",
                      "cadastrado_em": f"{sold_on} 10:15:00", "modificado_em": _now(),
                      "pagamentos": [{"pagamento": {"forma_pagamento_id": forma_rec["id"],
                                                    "nome_forma_pagamento": forma_rec["nome"], "valor": total}}],
                      "produtos": [{"produto": {"nome_produto": item, "quantidade": "1.00", "valor_venda": total}}],
                      "servicos": []}
            self.vendas[vid] = record
            return dict(record)

    def erp_user_edits_sale(self, vid: str, **changes: Any) -> dict:
        with self.lock:
            self.vendas[vid].update({k: _text(v) for k, v in changes.items()}, modificado_em=_now())
            return dict(self.vendas[vid])


def demo_settings(url: str) -> dict[str, str]:
    """The account-specific ids this sandbox's demo company has (what support picks at setup)."""
    return {"base_url": url, "loja_id": LOJAS[0]["id"], "os_situacao_id": SITUACOES_OS[0]["id"],
            "plano_contas_id": PLANOS_CONTAS[0]["id"], "conta_bancaria_id": CONTAS_BANCARIAS[0]["id"],
            "forma_pagamento_id": FORMAS_PAGAMENTO[2]["id"], "nfse_codigo_atividade": "05.01",
            "nfse_cidade_incidencia": "São Paulo", "nfse_estado_incidencia": "SP"}

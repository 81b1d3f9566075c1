"""VHSYS (API v2) connector: customers both ways, service orders with receivables, NFS-e, pulls.

The facts this follows are in /work/shared/erp/vhsys.md. The ones that shape the code:
- two static headers authenticate every call; nothing expires or refreshes, so a refused token pair
  means the clinic regenerated it in VHSYS and support must enter the new one (AuthError);
- success is read from the body envelope, never from the HTTP status: invalid tokens come as HTTP 200
  with code 401, and an empty list comes as HTTP 403 "Nenhum ... encontrado!";
- VHSYS has no external-id field and no idempotency key, so every create is preceded by a search for a
  marker an earlier attempt would have left (CPF/CNPJ for customers, "[TecPet:<id>]" in the notes of
  orders and NFS-e, n_documento_rec on receivables);
- `data_modificacao` takes Brasília wall-clock time with one-second resolution, so pull cursors remember
  the ids already delivered at the newest second instead of trusting a strict "after".
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterator

from ..base import (AuthError, Capability, Connector, ConnectorContext, CredentialField, CustomerRecord,
                    FinancialResult, FiscalResult, FiscalState, InvoiceRecord, NotFoundError, PermanentError,
                    PullPage, PushResult, RateLimit, RateLimitedError, RecordRequirement, RemoteCustomer,
                    SettingField, TransientError)
from . import mapping

OK_STATUSES = ("success", "sucesso")
OK_CODES = (200, 201)
LIMIT_MAX = 250

# What VHSYS is assumed to enforce per account. It documents no limit; production answers carry
# `x-ratelimit-limit: 10000` with an unknown window, so the conservative reading is 10,000 per hour,
# plus a burst ceiling of 5 per second so a burst never looks like abuse to the CDN in front of the API.
ASSUMED_ERP_LIMITS: tuple[tuple[int, float], ...] = ((5, 1.0), (10000, 3600.0))
# The shared limiter paces requests evenly and widens each window by its safety margin, so the
# connector can spend the whole assumed budget (the limit itself is still a guess: see the docstring).
OWN_BUDGET = ASSUMED_ERP_LIMITS


def _length_rule(field: str, limit: int, what: str) -> RecordRequirement:
    return RecordRequirement(field=field, code=f"vhsys.{field}_too_long", severity="error", max_length=limit,
                             message=f"VHSYS keeps at most {limit} characters in the {what}.")


class VhsysConnector(Connector):
    """VHSYS API v2.

    Rate limit: VHSYS documents none (see ASSUMED_ERP_LIMITS: 10,000/hour and 5/second assumed);
    the connector spends that budget per account across all workers, paced evenly by the shared limiter.
    Static tokens and no per-instance state on the customer path: one job sends up to
    `push_concurrency` customers at once (each request still waits for the shared limiter).
    """

    name = "vhsys"
    label = "VHSYS"
    two_way = True
    auth_kind = "static"
    capabilities = frozenset({
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.ISSUE_INVOICE, Capability.TRACK_INVOICE, Capability.PULL_POS_SALES,
        Capability.PULL_RECEIPTS, Capability.SETTLE_RECEIVABLE,
    })
    credential_fields = (
        CredentialField("access_token", "Access-Token",
                        help="In VHSYS: Minhas Integrações → Integrações → Integração via API → Gerar Novo Token."),
        CredentialField("secret_access_token", "Secret-Access-Token", help="Shown next to the Access-Token."),
        CredentialField("partner_token", "Partner token", required=False,
                        help="Only for registered VHSYS partners; leave empty otherwise."),
    )
    setting_fields = (
        SettingField("base_url", "API address", "https://api.vhsys.com/v2",
                     help="https://api.vhsys.com.br/v2 also works."),
        SettingField("bank_account_id", "Bank account id for receivables",
                     help="id_banco used on receivables; empty = the first active account in VHSYS."),
        SettingField("category_id", "Revenue category id", help="id_categoria on receivables; optional."),
        SettingField("service_id", "Service id on service orders",
                     help="id_servico of a VHSYS service used for every order line; optional (UNCONFIRMED "
                          "whether VHSYS demands it)."),
        SettingField("nfse_service_code", "NFS-e service code (atividade)",
                     help="Municipal service-list code; empty = the code on the invoice items."),
        SettingField("nfse_series", "NFS-e series (serie_nota)"),
        SettingField("nfse_regime", "NFS-e regime (regime_pedido)"),
        SettingField("nfse_nature", "NFS-e nature (natureza_pedido)"),
        SettingField("nfse_environment", "NFS-e environment (ambiente)"),
        SettingField("nfse_number_field", "NFS-e number field", "NumeroNFS",
                     help="UNCONFIRMED: field of GET /notas-servico/{id} holding the NFS-e number."),
        SettingField("nfse_status_field", "NFS-e status field", "status_nota",
                     help="UNCONFIRMED: field of GET /notas-servico/{id} holding the issuing status."),
        SettingField("nfse_message_field", "NFS-e message field", "mensagem_nota",
                     help="UNCONFIRMED: field of GET /notas-servico/{id} holding the rejection reason."),
        SettingField("pos_modified_field", "Counter sale modification field", "data_mod_pedido",
                     help="UNCONFIRMED: modification timestamp of /vendas-balcao rows (pedido family name)."),
        SettingField("page_size", "Page size for pulls", "100", help="1 to 250."),
    )
    rate_limit = RateLimit(windows=OWN_BUDGET)
    push_concurrency = 3
    record_requirements = (
        _length_rule("name", 255, "customer name (razao_cliente)"),
        _length_rule("number", 7, "address number (numero_cliente)"),
        _length_rule("district", 45, "district (bairro_cliente)"),
        _length_rule("complement", 45, "address complement (complemento_cliente)"),
        _length_rule("phone", 20, "phone (celular_cliente / fone_cliente)"),
    )
    batch_size = 200  # no batch calls: records per step at most, for an account whose pace allows them
    notes = (
        "Each billed invoice becomes a service order (OS) with its installments, plus one receivable per "
        "installment marked OS_<order>. Do not use \"Lançar Contas\" on these orders inside VHSYS, or the "
        "amounts are billed twice.",
        "The NFS-e is issued with the clinic's municipal setup kept in VHSYS (certificate, series, service code).",
        "VHSYS webhooks do not publish their delivery format, so changes are fetched periodically.",
    )

    def __init__(self, ctx: ConnectorContext):
        super().__init__(ctx)
        self._bank_id: str | None = self.settings.get("bank_account_id") or None

    # ------------------------------------------------------------------ transport
    def _url(self, path: str) -> str:
        return self.settings["base_url"].rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        creds = self.ctx.credentials
        headers = {"access-token": creds.get("access_token", ""),
                   "secret-access-token": creds.get("secret_access_token", ""),
                   "Content-Type": "application/json", "Cache-Control": "no-cache"}
        if creds.get("partner_token"):
            headers["partner-token"] = creds["partner_token"]
        return headers

    def _call(self, method: str, path: str, *, what: str, params: dict[str, Any] | None = None,
              body: Any = None, empty_list: bool = False) -> dict[str, Any]:
        """One API call with the envelope read the VHSYS way; returns the whole body on success.

        `empty_list`: a "Nenhum ... encontrado!" answer means an empty list (True) or a missing record.
        """
        resp = self.http(method, self._url(path), headers=self._headers(), params=params, json=body)
        payload = self._json(resp)
        code = _int(payload.get("code"), resp.status_code)
        status = str(payload.get("status") or "").lower()
        if status in OK_STATUSES and code in OK_CODES:
            return payload
        if code == 401 or resp.status_code == 401:
            raise AuthError(_auth_message(payload), status=code, raw=payload)
        if code == 429:
            raise RateLimitedError(retry_after=float(resp.headers.get("Retry-After") or 1.0), status=code, raw=payload)
        if code >= 500:
            raise TransientError(f"VHSYS had an internal error ({_text(payload)})", status=code, raw=payload)
        if _nothing_found(payload):
            if empty_list:
                return {"data": [], "paging": {"total_count": 0, "total": 0}}
            raise NotFoundError(f"VHSYS has no such {what}: {_text(payload)}", status=code, raw=payload)
        if code == 404:
            raise NotFoundError(f"VHSYS does not know this {what}: {_text(payload)}", status=code, raw=payload)
        raise mapping.permanent_error(payload, f"the {what}", status=code)

    @staticmethod
    def _json(resp) -> dict[str, Any]:
        """VHSYS always answers JSON; anything else is the CDN or a proxy talking."""
        try:
            payload = resp.json()
        except ValueError:
            if resp.status_code >= 500:
                raise TransientError(f"VHSYS answered HTTP {resp.status_code} without JSON", status=resp.status_code)
            raise PermanentError(f"VHSYS (or the network in front of it) refused the request with HTTP "
                                 f"{resp.status_code}: {resp.text[:200]}", status=resp.status_code)
        return payload if isinstance(payload, dict) else {"code": resp.status_code, "data": payload}

    def _record(self, method: str, path: str, *, what: str, body: Any = None) -> dict[str, Any]:
        """A call whose `data` is one record (VHSYS sometimes wraps it in a 1-element list)."""
        data = self._call(method, path, what=what, body=body).get("data")
        if isinstance(data, list):
            data = data[0] if data else {}
        return data if isinstance(data, dict) else {}

    def _rows(self, path: str, what: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A sub-resource list (no paging), empty when VHSYS says "Nenhum ... encontrado!"."""
        data = self._call("GET", path, what=what, params=params, empty_list=True).get("data")
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def _page(self, path: str, what: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """One page of a paged list; also whether VHSYS has more after it."""
        payload = self._call("GET", path, what=what, params=params, empty_list=True)
        rows = [r for r in payload.get("data") or [] if isinstance(r, dict)]
        paging = payload.get("paging") or {}
        total = max(_int(paging.get("total_count"), 0), _int(paging.get("total"), 0))
        seen_so_far = _int(params.get("offset"), 0) + len(rows)
        return rows, len(rows) >= _int(params.get("limit"), LIMIT_MAX) and (not total or seen_so_far < total)

    def _all(self, path: str, what: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            rows, more = self._page(path, what, dict(params, limit=LIMIT_MAX, offset=offset))
            yield from rows
            if not more:
                return
            offset += len(rows)

    # ------------------------------------------------------------------ connection
    def test_connection(self) -> str:
        payload = self._call("GET", "/clientes", what="customer list", params={"limit": 1}, empty_list=True)
        count = _int((payload.get("paging") or {}).get("total_count"), len(payload.get("data") or []))
        return f"Connected to VHSYS: the tokens were accepted ({count} customers registered)."

    # ------------------------------------------------------------------ customers
    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """Search by CPF/CNPJ, masked first (how VHSYS stores it) then bare, comparing digits/letters only."""
        tax_id = mapping.alnum(customer.tax_id)
        if not tax_id:
            return None
        for query in dict.fromkeys((mapping.format_tax_id(tax_id), tax_id)):
            rows = self._rows("/clientes", "customer", {"cnpj_cliente": query, "lixeira": "Nao", "limit": 50})
            matches = [r for r in rows if mapping.alnum(r.get("cnpj_cliente")) == tax_id]
            if matches:
                oldest = min(matches, key=lambda r: _int(r.get("id_cliente"), 0))
                return mapping.customer_from_remote(oldest)
        return None

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        data = self._record("POST", "/clientes", what="customer", body=mapping.customer_payload(customer))
        return PushResult(remote_id=str(data.get("id_cliente")), created=True, remote_copy=data)

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        data = self._record("PUT", f"/clientes/{remote_id}", what="customer", body=mapping.customer_payload(customer))
        return PushResult(remote_id=str(data.get("id_cliente") or remote_id), created=False, remote_copy=data)

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        return mapping.customer_from_remote(self._record("GET", f"/clientes/{remote_id}", what="customer"))

    # ------------------------------------------------------------------ invoices -> OS + receivables
    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        """Create (or finish creating) the OS, its services, its parcelas and one receivable per installment.

        Every step first looks for what an earlier attempt left, so a retried job completes the
        work instead of duplicating it; a Redis lock keeps two workers off the same invoice.
        """
        with self.ctx.http.lock(f"vhsys:invoice:{self.ctx.account_key}:{invoice.id}", timeout=180, wait=180):
            order = self._find_order(invoice, customer_remote_id) or self._record(
                "POST", "/ordens-servico", what="service order",
                body=mapping.service_order_payload(invoice, customer_remote_id))
            order_id = str(order.get("id_ordem"))
            self._ensure_services(order_id, invoice)
            if invoice.installments:
                self._call("POST", f"/ordens-servico/{order_id}/parcelas", what="installments",
                           body=mapping.installments_payload(invoice.installments, invoice.number))
            receivables = self._ensure_receivables(invoice, order, customer_remote_id)
            return FinancialResult(order_remote_id=order_id, order_number=str(order.get("id_pedido") or ""),
                                   receivable_remote_ids=receivables)

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        """The OS made for this invoice, but only when it is complete (every receivable exists).

        A half-made OS answers None so the caller runs push_invoice, which reuses and completes it.
        """
        order = self._find_order(invoice)
        if order is None:
            return None
        order_id = str(order.get("id_ordem"))
        if not invoice.installments:
            if not self._rows(f"/ordens-servico/{order_id}/servicos", "service order lines"):
                return None
            return FinancialResult(order_id, str(order.get("id_pedido") or ""), [])
        existing = self._existing_receivables(invoice, order_id, str(order.get("id_cliente") or ""))
        wanted = [mapping.installment_document(invoice.id, i.number) for i in invoice.installments]
        if not all(doc in existing for doc in wanted):
            return None
        return FinancialResult(order_id, str(order.get("id_pedido") or ""), [existing[d] for d in wanted])

    def _find_order(self, invoice: InvoiceRecord, customer_remote_id: str = "") -> dict[str, Any] | None:
        """An OS whose notes carry this invoice's marker, modified since the day before it was billed.

        The id_cliente filter (when known) only narrows the scan; the marker check is what decides.
        """
        marker = mapping.invoice_marker(invoice.id)
        params = {"data_modificacao": (invoice.issue_date - timedelta(days=1)).isoformat(), "lixeira": "Nao"}
        if customer_remote_id:
            params["id_cliente"] = customer_remote_id
        for row in self._all("/ordens-servico", "service order", params):
            if marker in f"{row.get('obs_pedido') or ''} {row.get('obs_interno_pedido') or ''}":
                return row
        return None

    def _ensure_services(self, order_id: str, invoice: InvoiceRecord) -> None:
        """Service lines are posted once: an OS that already has lines was filled by an earlier attempt."""
        if self._rows(f"/ordens-servico/{order_id}/servicos", "service order lines"):
            return
        self._call("POST", f"/ordens-servico/{order_id}/servicos", what="service order lines",
                   body=mapping.service_items_payload(invoice.items, self.settings.get("service_id", "")))

    def _existing_receivables(self, invoice: InvoiceRecord, order_id: str, customer_remote_id: str) -> dict[str, str]:
        """n_documento_rec -> id_conta_rec of receivables an earlier attempt made for this invoice."""
        params = {"lixeira": "Nao"}
        if customer_remote_id:
            params["id_cliente"] = customer_remote_id
        marker = mapping.invoice_marker(invoice.id)
        found: dict[str, str] = {}
        for row in self._all("/contas-receber", "receivable", params):
            linked = row.get("identificacao") == mapping.order_identification(order_id)
            if linked or marker in str(row.get("observacoes_rec") or ""):
                found.setdefault(str(row.get("n_documento_rec") or ""), str(row.get("id_conta_rec")))
        return found

    def _ensure_receivables(self, invoice: InvoiceRecord, order: dict[str, Any], customer_remote_id: str) -> list[str]:
        order_id = str(order.get("id_ordem"))
        existing = self._existing_receivables(invoice, order_id, customer_remote_id)
        ids = []
        for installment in invoice.installments:
            doc = mapping.installment_document(invoice.id, installment.number)
            if doc not in existing:
                body = mapping.receivable_payload(
                    invoice, installment, len(invoice.installments), order_id=order_id,
                    order_number=str(order.get("id_pedido") or order_id), customer_remote_id=customer_remote_id,
                    bank_id=self._bank_account(), category_id=self.settings.get("category_id", ""))
                existing[doc] = str(self._record("POST", "/contas-receber", what="receivable", body=body)
                                    .get("id_conta_rec"))
            ids.append(existing[doc])
        return ids

    def _bank_account(self) -> str:
        """id_banco is required on receivables: the setting, else the first active VHSYS account."""
        if self._bank_id:
            return self._bank_id
        rows = self._rows("/contas-bancarias", "bank account")
        active = [r for r in rows if str(r.get("status_banco") or "Ativo").casefold() != "inativo"]
        if not active:
            raise PermanentError("VHSYS has no active bank account to file receivables under. Create one in "
                                 "VHSYS (Financeiro → Contas bancárias) or set its id in the integration settings.")
        self._bank_id = str(active[0].get("id_banco_cad"))
        return self._bank_id

    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        """Baixa by PUT liquidado_rec=Sim; a receivable already settled is left as it is (retry-safe)."""
        current = self._record("GET", f"/contas-receber/{receivable_remote_id}", what="receivable")
        if str(current.get("liquidado_rec")) == "Sim":
            return
        self._call("PUT", f"/contas-receber/{receivable_remote_id}", what="receivable payment",
                   body=mapping.settle_payload(current, amount, paid_on))

    # ------------------------------------------------------------------ NFS-e
    def issue_invoice(self, invoice: InvoiceRecord, financial: FinancialResult, customer_remote_id: str) -> FiscalResult:
        """Create the NFS-e (once) and ask VHSYS to issue it; the outcome usually comes later.

        A note found already issued or in processing is reported as it is; a rejected or still-open one
        is sent to issuing again (the owner fixed the customer and retried).
        """
        if invoice.kind != "service":
            raise PermanentError("This VHSYS integration issues service invoices (NFS-e) only; "
                                 "issue product invoices (NF-e) inside VHSYS.")
        with self.ctx.http.lock(f"vhsys:nfse:{self.ctx.account_key}:{invoice.id}", timeout=120, wait=120):
            note = self._find_service_invoice(invoice) or self._record(
                "POST", "/notas-servico", what="service invoice",
                body=mapping.service_invoice_payload(invoice, customer_remote_id, self.settings))
            current = mapping.fiscal_result(note, self.settings)
            if current.state in (FiscalState.ISSUED, FiscalState.CANCELLED) or self._processing(note):
                return current
            return self._emit(str(note.get("id_servico")))

    def _emit(self, note_id: str) -> FiscalResult:
        """POST /emitir: refusals here (setup missing, note invalid) are the issuing outcome, not a crash."""
        try:
            data = self._record("POST", f"/notas-servico/{note_id}/emitir", what="service invoice issuing")
        except PermanentError as exc:
            if isinstance(exc, NotFoundError):
                raise
            return FiscalResult(state=FiscalState.REJECTED, remote_id=note_id, message=exc.plain())
        result = mapping.fiscal_result(data, self.settings)
        result.remote_id = result.remote_id or note_id
        return result

    def _processing(self, note: dict[str, Any]) -> bool:
        words = str(note.get(self.settings["nfse_status_field"]) or "").casefold()
        return "process" in words or "aguard" in words

    def _find_service_invoice(self, invoice: InvoiceRecord) -> dict[str, Any] | None:
        marker = mapping.invoice_marker(invoice.id)
        since = (invoice.issue_date - timedelta(days=1)).isoformat()
        for row in self._all("/notas-servico", "service invoice", {"data_modificacao": since, "lixeira": "Nao"}):
            if marker in str(row.get("obs_pedido") or ""):
                return row
        return None

    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        data = self._record("GET", f"/notas-servico/{fiscal_remote_id}", what="service invoice")
        result = mapping.fiscal_result(data, self.settings)
        result.remote_id = result.remote_id or fiscal_remote_id
        return result

    # ------------------------------------------------------------------ pulls
    def pull_customers(self, cursor: str | None) -> PullPage:
        return self._pull("/clientes", "customer", {"lixeira": "Nao"}, "data_mod_cliente", "id_cliente",
                          cursor, mapping.customer_from_remote)

    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        modified = self.settings["pos_modified_field"]

        def build(row: dict[str, Any]):
            items = self._rows(f"/vendas-balcao/{row.get('id_frente')}/produtos", "counter sale items")
            return mapping.pos_sale_from_remote(row, items, modified)

        return self._pull("/vendas-balcao", "counter sale", {"lixeira": "Nao"}, modified, "id_frente", cursor, build)

    def pull_receipts(self, cursor: str | None) -> PullPage:
        return self._pull("/contas-receber", "receivable", {"liquidado": "Sim", "lixeira": "Nao"}, "data_mod_rec",
                          "id_conta_rec", cursor, mapping.receipt_from_remote)

    def _pull(self, path: str, what: str, params: dict[str, Any], modified: str, key: str, cursor: str | None,
              build: Callable[[dict[str, Any]], Any]) -> PullPage:
        """One page of rows changed since the cursor, oldest first.

        The cursor is {"since": newest data_mod seen, "seen": fingerprints delivered at that second}:
        the filter is inclusive and second-grained, so rows sharing the newest second are told apart by
        id plus content (a row changed again within that same second is delivered again).
        Pages made only of already-delivered rows are skipped by offset.
        """
        state = json.loads(cursor) if cursor else {}
        since, seen = state.get("since") or "", set(state.get("seen") or [])
        limit = self._page_size()
        offset = 0
        while True:
            query = dict(params, limit=limit, offset=offset, order=modified, sort="Asc")
            if since:
                query["data_modificacao"] = since
            rows, more = self._page(path, what, query)
            fresh = [r for r in rows if _is_new(r, modified, key, since, seen)]
            if fresh or not more:
                break
            offset += len(rows)
        if not fresh:
            return PullPage(items=[], cursor=cursor, more=False)
        newest = max(_stamp(r, modified) for r in fresh)
        at_newest = {_fingerprint(r, key) for r in rows if _stamp(r, modified) == newest}
        next_seen = sorted(at_newest | seen) if newest == since else sorted(at_newest)
        return PullPage(items=[build(r) for r in fresh], cursor=json.dumps({"since": newest, "seen": next_seen}),
                        more=more)

    def _page_size(self) -> int:
        return min(max(_int(self.settings.get("page_size"), 100), 1), LIMIT_MAX)


# ---------------------------------------------------------------------- helpers
def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _text(payload: dict[str, Any]) -> str:
    return " ".join(mapping.error_messages(payload)) or "no message"


def _nothing_found(payload: dict[str, Any]) -> bool:
    """VHSYS's empty result: code 403 and a "Nenhum/Nenhuma ... encontrado(a)!" message."""
    text = str(payload.get("data") or "").strip().casefold()
    return _int(payload.get("code"), 0) == 403 and text.startswith("nenhum") and "encontrad" in text


def _auth_message(payload: dict[str, Any]) -> str:
    return (f"VHSYS did not accept the API tokens ({_text(payload)}). In VHSYS open Minhas Integrações → "
            "Integrações → Integração via API, generate a new token pair and enter both tokens in the "
            "integration settings.")


def _stamp(row: dict[str, Any], modified: str) -> str:
    """The row's modification time as VHSYS writes it (YYYY-MM-DD HH:MM:SS), creation time as fallback."""
    value = str(row.get(modified) or "")
    if not value or value.startswith("0000"):
        value = str(next((v for k, v in row.items() if k.startswith("data_cad") and v), ""))
    return value[:19]


def _is_new(row: dict[str, Any], modified: str, key: str, since: str, seen: set[str]) -> bool:
    stamp = _stamp(row, modified)
    return stamp > since or (stamp == since and _fingerprint(row, key) not in seen)


def _fingerprint(row: dict[str, Any], key: str) -> str:
    """Id plus a short content hash: tells a row apart from its own later version within one second."""
    digest = hashlib.sha1(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{row.get(key)}:{digest}"

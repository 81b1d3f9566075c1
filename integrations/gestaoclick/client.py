"""Gestão Click (Betel Tecnologia) connector over its REST API.

How this ERP shapes the connector:
- Auth is two static headers (`access-token`, `secret-access-token`) made by the owner in the ERP;
  they do not expire or refresh, so a refusal is an AuthError for support (new tokens), never retried.
- 3 requests/s and 30,000/day per company, shared with the clinic's other integrations: every call
  goes through the shared Redis limiter, and calls that can be skipped are (unchanged customers are
  not PUT; receivables are looked up only when their order already existed).
- Validation refusals arrive as HTTP 404 with the reason in `data.mensagem`: they become
  PermanentError with that reason, never NotFoundError.
- No external-id field and no "changed since" filter. Customers are matched by CPF/CNPJ; orders,
  receivables and NFS-e carry a `[TecPet:<invoice id>]` marker in their notes/description so a retry
  after a crash finds them; pulls page through the lists and keep a fingerprint per record in the
  cursor so only records that changed come back.
- A POST that failed on the way (5xx, timeout) may have landed: creations are sent without the
  shared client's blind retries and look for the record before posting again.
- PUT replaces the whole record: updates read the record first and send it back complete.

Settings for what the reference marks UNCONFIRMED (defaults are the most likely behaviour):
- `base_url` (default https://api.gestaoclick.com/api): several hosts/prefixes are in use.
- `cpf_cnpj_search` (default "masked"): whether `GET /clientes?cpf_cnpj=` matches unformatted input is
  unknown; the ERP stores CPF/CNPJ formatted, so the formatted value is searched ("digits" or "both"
  switch it); the match is always confirmed on digits locally.
- `order_code_mode` (default "next_free"): `codigo` is client-supplied and collisions are unknown;
  next_free reads the highest code (ordered by `codigo` desc) under a per-account lock;
  "invoice_number" uses TecPet's invoice number instead.
- `os_situacao_id`: receivables are created explicitly, one per installment, because whether an OS
  situação launches them by itself (tipo_lancamento) is unconfirmed for OS and their ids could not be
  found again; test_connection refuses a situação that launches financial (it would double them).
- `nfse_status_issued` / `nfse_status_rejected` / `nfse_status_cancelled` (words looked for in the
  NFS-e `situacao`) and `nfse_message_fields` (where the rejection reason is): vocabulary undocumented.
- `nfse_search_pages` (default 3): notes are searched newest first (`ordenacao=id&direcao=desc`)
  because what the list's date filters apply to is unconfirmed.
- `auth_error_pattern`: the 401/invalid-token body is undocumented; reasons matching it are auth errors.
- `nfse_codigo_natureza_operacao` (default "1") and `nfse_iss_retido` (default "0").
- `arrival_margin_ms` (default 150): added to each rate-limit window, see `__init__`.
"""
from __future__ import annotations

import base64
import json
import zlib
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterator

from integrations.base import (
    COMPARED_CUSTOMER_FIELDS, Capability, Connector, CredentialField, CustomerRecord, FieldError, FinancialResult,
    FiscalResult, FiscalState, InvoiceRecord, NotFoundError, NotSupported, PermanentError, PullPage, PushResult,
    RateLimit, RateLimitedError, RecordRequirement, RemoteCustomer, SettingField, TransientError,
)

from . import mapping
from .mapping import text

PAGE_SIZE = 100
CURSOR_PREFIX = "gc1:"


# --------------------------------------------------------------------------- cursors
def encode_cursor(state: dict[str, Any]) -> str:
    """Opaque and compact: the cursor carries one short hash per record seen."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return CURSOR_PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode()


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    """A missing or foreign cursor starts from the beginning (everything is new once)."""
    if not cursor or not cursor.startswith(CURSOR_PREFIX):
        return {"page": 1, "seen": {}}
    try:
        state = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor[len(CURSOR_PREFIX):])))
    except (ValueError, zlib.error):
        return {"page": 1, "seen": {}}
    return {"page": int(state.get("page") or 1), "seen": dict(state.get("seen") or {})}


# --------------------------------------------------------------------------- the connector
class GestaoClickConnector(Connector):
    """Gestão Click: customers, service orders with installments and receivables, NFS-e, pulls."""

    name = "gestaoclick"
    label = "Gestão Click"
    two_way = True
    capabilities = frozenset({
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.ISSUE_INVOICE, Capability.TRACK_INVOICE, Capability.PULL_POS_SALES,
        Capability.PULL_RECEIPTS, Capability.SETTLE_RECEIVABLE,
    })
    credential_fields = (
        CredentialField("access_token", "Access token",
                        help="Gestão Click → Configurações → Integrações → API (the API add-on must be active)."),
        CredentialField("secret_access_token", "Secret access token",
                        help="Shown next to the access token in the same screen."),
    )
    setting_fields = (
        SettingField("base_url", "API base URL", "https://api.gestaoclick.com/api",
                     "Some accounts answer on https://api.beteltecnologia.com/api or without /api."),
        SettingField("usuario_id", "API user id", "", "Gestão Click user the actions are recorded as (GET /usuarios)."),
        SettingField("loja_id", "Store id", "", "Store/branch for orders, receivables and NFS-e (GET /lojas)."),
        SettingField("os_situacao_id", "Service order status id", "",
                     "A situação that does NOT launch financial (GET /situacoes_ordens_servicos)."),
        SettingField("plano_contas_id", "Chart-of-accounts id for receivables", "", "GET /planos_contas?tipo=C"),
        SettingField("conta_bancaria_id", "Bank account id for receivables", "", "GET /contas_bancarias"),
        SettingField("forma_pagamento_id", "Default payment method id", "", "GET /formas_pagamentos"),
        SettingField("payment_method_ids", "Payment method ids by name", "",
                     "TecPet name=Gestão Click id, e.g. 'Dinheiro=1; PIX=2; Boleto=3'; others use the default."),
        SettingField("servico_id", "Service id for order lines", "",
                     "Optional registered service; lines always carry the invoice item's description."),
        SettingField("order_code_mode", "Service order code", "next_free",
                     "next_free (highest code + 1) or invoice_number (TecPet's invoice number)."),
        SettingField("settle_conta_bancaria_id", "Bank account id for payments", "",
                     "Where settled receivables are recorded; empty keeps the receivable's account."),
        SettingField("nfse_codigo_atividade", "NFS-e activity code", "",
                     "Municipal service code; an invoice item's service code takes precedence."),
        SettingField("nfse_codigo_natureza_operacao", "NFS-e nature of operation", "1"),
        SettingField("nfse_iss_retido", "ISS withheld (1/0)", "0"),
        SettingField("nfse_cidade_incidencia", "ISS incidence city", "", "Usually the clinic's city."),
        SettingField("nfse_estado_incidencia", "ISS incidence state (UF)", ""),
        SettingField("nfse_status_issued", "Words meaning 'issued'", "autorizada,aprovada,emitida,concluida"),
        SettingField("nfse_status_rejected", "Words meaning 'rejected'", "rejeitada,denegada,recusada,erro"),
        SettingField("nfse_status_cancelled", "Words meaning 'cancelled'", "cancelada"),
        SettingField("nfse_message_fields", "Fields holding the rejection reason",
                     "mensagem_retorno,motivo_rejeicao,motivo,mensagem,erros"),
        SettingField("nfse_search_pages", "Pages of recent NFS-e searched on retry", "3"),
        SettingField("cpf_cnpj_search", "CPF/CNPJ search form", "masked", "masked, digits or both."),
        SettingField("auth_error_pattern", "Reasons that mean bad tokens",
                     r"\btoken\b|autentica|acesso negado|nao autorizado"),
        SettingField("arrival_margin_ms", "Rate-limit margin (ms)", "150",
                     "Added to each limit window so requests arriving late do not exceed 3/s at the ERP."),
        SettingField("pull_pages_per_call", "Pages read per pull", "10"),
        SettingField("pos_lookback_days", "Days of counter sales watched", "30"),
    )
    auth_kind = "static"
    rate_limit = RateLimit(windows=((3, 1.0), (30000, 86400.0)))
    record_requirements = (
        RecordRequirement("tax_id", "gestaoclick.tax_id_needed", "warning",
                          "Gestão Click has no field for TecPet's id: without CPF/CNPJ the customer cannot be "
                          "matched again, and the NFS-e is rejected.", required=True),
        RecordRequirement("city", "gestaoclick.city_needed", "warning",
                          "Gestão Click resolves the city by name and state; the NFS-e needs it.", required=True),
        RecordRequirement("state", "gestaoclick.state_needed", "warning",
                          "Gestão Click resolves the city by name and state; the NFS-e needs it.", required=True),
    )
    batch_size = 25  # about 2 calls per customer at 3 calls/s: a batch stays under a minute
    notes = (
        "Gestão Click allows 3 requests per second and 30,000 per day for the whole company, shared with its "
        "other integrations, so large first syncs take a while.",
        "Customers are matched by CPF/CNPJ (Gestão Click has no field for TecPet's id).",
        "Each invoice becomes a service order plus one receivable per installment; the order's status must "
        "not launch receivables by itself.",
        "Only service invoices (NFS-e) are issued through this integration; product invoices (NF-e) are "
        "issued inside Gestão Click.",
        "A receivable is settled for its full amount (anything paid above it is recorded as interest); "
        "partial payments must be recorded inside Gestão Click.",
        "Changes made in Gestão Click are found by reading its lists periodically: it has no webhooks.",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        # The ERP counts requests when they arrive; the shared limiter counts when they leave, with a
        # safety of 4% of the window (40 ms here). Network and scheduling jitter is larger than that,
        # and with only 3 requests a second one early arrival is already a 429, so every window is
        # widened by a fixed margin (~13% of throughput at the default, no 429s from jitter).
        margin = float(self.settings.get("arrival_margin_ms") or 0) / 1000.0
        self.limit = RateLimit(windows=tuple((count, seconds + margin) for count, seconds in self.limit.windows),
                               max_concurrency=self.limit.max_concurrency)

    # ------------------------------------------------------------------ transport
    def _url(self, path: str) -> str:
        return self.settings["base_url"].rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        creds = self.ctx.credentials
        return {"access-token": creds.get("access_token", ""),
                "secret-access-token": creds.get("secret_access_token", ""),
                "Accept": "application/json"}

    def _call(self, method: str, path: str, what: str, *, params: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None, retries: int | None = None) -> dict[str, Any]:
        """One request; returns the ERP's envelope or raises the typed error its answer means."""
        params = dict(params or {})
        if self.settings.get("usuario_id"):
            if body is None:
                params["usuario_id"] = self.settings["usuario_id"]
            else:
                body = {"usuario_id": self.settings["usuario_id"], **body}
        kwargs: dict[str, Any] = {"params": params or None, "headers": self._headers()}
        if body is not None:
            kwargs["json"] = body
        if retries is not None:
            kwargs["retries"] = retries
        resp = self.http(method, self._url(path), **kwargs)
        try:
            envelope = resp.json()
        except ValueError:
            envelope = resp.text[:300]
        failed = isinstance(envelope, dict) and envelope.get("status") == "error"
        if 200 <= resp.status_code < 300 and not failed:
            return envelope if isinstance(envelope, dict) else {"data": envelope}
        status = resp.status_code if not failed or resp.status_code >= 300 else int(envelope.get("code") or 400)
        raise mapping.error_from_response(status, envelope, what, self.settings.get("auth_error_pattern", ""))

    def _record(self, path: str, what: str) -> dict[str, Any]:
        data = self._call("GET", path, what).get("data")
        record = mapping.unwrap_nfse(data)
        if not record:
            raise NotFoundError(f"Gestão Click has no {what} at {path}")
        return record

    def _page(self, path: str, what: str, params: dict[str, Any], page: int) -> tuple[list[dict], int | None]:
        """One page of a list; the page size is asked under both documented spellings."""
        envelope = self._call("GET", path, what, params={**params, "pagina": page, "limite": PAGE_SIZE,
                                                          "limit": PAGE_SIZE})
        records = [r for r in (envelope.get("data") or []) if isinstance(r, dict)]
        next_page = (envelope.get("meta") or {}).get("proxima_pagina")
        return records, (int(next_page) if next_page not in (None, "", 0, "0") else None)

    def _records(self, path: str, what: str, params: dict[str, Any], max_pages: int = 20) -> Iterator[dict]:
        page: int | None = 1
        for _ in range(max_pages):
            records, page = self._page(path, what, params, page)
            yield from records
            if page is None:
                return

    def _create(self, path: str, body: dict[str, Any], what: str,
                find_existing: Callable[[], dict[str, Any] | None]) -> tuple[dict[str, Any], bool]:
        """POST without blind retries: after a failure that may have landed, look before posting again.

        Returns (record, True) when our POST's answer arrived, (record, False) when it was found."""
        client = self.ctx.http
        attempts = getattr(client, "retries", 3) + 1
        for attempt in range(attempts):
            try:
                envelope = self._call("POST", path, what, body=body, retries=0)
                return mapping.unwrap_nfse(envelope.get("data")), True
            except RateLimitedError as exc:  # refused before processing: safe to send again
                if attempt + 1 == attempts:
                    raise
                client.sleep(client.backoff_delay(attempt, exc.retry_after))
            except TransientError:
                if attempt + 1 == attempts:
                    raise
                client.sleep(client.backoff_delay(attempt))
                existing = find_existing()
                if existing:
                    return existing, False
        raise TransientError(f"Gestão Click did not confirm the {what}")  # pragma: no cover - loop returns

    def _required(self, name: str) -> str:
        value = text(self.settings.get(name))
        if not value:
            label = next((f.label for f in self.setting_fields if f.name == name), name)
            raise PermanentError(f"The Gestão Click integration is missing the setting '{label}' ({name}); "
                                 "support must fill it in.")
        return value

    # ------------------------------------------------------------------ connection
    def test_connection(self) -> str:
        """List the stores (cheap, authenticated); check the order status does not double receivables."""
        stores = self._call("GET", "/lojas", "connection test").get("data") or []
        names = ", ".join(text(s.get("nome")) for s in stores if isinstance(s, dict)) or "no store listed"
        if self.settings.get("os_situacao_id"):
            self._check_order_status(self.settings["os_situacao_id"])
        return f"Connected to Gestão Click ({names})"

    def _check_order_status(self, situacao_id: str) -> None:
        statuses = list(self._records("/situacoes_ordens_servicos", "service order statuses", {}))
        chosen = next((s for s in statuses if text(s.get("id")) == situacao_id), None)
        if chosen is None:
            raise PermanentError(f"Gestão Click has no service order status with id {situacao_id}; "
                                 "choose one from its list of service order statuses.")
        if text(chosen.get("tipo_lancamento")) in ("1", "3"):
            raise PermanentError(f"The service order status '{text(chosen.get('nome'))}' launches receivables "
                                 "by itself, so every installment would be recorded twice; choose a status "
                                 "that does not launch financial.")

    # ------------------------------------------------------------------ customers
    def _tax_search_terms(self, customer: CustomerRecord) -> list[str]:
        masked = mapping.mask_tax_id(customer.person_type, customer.tax_id)
        plain = mapping.tax_chars(customer.tax_id)
        mode = self.settings.get("cpf_cnpj_search", "masked")
        terms = {"masked": [masked], "digits": [plain]}.get(mode, [masked, plain])
        return list(dict.fromkeys(terms))

    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """By CPF/CNPJ (confirmed on digits); without one, by name plus the same e-mail or phone."""
        tax_id = mapping.tax_chars(customer.tax_id)
        if tax_id:
            for term in self._tax_search_terms(customer):
                for raw in self._records("/clientes", "customer search", {"cpf_cnpj": term}, max_pages=5):
                    if tax_id in (mapping.tax_chars(raw.get("cpf")), mapping.tax_chars(raw.get("cnpj"))):
                        return mapping.remote_customer(raw)
            return None
        if customer.name and (customer.email or customer.phone):
            for raw in self._records("/clientes", "customer search", {"nome": customer.name}, max_pages=5):
                if mapping.same_person_without_tax_id(raw, customer):
                    return mapping.remote_customer(raw)
        return None

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        def already_there() -> dict[str, Any] | None:
            found = self.find_customer(customer)
            return found.raw if found else None

        record, _ = self._create("/clientes", mapping.customer_payload(customer), "customer", already_there)
        return PushResult(remote_id=text(record.get("id")), created=True, remote_copy=record)

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        """Read, merge and PUT the whole record; skip the PUT when nothing TecPet owns changed."""
        current = self._record(f"/clientes/{remote_id}", "customer")
        theirs, ours = mapping.customer_from_gc(current), self._as_stored(customer)
        if all(getattr(theirs, f) == getattr(ours, f) for f in COMPARED_CUSTOMER_FIELDS):
            return PushResult(remote_id=remote_id, created=False, remote_copy=current)
        payload = mapping.merge_customer(current, mapping.customer_payload(customer))
        record = self._call("PUT", f"/clientes/{remote_id}", "customer", body=payload).get("data") or {}
        return PushResult(remote_id=remote_id, created=False, remote_copy=record)

    @staticmethod
    def _as_stored(customer: CustomerRecord) -> CustomerRecord:
        """What the ERP would hold after our PUT, read back the way we read it."""
        return mapping.customer_from_gc(mapping.customer_payload(customer))

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        return mapping.remote_customer(self._record(f"/clientes/{remote_id}", "customer"))

    # ------------------------------------------------------------------ financial
    def _financial_setup(self) -> mapping.FinancialSetup:
        return mapping.FinancialSetup(
            situacao_id=self._required("os_situacao_id"), plano_contas_id=self._required("plano_contas_id"),
            conta_bancaria_id=self._required("conta_bancaria_id"),
            forma_pagamento_id=self._required("forma_pagamento_id"),
            payment_method_ids=mapping.parse_id_map(self.settings.get("payment_method_ids", "")),
            servico_id=text(self.settings.get("servico_id")), loja_id=text(self.settings.get("loja_id")))

    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        """Service order with the installments as parcelas, then one receivable per installment."""
        if not invoice.installments:
            raise PermanentError("The invoice has no installments, so Gestão Click would get no receivable.",
                                 field_errors=[FieldError("installments", "at least one is needed")])
        setup = self._financial_setup()
        order, fresh = self._order_for(invoice, customer_remote_id, setup)
        known = {} if fresh else self._receivables_of(invoice, text(order.get("cliente_id")) or customer_remote_id)
        ids = [self._receivable_for(invoice, n, order, customer_remote_id, setup, known)
               for n in range(len(invoice.installments))]
        return FinancialResult(order_remote_id=text(order.get("id")), order_number=text(order.get("codigo")),
                               receivable_remote_ids=ids)

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        order = self._find_order(invoice)
        if order is None:
            return None
        known = self._receivables_of(invoice, text(order.get("cliente_id")))
        ids = [text(known[i.number].get("id")) for i in invoice.installments if i.number in known]
        return FinancialResult(order_remote_id=text(order.get("id")), order_number=text(order.get("codigo")),
                               receivable_remote_ids=ids)

    def _find_order(self, invoice: InvoiceRecord) -> dict[str, Any] | None:
        """Orders of the invoice's date carrying its marker (the document-date filter is documented)."""
        day = invoice.issue_date.isoformat()
        params = {"data_inicio": day, "data_fim": day}
        if self.settings.get("loja_id"):
            params["loja_id"] = self.settings["loja_id"]
        marker = mapping.order_marker(invoice.id)
        return next((o for o in self._records("/ordens_servicos", "service order search", params)
                     if mapping.has_marker(o.get("observacoes_interna"), marker)), None)

    def _order_for(self, invoice: InvoiceRecord, customer_remote_id: str,
                   setup: mapping.FinancialSetup) -> tuple[dict[str, Any], bool]:
        """Find or create under a per-account lock: codes are picked by us and must not collide."""
        with self.ctx.http.lock(f"gestaoclick:orders:{self.ctx.account_key}", timeout=120, wait=120):
            existing = self._find_order(invoice)
            if existing:
                return existing, False
            payload = mapping.order_payload(invoice, customer_remote_id, self._order_code(invoice), setup)
            return self._create("/ordens_servicos", payload, "service order", lambda: self._find_order(invoice))

    def _order_code(self, invoice: InvoiceRecord) -> int:
        if self.settings.get("order_code_mode") == "invoice_number":
            code = mapping.digits(invoice.number)
            if not code:
                raise PermanentError(f"The invoice number '{invoice.number}' has no digits to use as the "
                                     "Gestão Click service order code.")
            return int(code)
        records, _ = self._page("/ordens_servicos", "service order codes",
                                {"ordenacao": "codigo", "direcao": "desc"}, 1)
        codes = [int(mapping.digits(o.get("codigo"))) for o in records if mapping.digits(o.get("codigo"))]
        return max(codes, default=0) + 1

    def _receivables_of(self, invoice: InvoiceRecord, customer_remote_id: str) -> dict[int, dict[str, Any]]:
        """This invoice's receivables already in the ERP, by installment number (found by marker)."""
        found: dict[int, dict[str, Any]] = {}
        for raw in self._records("/recebimentos", "receivable search", {"cliente_id": customer_remote_id}):
            for inst in invoice.installments:
                if mapping.has_marker(raw.get("descricao"), mapping.receivable_marker(invoice.id, inst.number)):
                    found[inst.number] = raw
        return found

    def _receivable_for(self, invoice: InvoiceRecord, index: int, order: dict[str, Any], customer_remote_id: str,
                        setup: mapping.FinancialSetup, known: dict[int, dict[str, Any]]) -> str:
        installment = invoice.installments[index]
        if installment.number in known:
            return text(known[installment.number].get("id"))
        payload = mapping.receivable_payload(invoice, installment, text(order.get("codigo")), customer_remote_id,
                                             setup)
        record, _ = self._create("/recebimentos", payload, "receivable",
                                 lambda: self._receivables_of(invoice, customer_remote_id).get(installment.number))
        return text(record.get("id"))

    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        """PUT the whole receivable back with liquidado=1 (a second settle is a no-op)."""
        current = self._record(f"/recebimentos/{receivable_remote_id}", "receivable")
        payload = mapping.settlement_payload(current, amount, paid_on,
                                             text(self.settings.get("settle_conta_bancaria_id")))
        if payload is not None:
            self._call("PUT", f"/recebimentos/{receivable_remote_id}", "payment", body=payload)

    # ------------------------------------------------------------------ NFS-e
    def _fiscal_setup(self) -> mapping.FiscalSetup:
        return mapping.FiscalSetup(
            codigo_atividade=text(self.settings.get("nfse_codigo_atividade")),
            codigo_natureza_operacao=self._required("nfse_codigo_natureza_operacao"),
            iss_retido=text(self.settings.get("nfse_iss_retido")) or "0",
            cidade_incidencia=self._required("nfse_cidade_incidencia"),
            estado_incidencia=self._required("nfse_estado_incidencia"), loja_id=text(self.settings.get("loja_id")))

    def _status_words(self) -> mapping.StatusWords:
        fields = tuple(f.strip() for f in self.settings.get("nfse_message_fields", "").split(",") if f.strip())
        return mapping.StatusWords(issued=mapping.word_list(self.settings.get("nfse_status_issued", "")),
                                   rejected=mapping.word_list(self.settings.get("nfse_status_rejected", "")),
                                   cancelled=mapping.word_list(self.settings.get("nfse_status_cancelled", "")),
                                   message_fields=fields)

    def issue_invoice(self, invoice: InvoiceRecord, financial: FinancialResult,
                      customer_remote_id: str) -> FiscalResult:
        """Create the NFS-e, then send it with /emitir; a retry resumes where the last attempt stopped."""
        if invoice.kind != "service":
            raise NotSupported("This integration issues only service invoices (NFS-e) in Gestão Click; "
                               "issue product invoices (NF-e) inside Gestão Click.")
        payload = mapping.nfse_payload(invoice, customer_remote_id, self._fiscal_setup())
        if not payload["codigo_atividade"]:
            self._required("nfse_codigo_atividade")
        note = self._find_nfse(invoice)
        if note is None:
            note, _ = self._create("/notas_fiscais_servicos", payload, "service invoice (NFS-e)",
                                   lambda: self._find_nfse(invoice))
            return self._emit(note)
        state = mapping.fiscal_state(text(note.get("situacao")), self._status_words())
        if state == FiscalState.REJECTED:  # the owner fixed the data: correct the note, send it again
            self._call("PUT", f"/notas_fiscais_servicos/{text(note.get('id'))}", "service invoice (NFS-e)",
                       body=payload)
            return self._emit(note)
        if state == FiscalState.PENDING:
            try:
                return self._emit(note)
            except PermanentError:  # already with the city hall: report where it stands
                return self.invoice_status(text(note.get("id")))
        return mapping.fiscal_result(note, self._status_words())

    def _emit(self, note: dict[str, Any]) -> FiscalResult:
        """POST /emitir once per attempt: a lost answer is detected by the note's situação changing."""
        note_id, before = text(note.get("id")), text(note.get("situacao"))
        client = self.ctx.http
        attempts = getattr(client, "retries", 3) + 1
        for attempt in range(attempts):
            try:
                data = self._call("POST", f"/notas_fiscais_servicos/emitir/{note_id}", "NFS-e issue",
                                  retries=0).get("data")
            except (TransientError, RateLimitedError) as exc:
                if attempt + 1 == attempts:
                    raise
                client.sleep(client.backoff_delay(attempt, getattr(exc, "retry_after", None)))
                current = self._record(f"/notas_fiscais_servicos/{note_id}", "service invoice (NFS-e)")
                if text(current.get("situacao")) != before:
                    return mapping.fiscal_result(current, self._status_words())
                continue
            emitted = mapping.unwrap_nfse(data)
            if emitted.get("situacao"):
                return mapping.fiscal_result(emitted, self._status_words())
            return self.invoice_status(note_id)
        raise TransientError("Gestão Click did not confirm the NFS-e issue")  # pragma: no cover

    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        note = self._record(f"/notas_fiscais_servicos/{fiscal_remote_id}", "service invoice (NFS-e)")
        return mapping.fiscal_result(note, self._status_words())

    def _find_nfse(self, invoice: InvoiceRecord) -> dict[str, Any] | None:
        """The newest notes carrying this invoice's reference (how the list's date filters apply is unknown)."""
        reference = mapping.nfse_reference(invoice)
        pages = max(1, int(self.settings.get("nfse_search_pages") or 3))
        for raw in self._records("/notas_fiscais_servicos", "NFS-e search", {"ordenacao": "id", "direcao": "desc"},
                                 max_pages=pages):
            note = mapping.unwrap_nfse(raw)
            if reference in text(note.get("descricao")):
                return note
        return None

    # ------------------------------------------------------------------ pulls
    def pull_customers(self, cursor: str | None) -> PullPage:
        return self._poll("/clientes", "customer list", {}, cursor, mapping.remote_customer,
                          mapping.customer_fingerprint)

    def pull_receipts(self, cursor: str | None) -> PullPage:
        return self._poll("/recebimentos", "receipt list", {"liquidado": "pg"}, cursor, mapping.receipt_from_gc,
                          mapping.receipt_fingerprint)

    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        """Counter sales of the last `pos_lookback_days` days; older entries leave the cursor."""
        today = date.today()
        start = (today - timedelta(days=max(1, int(self.settings.get("pos_lookback_days") or 30)))).isoformat()
        params = {"tipo": "vendas_balcao", "data_inicio": start, "data_fim": (today + timedelta(days=1)).isoformat()}
        if self.settings.get("loja_id"):
            params["loja_id"] = self.settings["loja_id"]

        def fingerprint_with_day(raw: dict[str, Any]) -> str:
            return f"{mapping.pos_sale_fingerprint(raw)}@{text(raw.get('data'))[:10]}"

        def inside_window(seen: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in seen.items() if v.rpartition("@")[2] >= start}

        return self._poll("/vendas", "counter sale list", params, cursor, mapping.pos_sale_from_gc,
                          fingerprint_with_day, inside_window)

    def _poll(self, path: str, what: str, params: dict[str, Any], cursor: str | None,
              to_item: Callable[[dict], Any], fingerprint_of: Callable[[dict], str],
              prune: Callable[[dict[str, str]], dict[str, str]] | None = None) -> PullPage:
        """Read a few pages in id order; return records whose fingerprint differs from the cursor's.

        The cursor remembers the next page and a fingerprint per record, so a pass never sends back
        what was already delivered, even when records shift between pages."""
        state = decode_cursor(cursor)
        page, seen = state["page"], state["seen"]
        items: list[Any] = []
        more = False
        for _ in range(max(1, int(self.settings.get("pull_pages_per_call") or 10))):
            records, next_page = self._page(path, what, {**params, "ordenacao": "id", "direcao": "asc"}, page)
            for raw in records:
                record_id, mark = text(raw.get("id")), fingerprint_of(raw)
                if seen.get(record_id) != mark:
                    items.append(to_item(raw))
                    seen[record_id] = mark
            more = next_page is not None
            page = next_page or 1
            if not more:
                break
        if prune is not None:
            seen = prune(seen)
        return PullPage(items=items, cursor=encode_cursor({"page": page, "seen": seen}), more=more)

"""Sankhya (Sankhya Om) through the Sankhya API Gateway.

Auth: OAuth client credentials at `/authenticate` (header X-Token = the tenant's gateway token,
form body client_id/client_secret), then `Authorization: Bearer`. Tokens live minutes (300 s seen
in the sandbox, 3600 s elsewhere): we honour `expires_in`, refresh a little early, and when the
gateway still answers 403 GTW3403 we refresh once under the account's Redis lock and retry once.

Two API layers are used, each where it is the better tool:
- REST v1: create/update partners (`/v1/parceiros/clientes`, takes street, district and city by
  name and IBGE code), create orders with items and installments (`/v1/vendas/pedidos`), settle
  receivables (`/v1/financeiros/receitas/{nufin}/baixa`);
- service layer (`service.sbr`, HTTP 200 with `status` "0" for business errors):
  `CRUDServiceProvider.loadRecords` for every read (partner by CGC_CPF, receivables of an order,
  invoice status, pulls), `confirmarNota`, `SelecaoDocumentoSP.faturar`, `ServicosNfeSP.gerarLote`,
  `buscaProcessamentoLote` and `getAcompanhamentosNota` for invoice issuing and its outcome.

Nothing in Sankhya is idempotent: partners are searched by CPF/CNPJ (digits and masked) before
creating, orders carry our marker in OBSERVACAO and are searched by it, a receivable is read before
it is settled, and a create that failed in transit is looked up before it is sent again.

Pulls read `loadRecords` windows of `DTALTER` keyed by (timestamp, primary key):
Sankhya honours no ordering and deep offsets skip rows, so every read is the first page of a time
window small enough to fit in it (hence complete): windows narrow when a page overflows, widen when
sparse, and a single crowded second is walked by primary key. A pull gathers consecutive windows
until it holds about a page. Rows of the last `pull_settle_seconds` are left for the next pull,
so a row changed while we read is never passed over.

UNCONFIRMED in the source, therefore settings (default = the most likely value):
- `auth_path` "/authenticate" (a scraped map says /gateway/v1/auth/authenticate);
- `partner_type_style` "PF/PJ" (one SDK sent F/J, its later version and another integration PF/PJ);
- `ibge_field` "codigoIbge" (the docs were read as "codigolbge");
- `confirm_service` "CACSP.confirmarNota" (the other SDK calls ServicosNfeSP.confirmarNota);
- `settle_endpoint` "path" (NUFIN in the path, per the docs; "body" posts to /receitas/baixa),
  `settle_amount_field` "valorBaixa", `settle_date_format` "yyyy-MM-dd" (an SDK sends dd/MM/yyyy);
- `receivable_criteria` "this.RECDESP = 1" and `paid_amount_field` "VLRBAIXA" (TGFFIN field names);
- `requests_per_minute` "1000" (a third party cites the Boas Práticas page; never seen enforced).
Assumed from Sankhya's data dictionary, not from the source: the joined entity fields
`Endereco.NOMEEND`, `Bairro.NOMEBAI`, `Cidade.NOMECID`, `Cidade.CODMUNFIS` (IBGE code),
`Produto.DESCRPROD`, `CompraVendavariosPedido.NUNOTAORIG`, and `Empresa.NOMEFANTASIA`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

from ..base import (
    AuthError,
    Capability,
    Connector,
    ConnectorContext,
    ConnectorError,
    CredentialField,
    CustomerRecord,
    FinancialResult,
    FiscalResult,
    FiscalState,
    InvoiceRecord,
    NotFoundError,
    PermanentError,
    PullPage,
    PushResult,
    RateLimit,
    RateLimitedError,
    RecordRequirement,
    RemoteCustomer,
    SettingField,
    TransientError,
)
from . import mapping as m

SERVICE_MODULES = {
    "CRUDServiceProvider.loadRecords": "mge",
    "CACSP.confirmarNota": "mgecom",
    "ServicosNfeSP.confirmarNota": "mgecom",
    "SelecaoDocumentoSP.faturar": "mgecom",
    "ServicosNfeSP.gerarLote": "mgecom",
    "ServicosNfeSP.buscaProcessamentoLote": "mgecom",
    "ServicosNfeSP.getAcompanhamentosNota": "mgecom",
}
PULL_FLOOR = datetime(1900, 1, 1)
PULL_FIRST_WINDOW = 86400          # seconds; grows while windows come back sparse
PULL_WIDEST_WINDOW = 200 * 365 * 86400
PULL_MAX_PROBES = 48               # loadRecords calls one pull may spend finding a complete window
MAX_PAGES = 200                    # 10,000 rows: more for one key lookup means something is wrong
TAX_IDS_PER_LOOKUP = 25            # each sent digits-only and masked: 50 parameters, one page of rows
ATTEMPTS = 6                       # our own tries for gateway hiccups the shared client does not retry


@dataclass(frozen=True)
class PullSpec:
    """What one kind of pull reads: the entity, its change timestamp and primary key, extra filters."""

    entity: str
    stamp: str
    key: str
    fields: str
    joins: tuple[tuple[str, str], ...] = ()
    where: str = ""
    where_params: tuple[dict[str, str], ...] = ()


class SankhyaConnector(Connector):
    """Sankhya Om via its API Gateway (see the module docstring for the why of each choice)."""

    name = "sankhya"
    label = "Sankhya"
    two_way = True
    capabilities = frozenset({
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.ISSUE_INVOICE, Capability.TRACK_INVOICE, Capability.PULL_POS_SALES,
        Capability.PULL_RECEIPTS, Capability.SETTLE_RECEIVABLE,
    })
    credential_fields = (
        CredentialField("x_token", "Gateway token (X-Token)",
                        help="Generated in Sankhya Om, screen Configurações Gateway, for this company."),
        CredentialField("client_id", "Client ID", secret=False,
                        help="From the integration component in Sankhya's Área do Desenvolvedor."),
        CredentialField("client_secret", "Client secret"),
    )
    setting_fields = (
        SettingField("base_url", "API base URL", "https://api.sankhya.com.br",
                     "Sandbox: https://api.sandbox.sankhya.com.br (sandbox credentials do not work in production)."),
        SettingField("auth_path", "Authentication path", "/authenticate", "UNCONFIRMED alternative: "
                     "/gateway/v1/auth/authenticate."),
        SettingField("company_code", "Company (CODEMP)", "", "Filters pulls to this company; empty = all."),
        SettingField("nota_modelo", "Order model (Modelo de Nota)", "",
                     "Fixes company, TOP, nature and negotiation of the orders TecPet creates. Required for orders."),
        SettingField("service_product_code", "Product code for services (CODPROD)", "",
                     "The Sankhya product every service line is billed as. Required for orders."),
        SettingField("goods_product_code", "Product code for goods (CODPROD)", "",
                     "Used for product lines; empty = the service product."),
        SettingField("unit", "Unit (CODVOL)", "UN"),
        SettingField("seller_code", "Seller (CODVEND)", ""),
        SettingField("payment_types", "Payment types (CODTIPTIT)", "",
                     "Name=code pairs, e.g. 'Dinheiro=1; Boleto=2; PIX=3; *=2' (* = any other). "
                     "Empty = the order model's negotiation decides."),
        SettingField("confirm_orders", "Confirm orders", "true",
                     "Confirm each order so its installments become real receivables."),
        SettingField("confirm_service", "Confirmation service", "CACSP.confirmarNota",
                     "UNCONFIRMED alternative: ServicosNfeSP.confirmarNota."),
        SettingField("service_billing_top", "Billing TOP for services (NFS-e)", "",
                     "TOP used by SelecaoDocumentoSP.faturar; empty = the order itself is the fiscal note."),
        SettingField("product_billing_top", "Billing TOP for goods (NF-e)", "",
                     "Empty = the order itself is the fiscal note."),
        SettingField("billing_type", "Billing type", "FaturamentoNormal"),
        SettingField("send_lot", "Send the invoice to the authority", "true",
                     "Call ServicosNfeSP.gerarLote after billing; 'false' when the tenant transmits on confirmation."),
        SettingField("settle_top", "Write-off TOP (baixa)", "", "Required to settle receivables."),
        SettingField("bank_account_code", "Bank account (conta bancária)", "",
                     "Empty = Sankhya picks it when the company has a single valid account."),
        SettingField("settle_endpoint", "Settle endpoint style", "path",
                     "UNCONFIRMED: 'path' = /receitas/{nufin}/baixa, 'body' = /receitas/baixa."),
        SettingField("settle_amount_field", "Settle amount field", "valorBaixa", "UNCONFIRMED field name."),
        SettingField("settle_date_format", "Settle date format", "yyyy-MM-dd", "UNCONFIRMED: or dd/MM/yyyy."),
        SettingField("receivable_criteria", "Receivables filter", "this.RECDESP = 1",
                     "UNCONFIRMED TGFFIN field; empty = every settled title."),
        SettingField("paid_amount_field", "Paid amount field", "VLRBAIXA",
                     "UNCONFIRMED TGFFIN field; empty = the title's value."),
        SettingField("pos_operation_codes", "Counter sale TOPs", "",
                     "Comma-separated TOPs of counter (PDV/NFC-e) sales; empty = every sale not made by TecPet."),
        SettingField("partner_type_style", "Partner type codes", "PF/PJ", "UNCONFIRMED: PF/PJ or F/J."),
        SettingField("ibge_field", "IBGE code field name", "codigoIbge", "UNCONFIRMED: or codigolbge."),
        SettingField("requests_per_minute", "Requests per minute", "1000", "UNCONFIRMED limit."),
        SettingField("pull_settle_seconds", "Pull settle delay (s)", "120",
                     "Changes younger than this wait for the next pull (covers clock skew and ties)."),
    )
    auth_kind = "static"
    # 1,000 per minute (UNCONFIRMED), paced at a sixtieth of it per second so a burst never spends
    # the tenant's whole minute (other integrations of the clinic share it).
    rate_limit = RateLimit(windows=((1000, 60.0), (16, 1.0)))
    record_requirements = (
        RecordRequirement("tax_id", "sankhya.tax_id_required", "error",
                          "Sankhya requires the customer's CPF/CNPJ.", required=True),
        RecordRequirement("number", "sankhya.number_required", "error",
                          "Sankhya requires the address number (use S/N when there is none).", required=True),
        RecordRequirement("district", "sankhya.district_required", "error",
                          "Sankhya requires the district (bairro) of the address.", required=True),
        RecordRequirement("city_ibge_code", "sankhya.city_ibge_code_required", "error",
                          "Sankhya finds the city by its IBGE code: it is required.", required=True),
        RecordRequirement("zip_code", "sankhya.zip_code_required", "error",
                          "Sankhya requires the CEP.", required=True),
    )
    batch_size = 50
    notes = (
        "Customers are matched by CPF/CNPJ: Sankhya has no field for TecPet's id.",
        "Each invoice becomes an order built from the clinic's order model; its installments are the receivables.",
        "Sankhya transmits NFS-e / NF-e itself; TecPet asks it to bill and send, then reads the outcome.",
        "Sankhya has no webhooks: changes are fetched periodically.",
        "Setup needs the clinic's Sankhya codes (order model, products, TOPs), which only its Sankhya admin knows.",
    )

    def __init__(self, ctx: ConnectorContext):
        super().__init__(ctx)
        self.limit = self._limit_from_settings()

    def _limit_from_settings(self) -> RateLimit:
        """The request budget from `requests_per_minute` (unconfirmed, so support can change it)."""
        per_minute = int(float(self.settings.get("requests_per_minute") or 1000))
        scale = float(self.settings.get("rate_limit_scale") or 1)
        windows = ((per_minute, 60.0), (max(1, per_minute // 60), 1.0))
        return RateLimit(windows=tuple((max(1, int(n * scale)), s) for n, s in windows),
                         max_concurrency=self.rate_limit.max_concurrency)

    # ------------------------------------------------------------------ transport
    def _url(self, path: str) -> str:
        return self.settings["base_url"].rstrip("/") + path

    def _send(self, method: str, path: str, *, what: str, body: Any = None, idempotent: bool = True) -> dict:
        """One authenticated call; a rejected token is refreshed once and the call sent again."""
        token = self._access_token()
        resp = self._authorized(method, path, token, body, idempotent)
        if resp.status_code in (401, 403):
            token = self._refresh_token(stale=token)
            resp = self._authorized(method, path, token, body, idempotent)
        return self._read(resp, what)

    def _authorized(self, method: str, path: str, token: str, body: Any, idempotent: bool):
        headers = {"Authorization": f"Bearer {token}", "X-Token": self.ctx.credentials.get("x_token", ""),
                   "Accept": "application/json"}
        # A create that fails in transit may still have landed: we look before resending, not the client.
        return self.http(method, self._url(path), headers=headers, json=body, retries=None if idempotent else 0)

    @staticmethod
    def _read(resp, what: str) -> dict:
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            body = resp.text[:500]
        if 200 <= resp.status_code < 300:
            if not isinstance(body, dict):
                raise TransientError(f"Sankhya answered {what} with something that is not JSON", raw=body)
            if "serviceName" in body and "status" in body:
                error = m.service_error(body, what=what)
                if error is not None:
                    raise error
            return body
        raise m.error_from_response(resp.status_code, body, what=what)

    def _service(self, name: str, request_body: dict[str, Any], *, what: str, idempotent: bool = True,
                 accept: Any = None) -> dict[str, Any]:
        """A service-layer call; `accept` = a pattern of refusals that mean "already done"."""
        path = f"/gateway/v1/{SERVICE_MODULES[name]}/service.sbr?serviceName={name}&outputType=json"
        envelope = {"serviceName": name, "requestBody": request_body}

        def call() -> dict[str, Any]:
            try:
                body = self._send("POST", path, what=what, body=envelope, idempotent=idempotent)
            except PermanentError as exc:
                if accept is not None and accept.search(exc.message):
                    return {}
                raise
            return body.get("responseBody") or {}

        # Reads and "already done"-safe calls retry here; writes are retried by their caller, who can look first.
        return self._with_retries(call) if idempotent else call()

    def _with_retries(self, attempt: Callable[[], Any], recover: Callable[[], Any] | None = None) -> Any:
        """Retry gateway hiccups; before resending a write, `recover` looks for what may have landed."""
        last: ConnectorError | None = None
        delay = 0.0
        for n in range(ATTEMPTS):
            if n:
                self.ctx.http.sleep(delay)
                found = self._try_recover(recover)
                if found is not None:
                    return found
            try:
                return attempt()
            except RateLimitedError as exc:
                last, delay = exc, exc.retry_after
            except TransientError as exc:
                last, delay = exc, self.ctx.http.backoff_delay(n)
        assert last is not None
        raise last

    @staticmethod
    def _try_recover(recover: Callable[[], Any] | None) -> Any:
        if recover is None:
            return None
        try:
            return recover()
        except (TransientError, RateLimitedError):
            return None

    # ------------------------------------------------------------------ tokens
    def _access_token(self) -> str:
        creds = self.ctx.credentials
        if self._token_fresh(creds):
            return creds["access_token"]
        return self._refresh_token(stale=creds.get("access_token", ""))

    @staticmethod
    def _token_fresh(creds: dict[str, str]) -> bool:
        """Good for a while yet: refresh a fifth of the lifetime (at most 60 s) before it ends."""
        if not creds.get("access_token"):
            return False
        lifetime = float(creds.get("access_token_lifetime") or 300)
        expires_at = float(creds.get("access_token_expires_at") or 0)
        return time.time() < expires_at - min(60.0, lifetime * 0.2)

    def _refresh_token(self, stale: str) -> str:
        """One refresh per account at a time; whoever waited reuses the token the holder got."""
        with self.ctx.http.lock(f"oauth:{self.name}:{self.ctx.account_key}"):
            creds = self.ctx.credentials
            if creds.get("access_token") and creds["access_token"] != stale and self._token_fresh(creds):
                return creds["access_token"]
            self.ctx.credentials = {**creds, **self._authenticate()}
            self.ctx.save_credentials(dict(self.ctx.credentials))
            return self.ctx.credentials["access_token"]

    def _authenticate(self) -> dict[str, str]:
        creds = self.ctx.credentials
        missing = [f.label for f in self.credential_fields if not creds.get(f.name)]
        if missing:
            raise AuthError(f"Sankhya credentials are incomplete: {', '.join(missing)} missing")
        requested_at = time.time()   # the token's clock starts no later than this
        resp = self.http("POST", self._url(self.settings["auth_path"]),
                         headers={"X-Token": creds["x_token"], "Accept": "application/json"},
                         data={"grant_type": "client_credentials", "client_id": creds["client_id"],
                               "client_secret": creds["client_secret"]})
        if resp.status_code in (400, 401, 403):
            _, reason = m.gateway_error(self._json_or_text(resp))
            raise AuthError("Sankhya did not accept the gateway token (X-Token) or the client id/secret"
                            + (f": {reason}" if reason else ""), status=resp.status_code)
        body = self._read(resp, "the authentication")
        if not body.get("access_token"):
            raise AuthError("Sankhya's authentication answered without an access token", raw=body)
        lifetime = float(body.get("expires_in") or 300)
        return {"access_token": str(body["access_token"]), "access_token_lifetime": f"{lifetime:.0f}",
                "access_token_expires_at": f"{requested_at + lifetime:.3f}"}

    @staticmethod
    def _json_or_text(resp) -> Any:
        try:
            return resp.json()
        except ValueError:
            return resp.text[:500]

    # ------------------------------------------------------------------ loadRecords
    def _load(self, entity: str, expression: str, params: Iterable[dict[str, str]], fields: str,
              joins: Iterable[tuple[str, str]] = (), page: int = 0) -> tuple[list[dict[str, str]], bool]:
        body = m.load_records_body(entity, expression, list(params), fields, joins, page)
        return m.rows_of(self._service("CRUDServiceProvider.loadRecords", body, what=f"the reading of {entity}"))

    def _load_all(self, entity: str, expression: str, params: list[dict[str, str]], fields: str,
                  joins: Iterable[tuple[str, str]] = (), key: Callable[[dict], Any] | None = None) -> list[dict]:
        """Every page of a small result; rows seen twice across pages are kept once."""
        out: dict[Any, dict] = {}
        for page in range(MAX_PAGES):
            rows, more = self._load(entity, expression, params, fields, joins, page)
            for row in rows:
                out.setdefault(key(row) if key else len(out), row)
            if not more:
                return list(out.values())
        raise TransientError(f"Sankhya returned more than {MAX_PAGES} pages of {entity} for one lookup")

    # ------------------------------------------------------------------ connection
    def test_connection(self) -> str:
        """A fresh token proves the credentials; reading the company proves the integration user's rights."""
        self._refresh_token(stale=self.ctx.credentials.get("access_token", ""))
        company = self.settings.get("company_code", "")
        expression, params = ("this.CODEMP = ?", [m.parameter(company, "I")]) if company else ("", [])
        rows, _ = self._load("Empresa", expression, params, "CODEMP,NOMEFANTASIA,RAZAOSOCIAL")
        if not rows:
            raise PermanentError(f"Sankhya has no company {company} (setting company_code)" if company
                                 else "Sankhya shows no company to this integration user")
        return f"Connected to Sankhya: {rows[0].get('NOMEFANTASIA') or rows[0].get('RAZAOSOCIAL')}"

    # ------------------------------------------------------------------ customers
    def _partner_payload(self, customer: CustomerRecord) -> dict[str, Any]:
        return m.partner_payload(customer, type_style=self.settings["partner_type_style"],
                                 ibge_field=self.settings["ibge_field"] or "codigoIbge")

    def _partners_by_tax_id(self, tax_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """Partners whose CGC_CPF is any of these, stored digits-only or masked; active and oldest first."""
        wanted = sorted({m.normalize_tax_id(t) for t in tax_ids if m.normalize_tax_id(t)})
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(wanted), TAX_IDS_PER_LOOKUP):
            forms = []
            for tax_id in wanted[start:start + TAX_IDS_PER_LOOKUP]:
                forms += [tax_id] + ([m.masked_tax_id(tax_id)] if m.masked_tax_id(tax_id) else [])
            expression = f"this.CGC_CPF IN ({', '.join('?' for _ in forms)})"
            rows = self._load_all("Parceiro", expression, [m.parameter(f, "S") for f in forms], m.PARTNER_FIELDS,
                                  m.PARTNER_JOINS, key=lambda r: r.get("CODPARC"))
            for row in sorted(rows, key=lambda r: (r.get("ATIVO") != "S", int(r.get("CODPARC") or 0))):
                found.setdefault(m.normalize_tax_id(row.get("CGC_CPF", "")), row)
        return found

    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """By CPF/CNPJ, the only key Sankhya has for a customer of ours."""
        tax_id = m.normalize_tax_id(customer.tax_id)
        if not tax_id:
            return None
        row = self._partners_by_tax_id([tax_id]).get(tax_id)
        return m.customer_from_partner(row) if row else None

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        payload = self._partner_payload(customer)
        what = f"the customer {customer.name}"

        def attempt() -> PushResult:
            body = self._send("POST", "/v1/parceiros/clientes", what=what, body=payload, idempotent=False)
            code = m.created_code(body, "codigoCliente", "codigoParceiro")
            if not code:
                raise TransientError(f"Sankhya saved {what} but did not say under which code", raw=body)
            return PushResult(code, created=True, remote_copy=payload)

        def landed() -> PushResult | None:
            found = self.find_customer(customer)
            return PushResult(found.remote_id, created=True, remote_copy=found.raw) if found else None

        try:
            return self._with_retries(attempt, recover=landed)
        except PermanentError as exc:
            return self._adopt_duplicate(customer, exc)

    def _adopt_duplicate(self, customer: CustomerRecord, exc: PermanentError) -> PushResult:
        """Sankhya says the CPF/CNPJ exists (created meanwhile, or stored in another mask): update that one."""
        found = self.find_customer(customer) if m.is_duplicate_partner(exc) else None
        if found is None:
            raise exc
        return PushResult(self.update_customer(found.remote_id, customer).remote_id, created=False)

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        payload = self._partner_payload(customer)
        self._with_retries(lambda: self._send("PUT", f"/v1/parceiros/clientes/{remote_id}", body=payload,
                                              what=f"the customer {customer.name}"))
        return PushResult(str(remote_id), created=False, remote_copy=payload)

    def upsert_customers(self, batch: list[tuple[CustomerRecord, str | None]]) -> list[PushResult | ConnectorError]:
        """One CPF/CNPJ lookup per 25 customers instead of one per customer, then update or create."""
        existing = self._partners_by_tax_id(record.tax_id for record, remote_id in batch if not remote_id)
        out: list[PushResult | ConnectorError] = []
        for record, remote_id in batch:
            try:
                known = remote_id or (existing.get(m.normalize_tax_id(record.tax_id)) or {}).get("CODPARC")
                out.append(self.update_customer(known, record) if known else self.create_customer(record))
            except PermanentError as exc:
                out.append(exc)
        return out

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        rows, _ = self._load("Parceiro", "this.CODPARC = ?", [m.parameter(remote_id, "I")], m.PARTNER_FIELDS,
                             m.PARTNER_JOINS)
        if not rows:
            raise NotFoundError(f"Sankhya has no partner with code {remote_id}")
        return m.customer_from_partner(rows[0])

    # ------------------------------------------------------------------ orders and receivables
    def _order_options(self) -> m.OrderOptions:
        for name, label in (("nota_modelo", "order model (Modelo de Nota)"),
                            ("service_product_code", "product code for services")):
            if not self.settings.get(name):
                raise PermanentError(f"The Sankhya setup is missing the {label} (setting {name}); "
                                     f"support must fill it in before orders can be created")
        return m.OrderOptions(
            nota_modelo=self.settings["nota_modelo"], service_product=self.settings["service_product_code"],
            goods_product=self.settings.get("goods_product_code", ""), unit=self.settings.get("unit") or "UN",
            seller=self.settings.get("seller_code", ""),
            payment_types=m.parse_payment_types(self.settings.get("payment_types", "")))

    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        """Order with items and installments (receivables come with it), confirmed when set so.

        An order already made for this invoice (found by our marker) is reused, never duplicated.
        """
        payload = m.order_payload(invoice, customer_remote_id, self._order_options())
        what = f"the order for invoice {invoice.number}"
        existing = self._find_order(invoice)

        def attempt() -> str:
            body = self._send("POST", "/v1/vendas/pedidos", what=what, body=payload, idempotent=False)
            code = m.created_code(body, "codigoPedido", "codigoNota", "nunota")
            if not code:
                raise TransientError(f"Sankhya saved {what} but did not say under which number", raw=body)
            return code

        nunota = existing["NUNOTA"] if existing else self._with_retries(
            attempt, recover=lambda: (self._find_order(invoice) or {}).get("NUNOTA"))
        if self._flag("confirm_orders"):
            self._confirm(nunota)
        return self._financial_result(nunota)

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        order = self._find_order(invoice)
        return self._financial_result(order["NUNOTA"]) if order else None

    def _find_order(self, invoice: InvoiceRecord) -> dict[str, str] | None:
        """Our order carries `TecPet-ref <id>;` in OBSERVACAO (LIKE wildcards are checked again here)."""
        marker = m.order_marker(invoice.id)
        rows = self._load_all("CabecalhoNota", "this.OBSERVACAO LIKE ? AND this.TIPMOV = 'P'",
                              [m.parameter(f"%{marker}%", "S")], "NUNOTA,NUMNOTA,TIPMOV,STATUSNOTA,OBSERVACAO",
                              key=lambda r: r.get("NUNOTA"))
        ours = [r for r in rows if marker in r.get("OBSERVACAO", "")]
        return min(ours, key=lambda r: int(r["NUNOTA"])) if ours else None

    def _financial_result(self, nunota: str) -> FinancialResult:
        rows = self._load_all("Financeiro", "this.NUNOTA = ?", [m.parameter(nunota, "I")],
                              "NUFIN,NUNOTA,NUMNOTA,DESDOBRAMENTO,DTVENC,VLRDESDOB", key=lambda r: r.get("NUFIN"))
        rows.sort(key=lambda r: (m.parse_datetime(r.get("DTVENC", "")) or datetime.min, r.get("DESDOBRAMENTO", ""),
                                 int(r.get("NUFIN") or 0)))
        number = next((r["NUMNOTA"] for r in rows if r.get("NUMNOTA") not in ("", "0")), "")
        return FinancialResult(order_remote_id=str(nunota), order_number=number,
                               receivable_remote_ids=[r["NUFIN"] for r in rows])

    def _confirm(self, nunota: str) -> None:
        """Confirming twice is harmless: Sankhya's "já foi confirmada" counts as done."""
        service = self.settings.get("confirm_service") or "CACSP.confirmarNota"
        note: dict[str, Any] = {"NUNOTA": m.wrap(nunota)}
        if service.startswith("CACSP"):
            note["confirmacaoCentralNota"] = m.wrap("true")
        else:
            note["COMPENSAR"] = m.wrap("N")
        self._service(service, {"nota": note}, what=f"the confirmation of note {nunota}", accept=m.ALREADY_CONFIRMED)

    def _flag(self, name: str) -> bool:
        return str(self.settings.get(name, "")).strip().lower() in ("1", "true", "yes", "sim", "s")

    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        """Read first: a title already written off is left alone, so a retried payment never pays twice."""
        nufin = str(receivable_remote_id)
        if self._financial_row(nufin).get("DHBAIXA"):
            return
        if not self.settings.get("settle_top"):
            raise PermanentError("The Sankhya setup is missing the write-off TOP (setting settle_top); "
                                 "support must fill it in before payments can be settled")
        body: dict[str, Any] = {
            "codigoTipoOperacao": m.integer_or_text(self.settings["settle_top"]),
            "dataBaixa": m.format_date(paid_on, self.settings.get("settle_date_format") or "yyyy-MM-dd"),
            self.settings.get("settle_amount_field") or "valorBaixa": m.number(amount),
        }
        if self.settings.get("bank_account_code"):
            body["codigoContaBancaria"] = m.integer_or_text(self.settings["bank_account_code"])
        path = f"/v1/financeiros/receitas/{nufin}/baixa"
        if self.settings.get("settle_endpoint") == "body":
            path, body["codigoFinanceiro"] = "/v1/financeiros/receitas/baixa", m.integer_or_text(nufin)
        self._with_retries(
            lambda: self._send("POST", path, what=f"the write-off of receivable {nufin}", body=body, idempotent=False),
            recover=lambda: True if self._financial_row(nufin).get("DHBAIXA") else None)

    def _financial_row(self, nufin: str) -> dict[str, str]:
        rows, _ = self._load("Financeiro", "this.NUFIN = ?", [m.parameter(nufin, "I")],
                             "NUFIN,NUNOTA,DHBAIXA,VLRDESDOB")
        if not rows:
            raise NotFoundError(f"Sankhya has no receivable {nufin}")
        return rows[0]

    # ------------------------------------------------------------------ invoice issuing
    def issue_invoice(self, invoice: InvoiceRecord, financial: FinancialResult,
                      customer_remote_id: str) -> FiscalResult:
        """Confirm the order, bill it with the invoice TOP (once), send the lot, then read the outcome."""
        order = financial.order_remote_id
        self._confirm(order)
        fiscal = order
        top = self.settings.get("product_billing_top" if invoice.kind == "product" else "service_billing_top")
        if top:
            fiscal = self._billed_note(order) or self._bill(order, top)
            self._confirm(fiscal)
        if self._flag("send_lot") and not m.fiscal_sent(self._note_header(fiscal)):
            self._with_retries(
                lambda: self._service("ServicosNfeSP.gerarLote",
                                      {"notas": {"nunota": [m.wrap(fiscal)], "retNotasReprovadas": m.wrap("true")}},
                                      what=f"the sending of invoice {invoice.number}", idempotent=False),
                recover=lambda: True if m.fiscal_sent(self._note_header(fiscal)) else None)
        return self.invoice_status(fiscal)

    def _bill(self, order: str, top: str) -> str:
        today = (datetime.now(timezone.utc) - timedelta(hours=3)).date()
        body = {"notas": {"codTipOper": m.integer_or_text(top), "dtFaturamento": today.strftime(m.DATE_IN),
                          "tipoFaturamento": self.settings.get("billing_type") or "FaturamentoNormal",
                          "dataValidada": True, "nota": [{"NUNOTA": m.wrap(order)}]}}
        self._with_retries(lambda: self._service("SelecaoDocumentoSP.faturar", body, idempotent=False,
                                                 what=f"the billing of order {order}"),
                           recover=lambda: self._billed_note(order))
        billed = self._billed_note(order)
        if not billed:
            raise TransientError(f"Sankhya billed order {order} but its invoice note cannot be read yet")
        return billed

    def _billed_note(self, order: str) -> str | None:
        """The note SelecaoDocumentoSP.faturar made of this order (TGFVAR links them)."""
        rows = self._load_all("CompraVendavariosPedido", "this.NUNOTAORIG = ?", [m.parameter(order, "I")],
                              "NUNOTA,NUNOTAORIG", key=lambda r: r.get("NUNOTA"))
        return str(min(int(r["NUNOTA"]) for r in rows)) if rows else None

    def _note_header(self, nunota: str) -> dict[str, str]:
        rows, _ = self._load("CabecalhoNota", "this.NUNOTA = ?", [m.parameter(nunota, "I")],
                             "NUNOTA,NUMNOTA,TIPMOV,STATUSNOTA,STATUSNFE,STATUSNFSE,CHAVENFE,NUMNFSE,DTALTER")
        if not rows:
            raise NotFoundError(f"Sankhya has no note {nunota}")
        return rows[0]

    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        """Read STATUSNFE/STATUSNFSE; while waiting, ask Sankhya to fetch the authority's answer first."""
        nunota = str(fiscal_remote_id)
        header = self._note_header(nunota)
        result = m.fiscal_result(header)
        if result.state is FiscalState.PENDING and m.fiscal_sent(header):
            self._service("ServicosNfeSP.buscaProcessamentoLote", {"notas": {"nunota": [m.wrap(nunota)]}},
                          what=f"the authorization of note {nunota}")
            header = self._note_header(nunota)
            result = m.fiscal_result(header)
        if result.state is FiscalState.REJECTED:
            history = self._service("ServicosNfeSP.getAcompanhamentosNota", {"notas": {"nunota": [m.wrap(nunota)]}},
                                    what=f"the history of note {nunota}")
            result = m.fiscal_result(header, m.rejection_text(history))
        return result

    # ------------------------------------------------------------------ pulls
    def pull_customers(self, cursor: str | None) -> PullPage:
        spec = PullSpec("Parceiro", "DTALTER", "CODPARC", m.PARTNER_FIELDS, m.PARTNER_JOINS, "this.CLIENTE = 'S'")
        rows, next_cursor, more = self._pull(spec, cursor)
        return PullPage([m.customer_from_partner(r) for r in rows], next_cursor, more)

    def pull_receipts(self, cursor: str | None) -> PullPage:
        """Settled receivables, walked by DTALTER: a write-off dated in the past (DHBAIXA) still moves
        DTALTER to now, so a backdated payment is not passed over by a cursor already beyond its date."""
        amount_field = self.settings.get("paid_amount_field", "")
        fields = "NUFIN,NUNOTA,CODPARC,CODTIPTIT,DHBAIXA,VLRDESDOB,DTVENC,DTALTER"
        if amount_field and amount_field not in fields.split(","):
            fields += f",{amount_field}"
        criteria = self.settings.get("receivable_criteria", "")
        where = "this.DHBAIXA IS NOT NULL" + (f" AND ({criteria})" if criteria else "")
        where, params = self._company_filter(where)
        rows, next_cursor, more = self._pull(PullSpec("Financeiro", "DTALTER", "NUFIN", fields, (), where, params),
                                             cursor)
        receipts = [m.receipt_from_financial(r, paid_amount_field=amount_field,
                                             payment_types_text=self.settings.get("payment_types", "")) for r in rows]
        return PullPage(receipts, next_cursor, more)

    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        """Sale notes (TIPMOV V) of the counter TOPs; the notes TecPet's own invoices became are skipped."""
        where, params = "this.TIPMOV = 'V'", []
        tops = [t.strip() for t in self.settings.get("pos_operation_codes", "").split(",") if t.strip()]
        if tops:
            where += f" AND this.CODTIPOPER IN ({', '.join('?' for _ in tops)})"
            params += [m.parameter(t, "I") for t in tops]
        where, params = self._company_filter(where, params)
        spec = PullSpec("CabecalhoNota", "DTALTER", "NUNOTA",
                        "NUNOTA,NUMNOTA,CODPARC,CODTIPOPER,TIPMOV,DTNEG,VLRNOTA,STATUSNOTA,OBSERVACAO,DTALTER",
                        (("Parceiro", "NOMEPARC"),), where, tuple(params))
        rows, next_cursor, more = self._pull(spec, cursor)
        rows = [r for r in rows if "TecPet-ref " not in r.get("OBSERVACAO", "")]
        return PullPage(self._pos_sales(rows), next_cursor, more)

    def _pos_sales(self, headers: list[dict[str, str]]):
        if not headers:
            return []
        ids = [h["NUNOTA"] for h in headers]
        placeholders = ", ".join("?" for _ in ids)
        params = [m.parameter(i, "I") for i in ids]
        items = self._load_all("ItemNota", f"this.NUNOTA IN ({placeholders})", params,
                               "NUNOTA,SEQUENCIA,CODPROD,QTDNEG,VLRUNIT,VLRTOT", (("Produto", "DESCRPROD"),),
                               key=lambda r: (r.get("NUNOTA"), r.get("SEQUENCIA")))
        titles = self._load_all("Financeiro", f"this.NUNOTA IN ({placeholders})", params, "NUFIN,NUNOTA,CODTIPTIT",
                                key=lambda r: r.get("NUFIN"))
        table = self.settings.get("payment_types", "")
        method = {t["NUNOTA"]: m.payment_method_name(t.get("CODTIPTIT", ""), table) for t in titles}
        return [m.pos_sale_from_note(h, [i for i in items if i["NUNOTA"] == h["NUNOTA"]], method.get(h["NUNOTA"], ""))
                for h in headers]

    def _company_filter(self, where: str, params: list[dict[str, str]] | None = None):
        params = list(params or [])
        company = self.settings.get("company_code", "")
        if company:
            where = f"({where}) AND this.CODEMP = ?" if where else "this.CODEMP = ?"
            params.append(m.parameter(company, "I"))
        return where, tuple(params)

    # -- the window walk behind every pull
    def _pull(self, spec: PullSpec, cursor: str | None) -> tuple[list[dict[str, str]], str, bool]:
        """Rows changed after the cursor, in (timestamp, key) order, gathered from complete windows
        until about a page is collected; the cursor ends exactly where the last window ended."""
        state = m.decode_cursor(cursor)
        after = m.parse_datetime(state.get("t", "")) or PULL_FLOOR
        key = state.get("k")
        width = int(state.get("w") or PULL_FIRST_WINDOW)
        ceiling = self._pull_ceiling()
        collected: list[dict[str, str]] = []
        for _ in range(PULL_MAX_PROBES):
            if key is None and after >= ceiling:
                break
            upto = max(after, min(after + timedelta(seconds=width), ceiling))
            span = int((upto - after).total_seconds())
            rows, overflow = self._window(spec, after, key, upto)
            if overflow and span > 1:
                width = max(1, span // 2)
                continue
            if overflow and collected:
                break
            if overflow:
                rows, after, key = self._walk_second(spec, after, key, upto)
                return rows, self._cursor(after, key, 1), True
            collected += self._ordered(spec, rows)
            after, key = upto, None
            if len(rows) < m.ROWS_PER_PAGE // 4:
                width = min(width * 2, PULL_WIDEST_WINDOW)
            if len(collected) >= m.ROWS_PER_PAGE:
                break
        return collected, self._cursor(after, key, width), not (key is None and after >= ceiling)

    def _walk_second(self, spec: PullSpec, after: datetime, key: int | None, upto: datetime):
        """More than a page changed within one second: deliver it in slices of primary key, each
        slice as wide as still fits one page (found by bisection)."""
        second = after if key is not None else upto
        low = key if key is not None else -1
        rows, overflow = self._second_slice(spec, second, low, None)
        if not overflow:
            return self._ordered(spec, rows), second, None
        fits, fitting_rows = low, []
        too_many = max(int(r[spec.key]) for r in rows)
        for _ in range(PULL_MAX_PROBES):
            if too_many - fits <= 1 or len(fitting_rows) >= m.ROWS_PER_PAGE // 2:
                break
            middle = (fits + too_many) // 2
            rows, overflow = self._second_slice(spec, second, low, middle)
            if overflow:
                too_many = middle
            else:
                fits, fitting_rows = middle, rows
        return self._ordered(spec, fitting_rows), second, fits

    def _window(self, spec: PullSpec, after: datetime, key: int | None, upto: datetime):
        stamp, pk = f"this.{spec.stamp}", f"this.{spec.key}"
        moment = m.format_datetime(after)
        if key is None:
            expression = f"{stamp} > ? AND {stamp} <= ?"
            params = [m.parameter(moment, "D"), m.parameter(m.format_datetime(upto), "D")]
        else:
            expression = f"({stamp} > ? OR ({stamp} = ? AND {pk} > ?)) AND {stamp} <= ?"
            params = [m.parameter(moment, "D"), m.parameter(moment, "D"), m.parameter(key, "I"),
                      m.parameter(m.format_datetime(upto), "D")]
        return self._pull_page(spec, expression, params)

    def _second_slice(self, spec: PullSpec, second: datetime, low: int, high: int | None):
        expression = f"this.{spec.stamp} = ? AND this.{spec.key} > ?"
        params = [m.parameter(m.format_datetime(second), "D"), m.parameter(low, "I")]
        if high is not None:
            expression += f" AND this.{spec.key} <= ?"
            params.append(m.parameter(high, "I"))
        return self._pull_page(spec, expression, params)

    def _pull_page(self, spec: PullSpec, expression: str, params: list[dict[str, str]]):
        if spec.where:
            expression = f"({expression}) AND ({spec.where})"
            params = params + list(spec.where_params)
        return self._load(spec.entity, expression, params, spec.fields, spec.joins)

    @staticmethod
    def _ordered(spec: PullSpec, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return sorted(rows, key=lambda r: (m.parse_datetime(r.get(spec.stamp, "")) or PULL_FLOOR,
                                           int(r.get(spec.key) or 0)))

    def _pull_ceiling(self) -> datetime:
        """The newest moment a pull may reach: the ERP's clock (UTC-3), less the settle delay, less 1 s."""
        settle = float(self.settings.get("pull_settle_seconds") or 0)
        now = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(tzinfo=None, microsecond=0)
        return now - timedelta(seconds=settle) - timedelta(seconds=1)

    @staticmethod
    def _cursor(after: datetime, key: int | None, width: int) -> str:
        return m.encode_cursor({"t": m.format_datetime(after), "k": key, "w": width})

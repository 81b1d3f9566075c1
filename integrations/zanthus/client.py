"""Zanthus (Zanthus Manager back office + Zeus POS) through its partner channel.

Zanthus publishes no REST API. Partners send one generic "ZMI" command document as JSON in the form
field `str_json` to `/manager/restful/integracao/cadastro_sincrono.php5` on the tenant's Manager. This
connector uses it for two things only, the two that public partner code proves:

- customers: `REPLACE > CLIENTES > CLIENTE` (an upsert by COD_CLIENTE) and `SELECT` with an EQUAL filter;
- counter (POS) sales: `FUNCTION > BUSCAR_MOVIMENTOS` reads unexported movements, and
  `FUNCTION > MARCAR_MOVIMENTOS` marks them exported. We mark only in `acknowledge_pos_sales`, which the
  sync layer calls after the sales are committed, so a crash in between means re-delivery, never loss.

Orders, receivables, settling and NF-e/NFS-e issuing have no public call: not offered.

UNCONFIRMED facts, each a setting with the most likely default:
- `auth_mode` ("session"): the SaaS login `autenticarUsuario(usuario, senha, empresa, local)` (SOAP at
  `login_url`) returns a session id. How the JSON channel carries it is not public: we send the SOAP
  header's names as form fields (`service_sessao_saas`, `saas_service=integracao`). Session lifetime is
  unknown: any auth-looking error triggers one re-login. "basic" (HTTP basic, for on-premise Managers
  behind a proxy) and "none" (LAN/VPN, as public integrations call it) are the alternatives.
- `login_url` (empty = `<base_url>/manager_saas/saas_redirect.php5`; the shared SaaS login lives at
  https://www.zanthusonline.com.br/manager_saas/saas_redirect.php5).
- `customer_select_wrapper` ("CLIENTES/CLIENTE"): SELECT on CLIENTES is proven only for MERCADORIAS;
  some Manager versions answer a bare HTTP 400/500 when the wrapper name is not the one they expect.
- `customer_code` ("tax_id"): COD_CLIENTE is the CPF/CNPJ (as a public integration does), or "tecpet_id".
- `ie_placeholder` ("ISENTO"): NUM_INSC_EST is obligatory; the value for people without one is unknown.
- `municipio_map` (empty): ID_MUNICIPIO looks like an internal Zanthus id in partner payloads; by default
  we send the IBGE code there too (and in COD_IBGE); a JSON {"ibge": "id"} map overrides it per tenant.
- `ascii_only` ("0"): some installs store ISO-8859-1; "1" strips accents before sending.
- `store_code` ("1"), `pos_window_days` ("1"), `pos_lookback_days` ("7"), `pos_timeout_seconds` ("300"):
  sales queries are slow (partners wait 2-10 minutes) and must be read in small date windows.
- `tender_names` (empty): tender ("finalizadora") codes are per store; a JSON {"code": "Dinheiro"} map
  names them, otherwise a sale shows "Finalizadora <code>".
- `timezone` ("America/Sao_Paulo"): movements carry local dates and times without an offset.

Limits: Zanthus documents none. We keep to one request in flight per tenant (what partners advise) and
a courtesy budget of 5 requests per second; the sandbox enforces the same by default.
"""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

from ..base import (AuthError, Capability, Connector, ConnectorError, CredentialField, CustomerRecord, FieldError,
                    NotFoundError, PermanentError, PullPage, PushResult, RateLimit,
                    RecordRequirement, RemoteCustomer, SettingField, TransientError)
from . import mapping

ZMI_PATH = "/manager/restful/integracao/cadastro_sincrono.php5"
LOGIN_PATH = "/manager_saas/saas_redirect.php5"


class ZanthusConnector(Connector):
    """Customers go to Zanthus; counter sales come back from its POS movement queue."""

    name = "zanthus"
    label = "Zanthus"
    two_way = True
    capabilities = frozenset({Capability.PUSH_CUSTOMERS, Capability.PULL_POS_SALES})
    credential_fields = (
        CredentialField("usuario", "User (usuário)", secret=False, required=False,
                        help="Manager user for the SaaS login; leave empty when the Manager is reached without login."),
        CredentialField("senha", "Password (senha)", required=False),
        CredentialField("empresa", "Company (empresa)", secret=False, required=False),
        CredentialField("local", "Location (local)", secret=False, required=False),
    )
    setting_fields = (
        SettingField("base_url", "Manager address", "https://{tenant}.zanthusonline.com.br",
                     help="The tenant's Manager (SaaS host or on-premise address, with https:// or http://)."),
        SettingField("tenant", "SaaS tenant", "", help="Fills {tenant} in the address."),
        SettingField("auth_mode", "Authentication", "session", help="session | basic | none (UNCONFIRMED)"),
        SettingField("login_url", "Login address", "", help="Empty: <address>/manager_saas/saas_redirect.php5"),
        SettingField("customer_select_wrapper", "Customer SELECT wrapper", "CLIENTES/CLIENTE"),
        SettingField("customer_code", "Customer code (COD_CLIENTE)", "tax_id", help="tax_id | tecpet_id"),
        SettingField("ie_placeholder", "IE/RG when the customer has none", "ISENTO"),
        SettingField("municipio_map", "IBGE code -> ID_MUNICIPIO (JSON)", ""),
        SettingField("ascii_only", "Send text without accents", "0"),
        SettingField("store_code", "Store code (COD_LOJA)", "1"),
        SettingField("pos_window_days", "Days read per sales request", "1"),
        SettingField("pos_lookback_days", "Days of sales read on the first pull", "7"),
        SettingField("pos_timeout_seconds", "Timeout of a sales request (s)", "300"),
        SettingField("tender_names", "Tender code -> payment method (JSON)", ""),
        SettingField("timezone", "Store time zone", "America/Sao_Paulo"),
    )
    auth_kind = "static"
    rate_limit = RateLimit(windows=((5, 1.0),), max_concurrency=1, safety=0.10)
    batch_size = 50
    record_requirements = (
        RecordRequirement("tax_id", "zanthus.tax_id_required", "error", "Zanthus requires the CPF/CNPJ (NUM_CGC).",
                          required=True),
        RecordRequirement("street", "zanthus.street_required", "error", "Zanthus requires the street (DES_ENDERECO).",
                          required=True),
        RecordRequirement("number", "zanthus.number_required", "error",
                          "Zanthus requires the street number (NUMERO); use S/N when there is none.", required=True),
        RecordRequirement("district", "zanthus.district_required", "error", "Zanthus requires the district (DES_BAIRRO).",
                          required=True),
        RecordRequirement("zip_code", "zanthus.zip_code_required", "error", "Zanthus requires the CEP (NUM_CEP).",
                          required=True),
        RecordRequirement("city", "zanthus.city_required", "error", "Zanthus requires the city (DES_CIDADE).",
                          required=True),
        RecordRequirement("city_ibge_code", "zanthus.city_ibge_code_required", "error",
                          "Zanthus requires the municipality (ID_MUNICIPIO / COD_IBGE).", required=True),
        RecordRequirement("state", "zanthus.state_required", "error", "Zanthus requires the UF (DES_SIGLA).",
                          required=True),
    )
    notes = (
        "Customers are sent to Zanthus Manager through its partner integration channel (ZMI commands).",
        "Counter sales come back from the Zanthus POS; each sale is marked as exported in Zanthus only after "
        "TecPet has stored it.",
        "Zanthus offers no call for orders, installments or receivables: the financial side stays inside Zanthus.",
        "Invoices (NF-e / NFS-e) are not issued through Zanthus; its POS issues its own NFC-e at the checkout.",
        "Customers changed inside Zanthus do not come back.",
    )

    # ------------------------------------------------------------------ settings
    def _base_url(self) -> str:
        base = self.settings["base_url"].replace("{tenant}", self.settings.get("tenant", "")).rstrip("/")
        if "{" in base or base.startswith("https://.") or not base.startswith(("http://", "https://")):
            raise PermanentError("The Zanthus Manager address is not configured (set the tenant or the address).")
        return base

    def _login_url(self) -> str:
        configured = self.settings.get("login_url", "")
        return urljoin(self._base_url() + "/", configured) if configured else self._base_url() + LOGIN_PATH

    def _json_setting(self, name: str) -> dict[str, str]:
        text = self.settings.get(name) or ""
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PermanentError(f"The Zanthus setting {name!r} must be a JSON object.")
        return {str(k): str(v) for k, v in data.items()}

    def _customer_options(self) -> mapping.CustomerOptions:
        return mapping.CustomerOptions(ie_placeholder=self.settings["ie_placeholder"],
                                       municipio_map=self._json_setting("municipio_map"),
                                       ascii_only=self.settings["ascii_only"] in {"1", "true", "yes"})

    def _timezone(self) -> ZoneInfo:
        return ZoneInfo(self.settings["timezone"])

    # ------------------------------------------------------------------ session login
    def _session_lock(self):
        return self.ctx.http.lock(f"oauth:{self.name}:{self.ctx.account_key}")

    def _session(self) -> str:
        return self.ctx.credentials.get("session_id") or self._renew_session(stale=None)

    def _renew_session(self, stale: str | None) -> str:
        """Log in again once per account: another worker may already have replaced the stale session."""
        with self._session_lock():
            current = self.ctx.credentials.get("session_id")
            if current and current != stale:
                return current
            session = self._authenticate()
            self.ctx.credentials["session_id"] = session
            self.ctx.save_credentials(dict(self.ctx.credentials))
            return session

    def _authenticate(self) -> str:
        creds = self.ctx.credentials
        envelope = mapping.login_envelope(creds.get("usuario", ""), creds.get("senha", ""),
                                          creds.get("empresa", ""), creds.get("local", ""))
        # A SOAP fault comes back as HTTP 500: read it instead of retrying it as a server error.
        resp = self.http("POST", self._login_url(), data=envelope.encode("utf-8"), retry_statuses=(502, 503, 504),
                         headers={"Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": f"{mapping.LOGIN_NAMESPACE}#autenticarUsuario"})
        fault = mapping.soap_fault(resp.text)
        if fault is not None:
            raise AuthError(f"Zanthus refused the login: {fault}", status=resp.status_code)
        if resp.status_code >= 400:
            raise TransientError(f"The Zanthus login answered HTTP {resp.status_code}", status=resp.status_code)
        return mapping.login_session(resp.text)

    # ------------------------------------------------------------------ the ZMI call
    def _call(self, commands: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send one ZMI document; re-login once when the answer says the session is gone."""
        session = self._session() if self.settings["auth_mode"] == "session" else None
        answer, auth_failed = self._post(commands, session, timeout)
        if auth_failed and session is not None:
            session = self._renew_session(stale=session)
            answer, auth_failed = self._post(commands, session, timeout)
        if auth_failed:
            raise mapping.auth_error(mapping.zmi_errors(answer)) if isinstance(answer, dict) else \
                AuthError("Zanthus refused the credentials")
        errors = mapping.zmi_errors(answer)
        if errors:
            raise mapping.error_to_exception(errors)
        return answer

    def _post(self, commands: dict[str, Any], session: str | None, timeout: float | None) -> tuple[Any, bool]:
        """POST the form; return (answer, whether it is an authentication failure)."""
        form = {"str_json": json.dumps(mapping.zmi_document(commands), ensure_ascii=False)}
        kwargs: dict[str, Any] = {"data": form, "headers": {"Accept": "application/json"}}
        if session is not None:
            form.update(service_sessao_saas=session, saas_service="integracao")
        if self.settings["auth_mode"] == "basic":
            kwargs["auth"] = (self.ctx.credentials.get("usuario", ""), self.ctx.credentials.get("senha", ""))
        if timeout:
            kwargs["timeout"] = timeout
        # HTTP 500 is read here, not retried: with no body it is the wrapper-name quirk, not an outage.
        resp = self.http("POST", self._base_url() + ZMI_PATH, retry_statuses=(502, 503, 504), **kwargs)
        if resp.status_code in (401, 403):
            return None, True
        answer = self._read_answer(resp, "SELECT" in commands)
        return answer, mapping.is_auth_failure(mapping.zmi_errors(answer))

    @staticmethod
    def _read_answer(resp, is_select: bool) -> Any:
        """JSON answer, or the typed error for the bare HTTP failures some Manager versions give."""
        if resp.status_code >= 400 and not resp.content.strip():
            if is_select:
                raise PermanentError(
                    f"Zanthus refused the customer query with HTTP {resp.status_code} and no detail: this Manager "
                    f"version expects another wrapper name (setting customer_select_wrapper).", status=resp.status_code)
            raise TransientError(f"Zanthus answered HTTP {resp.status_code} with no detail", status=resp.status_code)
        try:
            return resp.json()
        except ValueError:
            raise TransientError(f"Zanthus answered HTTP {resp.status_code} with something that is not JSON",
                                 status=resp.status_code, raw=resp.text[:300]) from None

    # ------------------------------------------------------------------ connection
    def test_connection(self) -> str:
        """Log in (when configured) and run a SELECT that matches nothing: proves access to CLIENTES."""
        self._select_customers("COD_CLIENTE", "TECPET-CONNECTION-TEST")
        who = self.ctx.credentials.get("empresa") or self.settings.get("tenant") or self._base_url()
        return f"Connected to Zanthus Manager ({who}), store {self.settings['store_code']}"

    # ------------------------------------------------------------------ customers
    def _select_customers(self, field_name: str, value: str) -> list[RemoteCustomer]:
        answer = self._call(mapping.select_clientes(self.settings["customer_select_wrapper"], field_name, value))
        options = self._customer_options()
        return [mapping.cliente_to_remote(row, options) for row in mapping.rows_of(answer)]

    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """Our id in COD_CLIENTE_INTEGRACAO first, then the CPF/CNPJ compared as letters and digits."""
        if customer.id:
            hits = [c for c in self._select_customers("COD_CLIENTE_INTEGRACAO", customer.id)
                    if c.record.id == customer.id]
            if hits:
                return hits[0]
        key = mapping.tax_id_key(customer.tax_id)
        if key:
            hits = [c for c in self._select_customers("NUM_CGC", key) if c.record.tax_id == key]
            if hits:
                return hits[0]
        return None

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        hits = [c for c in self._select_customers("COD_CLIENTE", remote_id) if c.remote_id == remote_id]
        if not hits:
            raise NotFoundError(f"Zanthus has no customer with code {remote_id}")
        return hits[0]

    def _code_for(self, customer: CustomerRecord) -> str:
        code = mapping.customer_code(customer, self.settings["customer_code"])
        if not code:
            raise PermanentError("Zanthus needs a customer code", field_errors=[
                FieldError("tax_id", "the CPF/CNPJ is required by Zanthus (NUM_CGC)")])
        return code

    def _replace(self, clientes: list[dict[str, str]]) -> None:
        self._call(mapping.replace_clientes(clientes))

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        cliente = mapping.customer_to_cliente(customer, self._code_for(customer), self._customer_options())
        self._replace([cliente])
        return PushResult(cliente["COD_CLIENTE"], created=True, remote_copy=cliente)

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        cliente = mapping.customer_to_cliente(customer, remote_id, self._customer_options())
        self._replace([cliente])
        return PushResult(remote_id, created=False, remote_copy=cliente)

    def upsert_customers(self, batch: list[tuple[CustomerRecord, str | None]]) -> list[PushResult | ConnectorError]:
        """Resolve each record's COD_CLIENTE (known, found, or derived), then REPLACE them together.

        REPLACE is an upsert, so sending a record twice never duplicates it. When Zanthus refuses a
        batch (HALTONERROR stops at the first bad record) the batch is replayed one by one, so each
        record gets its own outcome.
        """
        outcomes: list[PushResult | ConnectorError | None] = [None] * len(batch)
        planned: list[tuple[int, dict[str, str], bool]] = []
        options = self._customer_options()
        for index, (record, remote_id) in enumerate(batch):
            try:
                code, created = self._resolve_code(record, remote_id)
                planned.append((index, mapping.customer_to_cliente(record, code, options), created))
            except PermanentError as exc:
                outcomes[index] = exc
        for start in range(0, len(planned), self.batch_size):
            self._replace_chunk(planned[start:start + self.batch_size], outcomes)
        return [o for o in outcomes if o is not None]

    def _resolve_code(self, record: CustomerRecord, remote_id: str | None) -> tuple[str, bool]:
        if remote_id:
            return remote_id, False
        found = self.find_customer(record)
        return (found.remote_id, False) if found else (self._code_for(record), True)

    def _replace_chunk(self, chunk: list[tuple[int, dict[str, str], bool]], outcomes: list) -> None:
        try:
            self._replace([cliente for _, cliente, _ in chunk])
        except PermanentError as exc:
            if len(chunk) == 1:
                outcomes[chunk[0][0]] = exc
                return
            for item in chunk:
                outcomes[item[0]] = self._single_outcome(item)
            return
        for index, cliente, created in chunk:
            outcomes[index] = PushResult(cliente["COD_CLIENTE"], created=created, remote_copy=cliente)

    def _single_outcome(self, item: tuple[int, dict[str, str], bool]) -> PushResult | ConnectorError:
        _, cliente, created = item
        try:
            self._replace([cliente])
        except PermanentError as exc:
            return exc
        return PushResult(cliente["COD_CLIENTE"], created=created, remote_copy=cliente)

    # ------------------------------------------------------------------ POS sales
    def _today(self) -> date:
        return datetime.now(self._timezone()).date()

    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        """Read one date window of unexported movements; never mark them here.

        The cursor keeps the first day still read and the movements already handed over under it, so a
        continued pull does not hand them over again while their acknowledgement is on its way. A pull
        from an older cursor (the sync layer crashed before storing) hands them over again. The window
        moves on only once Zanthus has nothing new in it; sales still unacknowledged then come once more.
        """
        today = self._today()
        lookback = int(self.settings["pos_lookback_days"])
        state = mapping.PosCursor.load(cursor, default_start=today - timedelta(days=lookback))
        if state.start > today:  # the store's clock is behind the cursor: nothing to read yet
            return PullPage(items=[], cursor=state.dump(), more=False)
        end = min(state.start + timedelta(days=max(1, int(self.settings["pos_window_days"])) - 1), today)
        movements = self._fetch_movements(state.start, end)
        pending = set(state.pending)
        fresh = [m for m in movements if mapping.sale_key(m) not in pending]
        still_pending = [mapping.sale_key(m) for m in movements if mapping.sale_key(m) in pending]
        tz, names = self._timezone(), self._json_setting("tender_names")
        items = [mapping.movement_to_sale(m, tz, names) for m in fresh if mapping.is_sale(m)]
        handed = still_pending + [mapping.sale_key(m) for m in fresh]
        if not fresh and end < today:
            return self._leave_window(movements, pending, end + timedelta(days=1), tz, names)
        return PullPage(items=items, cursor=mapping.PosCursor(state.start, handed).dump(), more=end < today)

    @staticmethod
    def _leave_window(movements: list[dict[str, Any]], pending: set[str], next_start: date, tz, names) -> PullPage:
        """Move to the next window. Sales handed over earlier that Zanthus still lists as unexported
        (their acknowledgement never landed) are handed over once more, so the sync layer, which
        dedupes by remote id, acknowledges them again instead of leaving them in Zanthus' queue."""
        unacknowledged = [mapping.movement_to_sale(m, tz, names) for m in movements
                          if mapping.sale_key(m) in pending and mapping.is_sale(m)]
        return PullPage(items=unacknowledged, cursor=mapping.PosCursor(next_start).dump(), more=True)

    def _fetch_movements(self, start: date, end: date) -> list[dict[str, Any]]:
        command = mapping.buscar_movimentos(self.settings["store_code"], datetime.combine(start, time.min),
                                            datetime.combine(end, time(23, 59, 59)))
        answer = self._call(command, timeout=float(self.settings["pos_timeout_seconds"]))
        return mapping.movements_of(answer)

    def acknowledge_pos_sales(self, remote_ids: list[str]) -> None:
        """Mark stored sales as exported in Zanthus (MARCAR_MOVIMENTOS, STATUS OK)."""
        ids = list(dict.fromkeys(remote_ids))
        for start in range(0, len(ids), 200):
            self._call(mapping.marcar_movimentos(ids[start:start + 200]))

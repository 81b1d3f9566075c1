"""A fake Zanthus Manager: the partner JSON channel, the SaaS SOAP login and a POS movement queue.

What it reproduces:
- `POST /manager/restful/integracao/cadastro_sincrono.php5`, form field `str_json` = ZMI document:
  `REPLACE > CLIENTES` (upsert by COD_CLIENTE, the template's obligatory fields, CPF/CNPJ check digits,
  all-or-nothing with HALTONERROR), `SELECT > CLIENTES > CLIENTE` with FIELD/FILTER EQUAL,
  `FUNCTION > BUSCAR_MOVIMENTOS` and `MARCAR_MOVIMENTOS` over a movement store;
- answers in Zanthus' JSON shape: `QUERY > CONTENT` (a single child collapses into an object),
  `ERRORS > ERROR > CODE/DESCRIPTION` with HTTP 200, and a bare HTTP 500 when the SELECT wrapper is
  not the one this "version" expects;
- `POST /manager_saas/saas_redirect.php5`: SOAP `autenticarUsuario` returning `<status>` = session id,
  or a SOAP fault for wrong credentials; sessions expire after `session_ttl` seconds or on the
  `expire_tokens` fault;
- limits: none are documented, so it holds the connector to what partners advise (one request in flight
  per tenant) and to our courtesy budget (5 per second), counting anything over them.
"""
from __future__ import annotations

import html
import json
import re
import secrets
import time
import xml.etree.ElementTree as ET
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from validate_docbr import CNPJ, CPF
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..sandbox_kit import IdSequence, SandboxApp
from . import mapping

DEMO_CREDENTIALS: dict[str, str] = {"usuario": "tecpet", "senha": "demo-zanthus", "empresa": "1", "local": "1"}

UFS = {"AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR", "PE", "PI",
       "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO"}

STORE_TIMEZONE = ZoneInfo("America/Sao_Paulo")
SESSION_LOST = "Sessão inválida ou expirada. Efetue o login novamente."


class Sandbox(SandboxApp):
    name = "zanthus"
    default_rate_limit = [(5, 1.0)]

    @property
    def rules(self) -> list[Rule]:
        """Fresh Rule objects per instance: werkzeug binds a Rule to one Map, so a class-level list
        would make a second sandbox in the same process fail."""
        return [
            Rule("/manager/restful/integracao/cadastro_sincrono.php5", endpoint="zmi", methods=["POST"]),
            Rule("/manager_saas/saas_redirect.php5", endpoint="soap", methods=["POST"]),
            Rule("/__sandbox__/movements", endpoint="_movements", methods=["POST"]),
        ]

    def __init__(self, *, credentials: dict[str, str] | None = None, auth: str = "session",
                 session_ttl: float = 1800.0, customer_wrapper: str = "CLIENTES/CLIENTE", demo_sales: bool = True,
                 **faults: Any):
        self.credentials = dict(credentials or DEMO_CREDENTIALS)
        self.auth = auth
        self.session_ttl = session_ttl
        self.customer_wrapper = customer_wrapper
        self.demo_sales = demo_sales
        faults.setdefault("max_concurrency", 1)
        super().__init__(**faults)

    # ------------------------------------------------------------------ state
    def reset_data(self) -> None:
        self.clientes: dict[str, dict[str, str]] = {}
        self.movements: list[dict[str, Any]] = []
        self.exported: set[str] = set()
        self.sessions: dict[str, float] = {}
        self.logins = 0
        self.receipts = IdSequence(5000)
        self.counters = IdSequence(100)
        if getattr(self, "demo_sales", False):
            self._seed_demo_sales()

    def state(self) -> dict[str, Any]:
        return {"clientes": list(self.clientes.values()),
                "movimentos": [dict(m, exportado=mapping.sale_key(m) in self.exported) for m in self.movements],
                "sessions": len(self.sessions), "logins": self.logins}

    def _seed_demo_sales(self) -> None:
        today = datetime.now(STORE_TIMEZONE).date()
        self.add_movement(day=today, hour="0915", items=[("7891000100103", "2", "39.80")], tenders=[("1", "39.80")])
        self.add_movement(day=today, hour="1032", items=[("7891000055502", "1", "129.90")], tenders=[("5", "129.90")],
                          document="52998224725")

    def add_movement(self, *, day: date, hour: str = "1200", store: str = "1", till: str = "1",
                     items: list[tuple[str, str, str]] = (), tenders: list[tuple[str, str]] = (),
                     document: str = "", function: str = "1", cancelled: bool = False) -> str:
        """Record a POS movement as the Zeus POS would upload it; returns its key."""
        with self.lock:
            receipt = str(self.receipts.next())
            movement = {
                "M00ZA": store, "M00AC": till, "M00AD": receipt, "M00AF": day.strftime("%d-%m-%Y"),
                "M00ZD": f"{hour[:2]}:{hour[2:]}:00", "M00AE": function, "M00_CRO": "1",
                "M00_TRN": str(self.counters.next()),
                "ZAN_M01S": {"ZAN_M01": {"M01BV": document, "M01AW": "12", "M01AU": hour,
                                         "M01BO": str(int(receipt) - 1) if cancelled else receipt}},
                "ZAN_M02S": {"ZAN_M02": _collapse([{"M02AI": code, "M02AK": value, "M02BI": document, "M02AH": "7",
                                                    "M02ZB": till} for code, value in tenders])},
                "ZAN_M03S": {"ZAN_M03": _collapse([{"M03AH": code, "M03AO": qty, "M03AP": total, "M03AQ": "0.00",
                                                    "M03DJ": "0.00", "M03AJ": "T1", "M03AY": "18.00", "M03CF": "0"}
                                                   for code, qty, total in items])},
            }
            self.movements.append(movement)
            return mapping.sale_key(movement)

    # ------------------------------------------------------------------ auth
    def _session_ok(self, request: Request) -> bool:
        if self.auth == "none":
            return True
        if self.auth == "basic":
            auth = request.authorization
            return bool(auth) and auth.username == self.credentials["usuario"] and \
                auth.password == self.credentials["senha"]
        with self.lock:
            if self.faults.expire_tokens:
                self.sessions.clear()
                self.faults.expire_tokens = False
            session = request.form.get("service_sessao_saas", "")
            expires = self.sessions.get(session)
            if expires is None or expires < time.monotonic():
                self.sessions.pop(session, None)
                return False
            return request.form.get("saas_service") == "integracao"

    def soap(self, request: Request) -> Response:
        root = _xml(request.get_data())
        call = next((e for e in root.iter() if _local(e.tag) == "autenticarUsuario"), None) if root is not None else None
        if call is None:
            return _soap_fault("SOAP-ENV:Client", "Operação não suportada por este servidor")
        given = {_local(c.tag): (c.text or "") for c in call}
        if any(given.get(k, "") != v for k, v in self.credentials.items()):
            return _soap_fault("SOAP-ENV:Client", "Usuário ou senha inválidos")
        session = secrets.token_hex(16)
        with self.lock:
            self.sessions[session] = time.monotonic() + self.session_ttl
            self.logins += 1
        inner = f'<?xml version="1.0" encoding="UTF-8"?><autenticarUsuario><status>{session}</status></autenticarUsuario>'
        return _soap_answer("autenticarUsuarioResponse", html.escape(inner))

    # ------------------------------------------------------------------ the ZMI channel
    def zmi(self, request: Request) -> Response:
        if self.auth == "basic" and not self._session_ok(request):
            return Response("", status=401, headers={"WWW-Authenticate": 'Basic realm="Manager"'})
        if self.auth == "session" and not self._session_ok(request):
            return self.json({"CONTENT": {"ERRORS": {"ERROR": {"CODE": "0001", "DESCRIPTION": SESSION_LOST}}}})
        document = _json_field(request.form.get("str_json", ""))
        commands = mapping.commands_of(document)
        if not commands:
            return _error("0002", "Documento ZMI inválido: ZMI > DATABASES > DATABASE > COMMANDS não encontrado")
        if "REPLACE" in commands:
            return self._replace(commands["REPLACE"])
        if "SELECT" in commands:
            return self._select(commands["SELECT"])
        if "FUNCTION" in commands:
            return self._function(commands["FUNCTION"])
        return _error("0003", f"Comando não suportado: {', '.join(commands)}")

    # -- REPLACE CLIENTES
    def _replace(self, replace: dict[str, Any]) -> Response:
        if not isinstance(replace, dict) or "CLIENTES" not in replace:
            return _error("0004", "Somente CLIENTES é aceito por este servidor de testes")
        clientes = [c for group in mapping.as_list(replace["CLIENTES"])
                    for c in mapping.as_list((group or {}).get("CLIENTE"))]
        for position, cliente in enumerate(clientes, start=1):
            problem = _cliente_problem(cliente)
            if problem:  # HALTONERROR="1": nothing of the batch is kept
                code, description = problem
                return _error(code, f"Registro {position} (COD_CLIENTE {cliente.get('COD_CLIENTE', '')}): {description}")
        stamp = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
        with self.lock:
            for cliente in clientes:
                key = str(cliente["COD_CLIENTE"]).strip()
                stored = self.clientes.get(key, {"DTA_CADASTRO": stamp})
                stored.update({k: str(v) for k, v in cliente.items()}, DTA_ALTERACAO=stamp)
                self.clientes[key] = stored
        return self.json({"QUERY": {"CONTENT": {"OK": 1}}})

    # -- SELECT CLIENTES
    def _select(self, select: dict[str, Any]) -> Response:
        plural, _, singular = self.customer_wrapper.partition("/")
        query = (select.get(plural) or {}).get(singular) if isinstance(select, dict) else None
        if not isinstance(query, dict):
            return Response("", status=500)  # what some Manager versions do with an unexpected wrapper
        fields = [f.get("@attributes", {}).get("NAME") for f in mapping.as_list(query.get("FIELD")) if isinstance(f, dict)]
        filters = [(f.get("@attributes", {}), str(f.get("VALUE", ""))) for f in mapping.as_list(query.get("FILTER"))
                   if isinstance(f, dict)]
        if any(attrs.get("TYPE", "EQUAL").upper() != "EQUAL" for attrs, _ in filters):
            return _error("0005", "Tipo de filtro não suportado")
        with self.lock:
            rows = [c for c in self.clientes.values()
                    if all(str(c.get(attrs.get("FIELD", ""), "")) == value for attrs, value in filters)]
            rows = [{k: row.get(k, "") for k in fields} if fields else dict(row) for row in rows]
        return self.json({"QUERY": {"CONTENT": _collapse(rows)}})

    # -- FUNCTION BUSCAR / MARCAR
    def _function(self, function: dict[str, Any]) -> Response:
        if "BUSCAR_MOVIMENTOS" in function:
            return self._buscar(function["BUSCAR_MOVIMENTOS"] or {})
        if "MARCAR_MOVIMENTOS" in function:
            return self._marcar(function["MARCAR_MOVIMENTOS"] or {})
        return _error("0006", f"Função não suportada: {', '.join(function)}")

    def _buscar(self, args: dict[str, Any]) -> Response:
        try:
            start = datetime.fromisoformat(str(args["DTA_INICIO"]))
            end = datetime.fromisoformat(str(args["DTA_FIM"]))
        except (KeyError, ValueError):
            return _error("0007", "DTA_INICIO e DTA_FIM são obrigatórios (AAAA-MM-DDTHH:MM:SS)")
        store = str(args.get("COD_LOJA", "")).strip()
        only_new = str(args.get("M00ZZA01", "0")) == "0"
        with self.lock:
            found = [m for m in self.movements if m["M00ZA"] == store
                     and start <= _moment(m) <= end and not (only_new and mapping.sale_key(m) in self.exported)]
            if str(args.get("MARCAR", "0")) == "1":
                self.exported.update(mapping.sale_key(m) for m in found)
        if not found:
            return self.json({"QUERY": {"CONTENT": {"OK": 1}}})
        return self.json({"QUERY": {"CONTENT": {"MOVIMENTOS": {"M00": _collapse(found)}}}})

    def _marcar(self, args: dict[str, Any]) -> Response:
        text = str(args.get("MOVIMENTOS", ""))
        root = _xml(html.unescape(text).encode("utf-8") if text.lstrip().startswith("&lt;") else text.encode("utf-8"))
        if root is None:
            return _error("0008", "MOVIMENTOS não é um XML válido")
        marked = 0
        with self.lock:
            known = {mapping.sale_key(m) for m in self.movements}
            for m00 in root.iter("M00"):
                values = {c.tag: (c.text or "").strip() for c in m00}
                if values.get("STATUS") != "OK":
                    continue
                try:
                    key = mapping.sale_key(values)
                except ValueError:  # no readable M00AF: Zanthus would not find that movement either
                    continue
                if key in known:
                    self.exported.add(key)
                    marked += 1
        return self.json({"QUERY": {"CONTENT": {"OK": 1, "QTD_MARCADOS": marked}}})

    # ------------------------------------------------------------------ control
    def _control(self, endpoint: str, request: Request) -> Response:
        """Adds `POST /__sandbox__/movements` {day, hour, items, tenders, document} for the demo."""
        if endpoint != "_movements":
            return super()._control(endpoint, request)
        data = self.body(request) or {}
        day = date.fromisoformat(data["day"]) if data.get("day") else datetime.now(STORE_TIMEZONE).date()
        key = self.add_movement(day=day,
                                hour=str(data.get("hour", "1200")),
                                items=[tuple(i) for i in data.get("items", [])],
                                tenders=[tuple(t) for t in data.get("tenders", [])],
                                document=str(data.get("document", "")), function=str(data.get("function", "1")))
        return self.json({"key": key})


# --------------------------------------------------------------------------- helpers
def _collapse(rows: list[Any]) -> Any:
    """Zanthus' XML-to-JSON conversion: one child becomes an object, several a list."""
    return rows[0] if len(rows) == 1 else rows


def _error(code: str, description: str) -> Response:
    return SandboxApp.json({"QUERY": {"CONTENT": {"ERRORS": {"ERROR": {"CODE": code, "DESCRIPTION": description}}}}})


def _cliente_problem(cliente: Any) -> tuple[str, str] | None:
    """The first reason Zanthus would refuse this CLIENTE, as (code, description)."""
    if not isinstance(cliente, dict):
        return "1000", "CLIENTE inválido"
    for name in mapping.REQUIRED_CLIENTE_FIELDS:
        if not str(cliente.get(name) or "").strip():
            return "1001", f"Campo obrigatório não informado: {name}"
    document = str(cliente["NUM_CGC"]).strip()
    checker = {11: CPF(), 14: CNPJ()}.get(len(document))
    if checker is None or not checker.validate(document):
        return "1002", f"CPF/CNPJ inválido no campo NUM_CGC: {document}"
    if not re.fullmatch(r"\d{8}", str(cliente["NUM_CEP"]).strip()):
        return "1003", f"CEP inválido no campo NUM_CEP: {cliente['NUM_CEP']}"
    if str(cliente["DES_SIGLA"]).strip().upper() not in UFS:
        return "1004", f"UF inexistente no campo DES_SIGLA: {cliente['DES_SIGLA']}"
    ibge = str(cliente.get("COD_IBGE") or "").strip()
    if ibge and not re.fullmatch(r"\d{7}", ibge):
        return "1005", f"Código IBGE inválido no campo COD_IBGE: {ibge}"
    return None


def _moment(movement: dict[str, Any]) -> datetime:
    day = mapping.movement_date(movement["M00AF"])
    hours, minutes, seconds = (int(p) for p in movement["M00ZD"].split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, seconds)


def _json_field(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _xml(data: bytes):
    try:
        return ET.fromstring(data)
    except ET.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _soap_answer(name: str, escaped_return: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{mapping.SOAP_ENV}" '
            f'xmlns:ns1="{mapping.LOGIN_NAMESPACE}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><SOAP-ENV:Body><ns1:{name}>'
            f'<return xsi:type="xsd:string">{escaped_return}</return></ns1:{name}></SOAP-ENV:Body></SOAP-ENV:Envelope>')
    return Response(body, status=200, content_type="text/xml; charset=utf-8")


def _soap_fault(code: str, reason: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{mapping.SOAP_ENV}">'
            f"<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{html.escape(reason)}"
            f"</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>")
    return Response(body, status=500, content_type="text/xml; charset=utf-8")

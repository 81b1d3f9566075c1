"""Zanthus Manager shapes: canonical records <-> ZMI command documents, and ZMI answers -> typed errors.

Zanthus' partner channel takes one generic "ZMI" command document (REPLACE / SELECT / FUNCTION) and
answers with `QUERY > CONTENT`. Everything here is pure: no I/O, so the sandbox and the tests can rely
on the same shapes the connector sends.
"""
from __future__ import annotations

import html
import json
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from ..base import AuthError, CustomerRecord, FieldError, PermanentError, PosSale, RemoteCustomer

# --------------------------------------------------------------------------- the envelope
DATABASE_ATTRIBUTES = {"NAME": "MANAGER", "AUTOCOMMIT_VALUE": "1000", "AUTOCOMMIT_ENABLED": "1", "HALTONERROR": "1"}


def zmi_document(commands: dict[str, Any]) -> dict[str, Any]:
    """Wrap commands in the ZMI envelope; in JSON the XML attributes live under "@attributes"."""
    return {"ZMI": {"DATABASES": {"DATABASE": {"@attributes": dict(DATABASE_ATTRIBUTES), "COMMANDS": commands}}}}


def as_list(value: Any) -> list[Any]:
    """Zanthus' XML-to-JSON answers collapse a single child into an object: always iterate a list."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def commands_of(document: Any) -> dict[str, Any]:
    """The COMMANDS object of a ZMI document (the sandbox reads requests with this)."""
    try:
        database = document["ZMI"]["DATABASES"]["DATABASE"]
    except (KeyError, TypeError):
        return {}
    database = as_list(database)[0] if database else {}
    return database.get("COMMANDS") or {} if isinstance(database, dict) else {}


# --------------------------------------------------------------------------- customers
# Zanthus field -> canonical field, used both to read rows back and to name fields in errors.
CLIENTE_FIELDS: dict[str, str] = {
    "COD_CLIENTE": "id",
    "DES_CLIENTE": "name",
    "NUM_CGC": "tax_id",
    "NUM_INSC_EST": "state_registration",
    "DES_EMAIL": "email",
    "NUM_FONE": "phone",
    "NUM_CEP": "zip_code",
    "DES_ENDERECO": "street",
    "NUMERO": "number",
    "COMPL_ENDERECO": "complement",
    "DES_BAIRRO": "district",
    "DES_CIDADE": "city",
    "COD_IBGE": "city_ibge_code",
    "ID_MUNICIPIO": "city_ibge_code",
    "DES_SIGLA": "state",
    "COD_CLIENTE_INTEGRACAO": "id",
}

# Marked "obrigatório" in Zanthus' customer template.
REQUIRED_CLIENTE_FIELDS = ("COD_CLIENTE", "DES_CLIENTE", "NUM_CGC", "NUM_INSC_EST", "ID_MUNICIPIO", "DES_ENDERECO",
                           "NUMERO", "DES_BAIRRO", "NUM_CEP", "DES_CIDADE", "DES_SIGLA")

SELECTED_CLIENTE_FIELDS = ("COD_CLIENTE", "COD_CLIENTE_INTEGRACAO", "DES_CLIENTE", "NUM_CGC", "NUM_INSC_EST",
                           "DES_EMAIL", "NUM_FONE", "NUM_CEP", "DES_ENDERECO", "NUMERO", "COMPL_ENDERECO",
                           "DES_BAIRRO", "DES_CIDADE", "COD_IBGE", "ID_MUNICIPIO", "DES_SIGLA", "DTA_ALTERACAO")

BRAZIL_COUNTRY_CODE = "01058"  # BACEN country code seen on every customer in partner payloads


def only_digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def tax_id_key(value: str) -> str:
    """CPF/CNPJ as compared everywhere: letters and digits only, upper case (alphanumeric CNPJ)."""
    return re.sub(r"[^0-9A-Za-z]", "", value or "").upper()


def ascii_text(value: str) -> str:
    """Drop accents: some Manager installs store ISO-8859-1 and mangle UTF-8 names."""
    return unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")


@dataclass(frozen=True)
class CustomerOptions:
    """Tenant choices that Zanthus' public material leaves open (see the connector's settings)."""

    ie_placeholder: str = "ISENTO"
    municipio_map: dict[str, str] = field(default_factory=dict)
    ascii_only: bool = False


def customer_code(customer: CustomerRecord, source: str) -> str:
    """The deterministic COD_CLIENTE: REPLACE upserts by it, so a retried push never duplicates."""
    if source == "tecpet_id":
        return customer.id
    return tax_id_key(customer.tax_id)


def customer_to_cliente(customer: CustomerRecord, code: str, options: CustomerOptions) -> dict[str, str]:
    """One CLIENTE element for `REPLACE > CLIENTES`, with every field the template marks obrigatório."""
    text = ascii_text if options.ascii_only else (lambda s: s)
    ibge = only_digits(customer.city_ibge_code)
    cliente = {
        "COD_CLIENTE": code,
        "COD_CLIENTE_INTEGRACAO": customer.id,
        "DES_CLIENTE": text(customer.name.strip()),
        "NUM_CGC": tax_id_key(customer.tax_id),
        "NUM_INSC_EST": customer.state_registration.strip() or options.ie_placeholder,
        "ID_MUNICIPIO": options.municipio_map.get(ibge, ibge),
        "COD_IBGE": ibge,
        "COD_PAIS": BRAZIL_COUNTRY_CODE,
        "DES_ENDERECO": text(customer.street.strip()),
        "NUMERO": customer.number.strip(),
        "COMPL_ENDERECO": text(customer.complement.strip()),
        "DES_BAIRRO": text(customer.district.strip()),
        "NUM_CEP": only_digits(customer.zip_code),
        "DES_CIDADE": text(customer.city.strip()),
        "DES_SIGLA": customer.state.strip().upper(),
        "DES_EMAIL": customer.email.strip(),
        "NUM_FONE": only_digits(customer.phone),
    }
    return cliente


def replace_clientes(clientes: list[dict[str, str]]) -> dict[str, Any]:
    return {"REPLACE": {"CLIENTES": {"CLIENTE": clientes}}}


def select_clientes(wrapper: str, filter_field: str, value: str) -> dict[str, Any]:
    """`SELECT > CLIENTES > CLIENTE` with FIELD names and one EQUAL filter."""
    plural, _, singular = wrapper.partition("/")
    return {"SELECT": {plural: {singular: {
        "FIELD": [{"@attributes": {"NAME": name}} for name in SELECTED_CLIENTE_FIELDS],
        "FILTER": [{"@attributes": {"FIELD": filter_field, "TYPE": "EQUAL"}, "VALUE": value}],
    }}}}


def person_type_of(tax_id: str) -> str:
    """Zanthus keeps no reliable person-type value we could confirm: a 14-character document is a company."""
    return "PJ" if len(tax_id_key(tax_id)) == 14 else "PF"


def cliente_to_remote(row: dict[str, Any], options: CustomerOptions) -> RemoteCustomer:
    """A SELECTed CLIENTE row (upper-case keys) as a canonical customer."""
    value = lambda key: str(row.get(key) or "").strip()  # noqa: E731 - a tiny reader
    ibge = value("COD_IBGE") or _ibge_from_municipio(value("ID_MUNICIPIO"), options)
    record = CustomerRecord(
        id=value("COD_CLIENTE_INTEGRACAO"), person_type=person_type_of(value("NUM_CGC")), name=value("DES_CLIENTE"),
        tax_id=tax_id_key(value("NUM_CGC")), state_registration=_real_ie(value("NUM_INSC_EST"), options),
        email=value("DES_EMAIL"), phone=value("NUM_FONE"), zip_code=only_digits(value("NUM_CEP")),
        street=value("DES_ENDERECO"), number=value("NUMERO"), complement=value("COMPL_ENDERECO"),
        district=value("DES_BAIRRO"), city=value("DES_CIDADE"), city_ibge_code=ibge, state=value("DES_SIGLA").upper())
    return RemoteCustomer(remote_id=value("COD_CLIENTE"), record=record, modified_at=_parse_datetime(value("DTA_ALTERACAO")),
                          raw=dict(row))


def _real_ie(value: str, options: CustomerOptions) -> str:
    """The placeholder we wrote for "no IE" is not a registration: read it back as empty."""
    return "" if value.upper() == options.ie_placeholder.upper() else value


def _ibge_from_municipio(municipio_id: str, options: CustomerOptions) -> str:
    reverse = {v: k for k, v in options.municipio_map.items()}
    return reverse.get(municipio_id, municipio_id if len(municipio_id) == 7 else "")


# --------------------------------------------------------------------------- answers and errors
@dataclass
class ZmiError:
    code: str
    description: str


def content_of(answer: Any) -> Any:
    if not isinstance(answer, dict):
        return None
    query = answer.get("QUERY")
    if isinstance(query, dict) and "CONTENT" in query:
        return query["CONTENT"]
    return answer.get("CONTENT")


def zmi_errors(answer: Any) -> list[ZmiError]:
    """ERRORS may sit under QUERY > CONTENT or directly under CONTENT, depending on the Manager version."""
    found: list[ZmiError] = []
    candidates = [answer.get("CONTENT") if isinstance(answer, dict) else None]
    candidates += as_list(content_of(answer))
    for content in candidates:
        if not isinstance(content, dict) or "ERRORS" not in content:
            continue
        for error in as_list((content.get("ERRORS") or {}).get("ERROR")):
            if isinstance(error, dict):
                found.append(ZmiError(str(error.get("CODE", "")).strip(), str(error.get("DESCRIPTION", "")).strip()))
    unique = {(e.code, e.description): e for e in found}
    return list(unique.values())


def rows_of(answer: Any) -> list[dict[str, Any]]:
    """SELECT rows: the CONTENT entries that are records, not the OK/ERRORS status object."""
    return [row for row in as_list(content_of(answer))
            if isinstance(row, dict) and row and not set(row) <= {"OK", "ERRORS", "MOVIMENTOS"}]


_AUTH_WORDS = re.compile(r"sess[aãoõ]|autentic|autoriz|login|senha|credencia", re.I)


def is_auth_failure(errors: Iterable[ZmiError]) -> bool:
    """Zanthus has no documented auth error code: an error that talks about session/login is one."""
    return any(_AUTH_WORDS.search(e.description) for e in errors)


_FIELD_NAME = re.compile(r"\b(" + "|".join(sorted(CLIENTE_FIELDS, key=len, reverse=True)) + r")\b")


def error_to_exception(errors: list[ZmiError], what: str = "Zanthus refused the data") -> PermanentError:
    """ZMI CODE/DESCRIPTION pairs -> PermanentError whose field errors use canonical names."""
    field_errors = []
    for error in errors:
        reason = f"{error.description} (Zanthus code {error.code})" if error.code else error.description
        names = {CLIENTE_FIELDS[m] for m in _FIELD_NAME.findall(error.description)}
        if len(names) > 1:  # "COD_CLIENTE x" only says which record; the other name is the faulty field
            names.discard("id")
        names = names or {""}
        field_errors += [FieldError(name, reason) for name in sorted(names)]
    return PermanentError(what, field_errors=field_errors, raw=[e.__dict__ for e in errors])


def auth_error(errors: list[ZmiError]) -> AuthError:
    reasons = "; ".join(e.description for e in errors)
    return AuthError(f"Zanthus refused the login session: {reasons}", raw=[e.__dict__ for e in errors])


# --------------------------------------------------------------------------- SaaS login (SOAP)
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
LOGIN_NAMESPACE = "urn:managerIntegracao"


def login_envelope(usuario: str, senha: str, empresa: str, local: str) -> str:
    """SOAP 1.1 RPC call `autenticarUsuario(usuario, senha, empresa, local)`."""
    parts = "".join(f"<{name}>{html.escape(value)}</{name}>" for name, value in
                    (("usuario", usuario), ("senha", senha), ("empresa", empresa), ("local", local)))
    return (f'<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" '
            f'xmlns:ns1="{LOGIN_NAMESPACE}"><SOAP-ENV:Body><ns1:autenticarUsuario>{parts}'
            f"</ns1:autenticarUsuario></SOAP-ENV:Body></SOAP-ENV:Envelope>")


def soap_fault(text: str) -> str | None:
    """The faultstring of a SOAP fault, or None when the body is not one."""
    root = _parse_xml(text)
    if root is None:
        return None
    for element in root.iter():
        if _local(element.tag) == "Fault":
            reason = next((c.text for c in element.iter() if _local(c.tag) == "faultstring"), "")
            return (reason or "SOAP fault").strip()
    return None


def login_session(text: str) -> str:
    """The session id: the `<status>` child of the XML string that `return` carries.

    Raises AuthError when the answer carries no usable session (empty, "0", or a sentence).
    """
    root = _parse_xml(text)
    inner = next((e.text for e in root.iter() if _local(e.tag) == "return"), None) if root is not None else None
    inner_root = _parse_xml(inner) if inner else None
    status = ""
    if inner_root is not None:
        status = next((c.text or "" for c in inner_root.iter() if _local(c.tag) == "status"), "").strip()
    if not status or status in {"0", "false"} or " " in status:
        raise AuthError(f"Zanthus did not open a session{': ' + status if status else ''}")
    return status


def _parse_xml(text: str):
    try:
        return ET.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
    except ET.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1]


# --------------------------------------------------------------------------- POS movements
NON_SALE_FUNCTIONS = frozenset({"148", "154", "158"})  # payment correction, 154, cash withdrawal (sangria)
KEY_FIELDS = ("M00ZA", "M00AF", "M00AC", "M00AD", "M00_CRO", "M00_TRN")


def buscar_movimentos(store: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Unexported movements (M00ZZA01 = 0) of one store in a window, without marking them on read."""
    return {"FUNCTION": {"BUSCAR_MOVIMENTOS": {
        "COD_LOJA": store, "DTA_INICIO": start.strftime("%Y-%m-%dT%H:%M:%S"),
        "DTA_FIM": end.strftime("%Y-%m-%dT%H:%M:%S"), "M00ZZA01": "0", "MARCAR": "0"}}}


def marcar_movimentos(remote_ids: list[str]) -> dict[str, Any]:
    """Acknowledge movements: an XML `<MOVIMENTO>` list (as text) with STATUS OK for each key."""
    inner = "".join(
        "<M00>" + "".join(f"<{k}>{html.escape(v)}</{k}>" for k, v in parse_sale_key(rid).items())
        + "<STATUS>OK</STATUS></M00>" for rid in remote_ids)
    return {"FUNCTION": {"MARCAR_MOVIMENTOS": {"MOVIMENTOS": f"<MOVIMENTO>{inner}</MOVIMENTO>"}}}


def movements_of(answer: Any) -> list[dict[str, Any]]:
    found = []
    for content in as_list(content_of(answer)):
        if isinstance(content, dict):
            found += [m for m in as_list((content.get("MOVIMENTOS") or {}).get("M00")) if isinstance(m, dict)]
    return found


def movement_date(value: str) -> date:
    """Movements carry dd-mm-yyyy; acknowledgements and keys use ISO dates."""
    value = value.strip()
    for fmt in ("%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"unreadable Zanthus date {value!r}")


def sale_key(movement: dict[str, Any]) -> str:
    """The movement's identity: store, date, till, receipt, CRO and TRN (what MARCAR needs back)."""
    values = {k: str(movement.get(k, "")).strip() for k in KEY_FIELDS}
    values["M00AF"] = movement_date(values["M00AF"]).isoformat()
    return "|".join(values[k] for k in KEY_FIELDS)


def parse_sale_key(remote_id: str) -> dict[str, str]:
    parts = remote_id.split("|")
    if len(parts) != len(KEY_FIELDS):
        raise ValueError(f"not a Zanthus movement id: {remote_id!r}")
    return dict(zip(KEY_FIELDS, parts))


def is_sale(movement: dict[str, Any]) -> bool:
    return str(movement.get("M00AE", "")).strip() not in NON_SALE_FUNCTIONS


def movement_to_sale(movement: dict[str, Any], tz: tzinfo, tender_names: dict[str, str]) -> PosSale:
    """A POS movement (M00 with its M01/M02/M03/M43/M45 children) as a canonical counter sale."""
    summary = _first(movement, "ZAN_M01S", "ZAN_M01") or {}
    invoice = _first(movement, "ZAN_M45S", "ZAN_M45") or {}
    tenders = _children(movement, "ZAN_M02S", "ZAN_M02")
    items = [_item(i, "M03") for i in _children(movement, "ZAN_M03S", "ZAN_M03")]
    items += [_item(i, "M43") for i in _children(movement, "ZAN_M43S", "ZAN_M43")]
    receipt = str(movement.get("M00AD", "")).strip()
    related = str(summary.get("M01BO", "") or receipt).strip()
    document = next((d for d in (summary.get("M01BV"), invoice.get("M45BV"), *(t.get("M02BI") for t in tenders))
                     if tax_id_key(str(d or "")).strip("0")), "")
    paid = [t for t in tenders if _money(t.get("M02AK")) != 0]
    total = sum((_money(t.get("M02AK")) for t in paid), Decimal("0.00")) if paid else \
        sum((i["total"] for i in items if not i["cancelled"]), Decimal("0.00"))
    hour = str(summary.get("M01AU") or invoice.get("M45AU") or movement.get("M00ZD") or "")
    sold_at = datetime.combine(movement_date(str(movement.get("M00AF", ""))), _clock(hour), tzinfo=tz)
    return PosSale(
        remote_id=sale_key(movement), sold_at=sold_at, total=total.quantize(Decimal("0.01")),
        customer_remote_id=tax_id_key(str(document)), payment_method=_payment(paid, tender_names),
        status="cancelled" if related != receipt else "completed", items=items, raw=dict(movement))


def _children(movement: dict[str, Any], group: str, name: str) -> list[dict[str, Any]]:
    holder = movement.get(group)
    return [c for c in as_list(holder.get(name) if isinstance(holder, dict) else None) if isinstance(c, dict)]


def _first(movement: dict[str, Any], group: str, name: str) -> dict[str, Any] | None:
    children = _children(movement, group, name)
    return children[0] if children else None


def _item(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {"product_code": str(row.get(f"{prefix}AH", "")).strip(), "quantity": _money(row.get(f"{prefix}AO"), "0.001"),
            "total": _money(row.get(f"{prefix}AP")), "discount": _money(row.get(f"{prefix}AQ")),
            "surcharge": _money(row.get(f"{prefix}DJ")), "cancelled": str(row.get(f"{prefix}CF", "")).strip() == "1"}


def _payment(tenders: list[dict[str, Any]], names: dict[str, str]) -> str:
    """Tender ("finalizadora") codes are configured per store: named through the tenant's map."""
    codes = list(dict.fromkeys(str(t.get("M02AI", "")).strip() for t in tenders))
    return " + ".join(names.get(c, f"Finalizadora {c}") for c in codes if c)


def _money(value: Any, places: str = "0.01") -> Decimal:
    """Zanthus sends amounts as text, sometimes with a decimal comma; unreadable means zero."""
    step = Decimal(places)
    try:
        return Decimal(str(value).replace(",", ".")).quantize(step)
    except InvalidOperation:
        return Decimal(0).quantize(step)


def _clock(value: str) -> time:
    """Hours come as HHMM (M01AU) or HH:MM[:SS] (M00ZD)."""
    digits = only_digits(value)
    if ":" not in value and digits:
        digits = digits.zfill(4)[-4:]
        return time(int(digits[:2]) % 24, int(digits[2:]) % 60)
    parts = [int(p) for p in re.findall(r"\d+", value)][:3]
    while len(parts) < 3:
        parts.append(0)
    return time(parts[0] % 24, parts[1] % 60, parts[2] % 60)


def _parse_datetime(value: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d-%m-%Y %H:%M:%S", "%Y-%m-%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


# --------------------------------------------------------------------------- POS cursor
@dataclass
class PosCursor:
    """Where the pull stands: the first day still read, and movements already handed over from it.

    `pending` holds movements delivered under this cursor that Zanthus still lists as unexported
    (their acknowledgement has not landed yet): they are not handed over again in this chain.
    """

    start: date
    pending: list[str] = field(default_factory=list)

    def dump(self) -> str:
        return json.dumps({"from": self.start.isoformat(), "pending": self.pending}, separators=(",", ":"))

    @classmethod
    def load(cls, text: str | None, default_start: date) -> "PosCursor":
        if not text:
            return cls(default_start)
        data = json.loads(text)
        return cls(date.fromisoformat(data["from"]), list(data.get("pending") or []))

"""TecPet records <-> Sankhya payloads, and Sankhya's error texts -> typed errors.

Pure functions only: no I/O, no settings lookups. Sankhya speaks in two dialects and both
live here: the REST "API Sankhya" v1 (camelCase JSON, `/v1/...`) and the service layer
(`service.sbr`, data-dictionary names like CGC_CPF, scalars wrapped as {"$": "value"},
rows of `loadRecords` returned positionally as f0, f1 ...).
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from ..base import (
    AuthError,
    ConnectorError,
    CustomerRecord,
    FieldError,
    FiscalResult,
    FiscalState,
    Installment,
    InvoiceRecord,
    NotFoundError,
    PermanentError,
    PosSale,
    Receipt,
    RemoteCustomer,
    TransientError,
)

ROWS_PER_PAGE = 50                      # loadRecords pages are fixed at 50 rows
DATETIME_OUT = "%d/%m/%Y %H:%M:%S"      # how Sankhya writes dates back
DATE_IN = "%d/%m/%Y"                    # how Sankhya reads dates in service and REST bodies

# The first two digits of an IBGE municipality code are its state's code.
UF_BY_IBGE_PREFIX = {
    "11": "RO", "12": "AC", "13": "AM", "14": "RR", "15": "PA", "16": "AP", "17": "TO",
    "21": "MA", "22": "PI", "23": "CE", "24": "RN", "25": "PB", "26": "PE", "27": "AL", "28": "SE", "29": "BA",
    "31": "MG", "32": "ES", "33": "RJ", "35": "SP",
    "41": "PR", "42": "SC", "43": "RS",
    "50": "MS", "51": "MT", "52": "GO", "53": "DF",
}

PARTNER_FIELDS = ("CODPARC,NOMEPARC,RAZAOSOCIAL,TIPPESSOA,CGC_CPF,IDENTINSCESTAD,CLASSIFICMS,EMAIL,TELEFONE,"
                  "CEP,CODEND,NUMEND,COMPLEMENTO,CODBAI,CODCID,ATIVO,CLIENTE,DTALTER")
# Names, not codes, of the partner's street, district and city come from the related entities.
PARTNER_JOINS = (("Endereco", "NOMEEND"), ("Bairro", "NOMEBAI"), ("Cidade", "NOMECID,CODMUNFIS"))

ORDER_MARKER = "TecPet-ref {id};"       # written into OBSERVACAO: the only way to find our order again


# --------------------------------------------------------------------------- scalars
def wrap(value: Any) -> dict[str, str]:
    """Service-layer scalar: {"$": "text"}, or {} for an absent value."""
    if value is None or value == "":
        return {}
    return {"$": str(value)}


def unwrap(value: Any) -> str:
    """Read a service-layer scalar back as text ({} and None become "")."""
    if isinstance(value, dict):
        inner = value.get("$", "")
        return "" if inner is None else str(inner)
    return "" if value is None else str(value)


def parameter(value: Any, kind: str) -> dict[str, str]:
    """A loadRecords criteria parameter; kind is S (text), I (integer), F (decimal) or D (date)."""
    return {"$": str(value), "type": kind}


def digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


def normalize_tax_id(text: str) -> str:
    """CPF/CNPJ as TecPet stores it: letters and digits only, upper case (alphanumeric CNPJ)."""
    return re.sub(r"[^0-9A-Za-z]", "", text or "").upper()


def masked_tax_id(tax_id: str) -> str:
    """The punctuated form some tenants store in CGC_CPF; "" when the length fits neither."""
    t = normalize_tax_id(tax_id)
    if len(t) == 11:
        return f"{t[:3]}.{t[3:6]}.{t[6:9]}-{t[9:]}"
    if len(t) == 14:
        return f"{t[:2]}.{t[2:5]}.{t[5:8]}/{t[8:12]}-{t[12:]}"
    return ""


def decimal_of(text: Any) -> Decimal:
    try:
        return Decimal(str(text).replace(",", ".")) if str(text).strip() else Decimal("0")
    except InvalidOperation:
        return Decimal("0")


def number(value: Decimal) -> float:
    """JSON has no decimals; two-place money and three-place quantities survive a float exactly enough."""
    return float(value)


def integer_or_text(value: str) -> int | str:
    """Tenant codes are numeric in Sankhya; keep anything else as typed by support."""
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def parse_datetime(text: str) -> datetime | None:
    """Sankhya writes `dd/MM/yyyy HH:mm:ss`, sometimes only `dd/MM/yyyy`."""
    text = (text or "").strip()
    for fmt in (DATETIME_OUT, DATE_IN, "%d/%m/%Y %H:%M"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def format_date(day: date, pattern: str = "dd/MM/yyyy") -> str:
    """Dates in the pattern an endpoint wants (the REST baixa's format is not settled)."""
    if pattern == "yyyy-MM-dd":
        return day.strftime("%Y-%m-%d")
    return day.strftime(DATE_IN)


def format_datetime(moment: datetime) -> str:
    return moment.strftime(DATETIME_OUT)


# --------------------------------------------------------------------------- loadRecords
def load_records_body(entity: str, expression: str, params: Iterable[dict[str, str]], fields: str,
                      joins: Iterable[tuple[str, str]] = (), offset_page: int = 0) -> dict[str, Any]:
    """The requestBody of CRUDServiceProvider.loadRecords for one page."""
    entities = [{"path": "", "fieldset": {"list": fields}}]
    entities += [{"path": path, "fieldset": {"list": join_fields}} for path, join_fields in joins]
    data_set: dict[str, Any] = {
        "rootEntity": entity,
        "includePresentationFields": "N",
        "offsetPage": str(offset_page),
        "entity": entities,
    }
    if expression:
        data_set["criteria"] = {"expression": {"$": expression}, "parameter": list(params)}
    return {"dataSet": data_set}


def as_list(value: Any) -> list[Any]:
    """Sankhya sends one element as an object and many as an array."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def rows_of(response_body: dict[str, Any]) -> tuple[list[dict[str, str]], bool]:
    """Positional loadRecords rows -> dicts by field name; plus whether more pages exist."""
    entities = (response_body or {}).get("entities") or {}
    fields = as_list(((entities.get("metadata") or {}).get("fields") or {}).get("field"))
    names = [f.get("name", "") if isinstance(f, dict) else str(f) for f in fields]
    rows = []
    for raw in as_list(entities.get("entity")):
        rows.append({name: unwrap(raw.get(f"f{i}")) for i, name in enumerate(names)})
    more = str(entities.get("hasMoreResult", "false")).lower() == "true"
    return rows, more


# --------------------------------------------------------------------------- customers
def split_phone(phone: str) -> tuple[str, str]:
    """Sankhya's REST takes the area code apart from the number."""
    d = digits(phone)
    if len(d) in (12, 13) and d.startswith("55"):
        d = d[2:]
    if len(d) in (10, 11):
        return d[:2], d[2:]
    return "", d


def icms_classification(record: CustomerRecord) -> str:
    """CLASSIFICMS that agrees with the state registration, as Sankhya checks it.

    Without an IE only C (final consumer) or P (rural producer) are allowed; an exempt company
    writes ISENTO and is I; a company with an IE is a contributing consumer (X).
    """
    ie = (record.state_registration or "").strip().upper()
    if not ie:
        return "C"
    if ie == "ISENTO":
        return "I"
    return "X"


def partner_type(person_type: str, style: str) -> str:
    """`tipo` of the REST partner: PF/PJ or F/J depending on the tenant's API version."""
    pj = (person_type or "").upper() == "PJ"
    if style.replace(" ", "").upper() == "F/J":
        return "J" if pj else "F"
    return "PJ" if pj else "PF"


def partner_payload(record: CustomerRecord, *, type_style: str = "PF/PJ",
                    ibge_field: str = "codigoIbge") -> dict[str, Any]:
    """POST/PUT /v1/parceiros/clientes body. Every key is sent so a cleared field clears in Sankhya."""
    ddd, phone = split_phone(record.phone)
    pj = (record.person_type or "").upper() == "PJ"
    return {
        "tipo": partner_type(record.person_type, type_style),
        "cnpjCpf": normalize_tax_id(record.tax_id),
        "nome": record.name.strip(),
        "razao": record.name.strip() if pj else "",
        "ieRg": (record.state_registration or "").strip().upper(),
        "email": record.email.strip(),
        "telefoneDdd": ddd,
        "telefoneNumero": phone,
        "CLASSIFICMS": icms_classification(record),
        "endereco": {
            "logradouro": record.street.strip(),
            "numero": record.number.strip(),
            "complemento": record.complement.strip(),
            "bairro": record.district.strip(),
            "cidade": record.city.strip(),
            ibge_field: digits(record.city_ibge_code),
            "uf": record.state.strip().upper(),
            "cep": digits(record.zip_code),
        },
    }


def customer_from_partner(row: dict[str, str]) -> RemoteCustomer:
    """A TGFPAR row (with its joined street/district/city names) as a canonical customer."""
    ibge = digits(row.get("Cidade_CODMUNFIS", ""))
    record = CustomerRecord(
        id="",
        person_type="PJ" if row.get("TIPPESSOA", "").upper() == "J" else "PF",
        name=row.get("NOMEPARC", "") or row.get("RAZAOSOCIAL", ""),
        tax_id=normalize_tax_id(row.get("CGC_CPF", "")),
        state_registration=row.get("IDENTINSCESTAD", ""),
        email=row.get("EMAIL", ""),
        phone=digits(row.get("TELEFONE", "")),
        zip_code=digits(row.get("CEP", "")),
        street=row.get("Endereco_NOMEEND", ""),
        number=row.get("NUMEND", ""),
        complement=row.get("COMPLEMENTO", ""),
        district=row.get("Bairro_NOMEBAI", ""),
        city=row.get("Cidade_NOMECID", ""),
        city_ibge_code=ibge,
        state=UF_BY_IBGE_PREFIX.get(ibge[:2], ""),
    )
    return RemoteCustomer(remote_id=row.get("CODPARC", ""), record=record,
                          modified_at=parse_datetime(row.get("DTALTER", "")), raw=row)


# --------------------------------------------------------------------------- orders
@dataclass(frozen=True)
class OrderOptions:
    """Tenant codes an order needs; support captures them at setup."""

    nota_modelo: str
    service_product: str
    goods_product: str
    unit: str = "UN"
    seller: str = ""
    payment_types: dict[str, str] | None = None


def order_marker(invoice_id: str) -> str:
    return ORDER_MARKER.format(id=invoice_id)


def order_observation(invoice: InvoiceRecord) -> str:
    """OBSERVACAO: our marker first (to find the order again), then what a person needs to read."""
    lines = [f"{order_marker(invoice.id)} TecPet invoice {invoice.number}"]
    lines += [f"{item.description} ({item.quantity} x {item.unit_price})" for item in invoice.items]
    if invoice.notes:
        lines.append(invoice.notes)
    return "\n".join(lines)[:3900]


def order_payload(invoice: InvoiceRecord, customer_remote_id: str, opts: OrderOptions) -> dict[str, Any]:
    """POST /v1/vendas/pedidos body: items priced by us, installments given explicitly."""
    payload: dict[str, Any] = {
        "notaModelo": integer_or_text(opts.nota_modelo),
        "data": invoice.issue_date.strftime(DATE_IN),
        "codigoCliente": integer_or_text(customer_remote_id),
        "observacao": order_observation(invoice),
        "itens": [_order_item(i + 1, item, opts) for i, item in enumerate(invoice.items)],
        "financeiros": [_order_installment(inst, opts) for inst in invoice.installments],
    }
    if opts.seller:
        payload["codigoVendedor"] = integer_or_text(opts.seller)
    return payload


def _order_item(sequence: int, item, opts: OrderOptions) -> dict[str, Any]:
    product = opts.goods_product if item.kind == "product" and opts.goods_product else opts.service_product
    return {
        "sequencia": sequence,
        "codigoProduto": integer_or_text(product),
        "quantidade": number(item.quantity),
        "valorUnitario": number(item.unit_price),
        "unidade": opts.unit,
        "controle": " ",
    }


def _order_installment(inst: Installment, opts: OrderOptions) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sequencia": inst.number,
        "dataVencimento": inst.due_date.strftime(DATE_IN),
        "valorParcela": number(inst.amount),
    }
    code = payment_type_code(inst.payment_method, opts.payment_types or {})
    if code:
        out["tipoPagamento"] = integer_or_text(code)
    return out


def parse_payment_types(text: str) -> dict[str, str]:
    """Setting "Dinheiro=1; PIX=3; Boleto=2" -> {"dinheiro": "1", ...} (names compared loosely)."""
    out = {}
    for part in re.split(r"[;\n]", text or ""):
        name, sep, code = part.partition("=")
        if sep and name.strip() and code.strip():
            out[_loose(name)] = code.strip()
    return out


def payment_type_code(method: str, table: dict[str, str]) -> str:
    return table.get(_loose(method), table.get("*", ""))


def payment_method_name(code: str, table_text: str) -> str:
    """CODTIPTIT back to TecPet's payment method name, when the setting names it."""
    for part in re.split(r"[;\n]", table_text or ""):
        name, sep, value = part.partition("=")
        if sep and value.strip() == str(code).strip() and name.strip() != "*":
            return name.strip()
    return ""


def _loose(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in plain if not unicodedata.combining(c)).casefold().strip()


def created_code(body: dict[str, Any], *names: str) -> str:
    """The new record's code from a REST answer; Sankhya nests it in `retorno` or not, by endpoint."""
    retorno = body.get("retorno") if isinstance(body.get("retorno"), dict) else {}
    for name in names:
        for source in (retorno, body):
            value = unwrap(source.get(name)) if source else ""
            if value:
                return value
    return ""


# --------------------------------------------------------------------------- fiscal
_NFE_STATE = {"A": FiscalState.ISSUED, "R": FiscalState.REJECTED, "V": FiscalState.REJECTED,
              "D": FiscalState.REJECTED}
_NFSE_STATE = {"A": FiscalState.ISSUED, "R": FiscalState.REJECTED, "V": FiscalState.REJECTED,
               "L": FiscalState.REJECTED}
_NFE_TEXT = {"E": "waiting for SEFAZ's authorization", "I": "sent to SEFAZ", "P": "waiting for SEFAZ's answer",
             "S": "issued in contingency (DPEC), waiting for SEFAZ", "D": "denied by SEFAZ (denegada)",
             "R": "waiting for a correction", "V": "failed validation"}
_NFSE_TEXT = {"E": "waiting for the city hall's authorization", "I": "sent to the city hall",
              "R": "waiting for a correction", "V": "failed validation", "L": "batch rejected by the city hall"}


def is_service_invoice(header: dict[str, str]) -> bool:
    """A TOP issues NF-e or NFS-e, never both; STATUSNFE 'M' or an NFS-e status tells which."""
    nfe = header.get("STATUSNFE", "").upper()
    return bool(header.get("STATUSNFSE", "")) or nfe == "M" or (not nfe and bool(header.get("NUMNFSE", "")))


def fiscal_sent(header: dict[str, str]) -> bool:
    nfe = header.get("STATUSNFE", "").upper()
    return bool(header.get("STATUSNFSE", "")) or (nfe not in ("", "M"))


def fiscal_result(header: dict[str, str], rejection_text: str = "") -> FiscalResult:
    """STATUSNFE / STATUSNFSE of a CabecalhoNota row -> the canonical outcome."""
    remote_id = header.get("NUNOTA", "")
    if is_service_invoice(header):
        status = header.get("STATUSNFSE", "").upper()
        state = _NFSE_STATE.get(status, FiscalState.PENDING)
        text = _NFSE_TEXT.get(status, "not sent to the city hall yet")
        number_ = header.get("NUMNFSE", "")
        key = ""
    else:
        status = header.get("STATUSNFE", "").upper()
        state = _NFE_STATE.get(status, FiscalState.PENDING)
        text = _NFE_TEXT.get(status, "not sent to SEFAZ yet")
        number_ = header.get("NUMNOTA", "")
        key = header.get("CHAVENFE", "")
    if state is FiscalState.ISSUED:
        return FiscalResult(state, remote_id=remote_id, number=number_, access_key=key, message="Issued")
    if state is FiscalState.REJECTED:
        reason = rejection_text or "no reason recorded in Sankhya"
        return FiscalResult(state, remote_id=remote_id, number=number_,
                            message=f"The invoice was rejected ({text}): {reason}")
    return FiscalResult(state, remote_id=remote_id, message=f"The invoice is {text}")


def rejection_text(response_body: Any) -> str:
    """Latest reason in ServicosNfeSP.getAcompanhamentosNota: the observation, else the last occurrence."""
    for key in ("observacaoNfse", "observacaoNfe"):
        found = _find_key(response_body, key)
        if found:
            return found
    occurrences = []
    for item in _find_all(response_body, "acompanhamento"):
        for entry in as_list(item):
            if isinstance(entry, dict):
                occurrences.append((unwrap(entry.get("dhocorrencia")), unwrap(entry.get("ocorrencias"))))
    occurrences = [o for o in occurrences if o[1]]
    if not occurrences:
        return ""
    occurrences.sort(key=lambda o: parse_datetime(o[0]) or datetime.min)
    return occurrences[-1][1]


def _find_key(node: Any, key: str) -> str:
    for found in _find_all(node, key):
        text = unwrap(found)
        if text:
            return text
    return ""


def _find_all(node: Any, key: str) -> list[Any]:
    out: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                out.append(v)
            out += _find_all(v, key)
    elif isinstance(node, list):
        for v in node:
            out += _find_all(v, key)
    return out


# --------------------------------------------------------------------------- pulls
def receipt_from_financial(row: dict[str, str], *, paid_amount_field: str, payment_types_text: str) -> Receipt:
    """A settled TGFFIN row; the paid value falls back to the title's value when Sankhya leaves it empty."""
    paid = decimal_of(row.get(paid_amount_field, "")) if paid_amount_field else Decimal("0")
    amount = paid if paid else decimal_of(row.get("VLRDESDOB", ""))
    moment = parse_datetime(row.get("DHBAIXA", ""))
    nunota = row.get("NUNOTA", "")
    return Receipt(
        remote_id=row.get("NUFIN", ""),
        amount=amount.quantize(Decimal("0.01")),
        paid_at=moment.date() if moment else None,
        receivable_remote_id=row.get("NUFIN", ""),
        origin=f"NUNOTA_{nunota}" if nunota and nunota != "0" else "",
        customer_remote_id=row.get("CODPARC", ""),
        payment_method=payment_method_name(row.get("CODTIPTIT", ""), payment_types_text),
        raw=row,
    )


def pos_sale_from_note(header: dict[str, str], items: list[dict[str, str]], payment_method: str) -> PosSale:
    sold_at = parse_datetime(header.get("DTNEG", "")) or parse_datetime(header.get("DTALTER", "")) or datetime.min
    return PosSale(
        remote_id=header.get("NUNOTA", ""),
        sold_at=sold_at,
        total=decimal_of(header.get("VLRNOTA", "")).quantize(Decimal("0.01")),
        customer_remote_id=header.get("CODPARC", ""),
        customer_name=header.get("Parceiro_NOMEPARC", ""),
        payment_method=payment_method,
        status=header.get("STATUSNOTA", ""),
        items=[{
            "product_code": i.get("CODPROD", ""),
            "description": i.get("Produto_DESCRPROD", ""),
            "quantity": str(decimal_of(i.get("QTDNEG", ""))),
            "unit_price": str(decimal_of(i.get("VLRUNIT", ""))),
            "total": str(decimal_of(i.get("VLRTOT", ""))),
        } for i in sorted(items, key=lambda i: int(i.get("SEQUENCIA") or 0))],
        raw=header,
    )


def encode_cursor(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"), sort_keys=True)


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- errors
# Canonical field of an attribute or dictionary field Sankhya names in a message.
ATTRIBUTE_FIELDS = {
    "tipo": "person_type", "TIPPESSOA": "person_type",
    "cnpjCpf": "tax_id", "CGC_CPF": "tax_id", "CGCCPF": "tax_id",
    "nome": "name", "NOMEPARC": "name", "razao": "name", "RAZAOSOCIAL": "name",
    "ieRg": "state_registration", "IDENTINSCESTAD": "state_registration", "CLASSIFICMS": "state_registration",
    "email": "email", "EMAIL": "email",
    "telefoneDdd": "phone", "telefoneNumero": "phone", "TELEFONE": "phone",
    "logradouro": "street", "CODEND": "street",
    "numero": "number", "NUMEND": "number",
    "complemento": "complement", "COMPLEMENTO": "complement",
    "bairro": "district", "CODBAI": "district",
    "cidade": "city", "CODCID": "city",
    "codigoIbge": "city_ibge_code", "codigolbge": "city_ibge_code",
    "uf": "state",
    "cep": "zip_code", "CEP": "zip_code",
}

# (pattern in Sankhya's text, canonical field, what it means in plain words)
KNOWN_REASONS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"CNPJ/CPF j[áa] existente", re.I), "tax_id",
     "another partner in Sankhya already has this CPF/CNPJ"),
    (re.compile(r"Tamanho do CNPJ/CPF inv[áa]lido", re.I), "tax_id",
     "the CPF/CNPJ length does not match the person type (a CPF has 11 digits, a CNPJ 14)"),
    (re.compile(r"(CNPJ/CPF|CPF/CNPJ|CPF|CNPJ) inv[áa]lido", re.I), "tax_id",
     "the CPF/CNPJ is not valid"),
    (re.compile(r"aus[êe]ncia da Inscri[çc][ãa]o Estadual", re.I), "state_registration",
     "without a state registration the customer must be a final consumer"),
    (re.compile(r"palavra ISENTO", re.I), "state_registration",
     "write ISENTO as the state registration of an exempt company"),
    (re.compile(r"'Bairro'.*param\[0\]\s*=\s*null", re.I | re.S), "city_ibge_code",
     "the city's IBGE code is missing or unknown to Sankhya"),
)
MISSING_ATTRIBUTE = re.compile(r"informar o atributo '([^']+)'", re.I)
ATTRIBUTE_PATTERNS = (
    MISSING_ATTRIBUTE,
    re.compile(r"Descritor do campo '([^']+)'", re.I),
    re.compile(r"atributo '([^']+)'", re.I),
    re.compile(r"campo '([^']+)'", re.I),
)
RETRYABLE_REASON = re.compile(r"deadlock|situa[çc][ãa]o de concorr[êe]ncia", re.I)
AUTH_REASON = re.compile(r"Usu[áa]rio/Senha inv[áa]lido|N[ãa]o autorizado", re.I)
DUPLICATE_PARTNER = KNOWN_REASONS[0][0]
ALREADY_CONFIRMED = re.compile(r"j[áa] foi confirmad", re.I)

# Gateway codes (HTTP 400 unless noted) that mean "the gateway could not talk to the ERP": retry.
TRANSIENT_GATEWAY_CODES = {"GTW2508", "GTW3003", "GTW3500", "GTW3503"}
AUTH_GATEWAY_CODES = {"GTW3403", "GTW2510", "GTW2511", "GTW3407"}


def field_errors_of(reason: str) -> list[FieldError]:
    """Which customer fields a Sankhya message is about, in plain words."""
    out = []
    for pattern, field, hint in KNOWN_REASONS:
        if pattern.search(reason):
            out.append(FieldError(field, hint))
            return out
    for pattern in ATTRIBUTE_PATTERNS:
        match = pattern.search(reason)
        if match:
            name = match.group(1).split(".")[-1]
            field = ATTRIBUTE_FIELDS.get(name, name)
            verb = "is missing" if pattern is MISSING_ATTRIBUTE else "is not accepted"
            out.append(FieldError(field, f"{field} {verb}"))
            return out
    return out


def error_from_reason(reason: str, *, what: str, status: int | None = None, raw: Any = None) -> ConnectorError:
    """Sankhya's own text -> the typed error, with its words kept verbatim inside ours."""
    reason = (reason or "").strip()
    if RETRYABLE_REASON.search(reason):
        return TransientError(f"Sankhya was busy and could not save {what}: {reason}", status=status, raw=raw)
    if AUTH_REASON.search(reason):
        return AuthError(f"Sankhya refused access while handling {what}: {reason}. Support must check the "
                         f"integration user's permissions in Sankhya.", status=status, raw=raw)
    return PermanentError(f"Sankhya refused {what}: {reason}", field_errors=field_errors_of(reason),
                          status=status, raw=raw)


def service_error(body: dict[str, Any], *, what: str) -> ConnectorError | None:
    """The service envelope answers HTTP 200 whatever happened: its `status` says what did."""
    status = str(body.get("status", "1"))
    if status in ("1", "2"):
        return None
    message = unwrap(body.get("statusMessage")) or "no message"
    if status == "3":
        return TransientError(f"Sankhya timed out while handling {what}: {message}", raw=body)
    if status == "4":
        return TransientError(f"Sankhya cancelled the call for {what}: {message}", raw=body)
    return error_from_reason(message, what=what, raw=body)


def gateway_error(body: Any) -> tuple[str, str]:
    """(code, text) of a gateway/REST error body, whichever of Sankhya's shapes it has."""
    if not isinstance(body, dict):
        return "", str(body or "").strip()[:500]
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("codigo", "")), str(error.get("descricao") or error.get("mensagem") or "")
    if isinstance(error, str):
        return error, str(body.get("error_description") or body.get("message") or "")
    text = body.get("statusMessage") or body.get("mensagem") or body.get("message") or ""
    return str(body.get("codigo", "")), unwrap(text)


def error_from_response(status: int, body: Any, *, what: str) -> ConnectorError:
    """A non-2xx answer (REST or gateway) -> typed error. REST 4xx bodies are often empty."""
    code, text = gateway_error(body)
    if code in TRANSIENT_GATEWAY_CODES:
        return TransientError(f"Sankhya's gateway could not reach the ERP ({code}: {text})", status=status, raw=body)
    if code in AUTH_GATEWAY_CODES:
        return AuthError(f"Sankhya's gateway refused our access ({code}: {text})", status=status, raw=body)
    if status == 404:
        return NotFoundError(f"Sankhya does not know {what}" + (f": {text}" if text else ""), status=status, raw=body)
    if not text:
        return PermanentError(f"Sankhya refused {what} (HTTP {status}) without saying why", status=status, raw=body)
    return error_from_reason(text, what=what, status=status, raw=body)


def is_duplicate_partner(exc: Exception) -> bool:
    return isinstance(exc, PermanentError) and bool(DUPLICATE_PARTNER.search(exc.message))

"""Omie payloads <-> TecPet canonical records, and Omie faults -> typed errors.

Pure functions only: no I/O, no clock. Omie speaks JSON-RPC: every answer is either the
call's result or a fault `{"faultstring": "ERROR: ...", "faultcode": "SOAP-ENV:Client-<n>"}`.
Dates travel as dd/mm/aaaa, times as hh:mm:ss, flags as "S"/"N".
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

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
    RateLimitedError,
    Receipt,
    RemoteCustomer,
    TransientError,
)

# --------------------------------------------------------------------------- service areas
AREA_COMPANIES = "geral/empresas/"
AREA_CUSTOMERS = "geral/clientes/"
AREA_SERVICE_ORDERS = "servicos/os/"
AREA_SERVICE_BILLING = "servicos/osp/"
AREA_RECEIVABLES = "financas/contareceber/"
AREA_POS_SALES = "produtos/cupomfiscalconsultar/"

LOTE_LIMIT = 50                  # UpsertClientesPorLote: "limitado a 50 ocorrências por requisição"
BRAZIL_COUNTRY_CODE = "1058"     # Omie's country code for Brazil (BACEN table)
MANUAL_INSTALLMENTS = "999"      # cCodParc that lets the caller list the parcelas itself


# --------------------------------------------------------------------------- dates and numbers
def omie_date(value: date | datetime) -> str:
    return value.strftime("%d/%m/%Y")


def omie_time(value: datetime) -> str:
    return value.strftime("%H:%M:%S")


def parse_omie_date(text: str | None) -> date | None:
    try:
        return datetime.strptime((text or "").strip(), "%d/%m/%Y").date()
    except ValueError:
        return None


def parse_omie_stamp(day: str | None, clock: str | None) -> datetime | None:
    """Omie splits a moment into a dd/mm/aaaa date and an hh:mm:ss time."""
    parsed = parse_omie_date(day)
    if parsed is None:
        return None
    try:
        moment = datetime.strptime((clock or "00:00:00").strip(), "%H:%M:%S").time()
    except ValueError:
        moment = datetime.min.time()
    return datetime.combine(parsed, moment)


def money(value: Decimal) -> float:
    """Omie wants JSON numbers with a dot; two decimals is what its screens keep."""
    return float(Decimal(value).quantize(Decimal("0.01")))


def decimal_of(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def record_digest(record: dict[str, Any]) -> str:
    """A short fingerprint of a record's content: tells a new version from one already delivered."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- tax ids, phones
def tax_id_key(value: str | None) -> str:
    """Digits and letters only, upper case: how two CPF/CNPJ spellings are compared."""
    return re.sub(r"[^0-9A-Za-z]", "", value or "").upper()


def format_tax_id(value: str) -> str:
    """Omie shows and stores CPF/CNPJ with their masks; alphanumeric CNPJs keep the same mask."""
    key = tax_id_key(value)
    if len(key) == 11:
        return f"{key[:3]}.{key[3:6]}.{key[6:9]}-{key[9:]}"
    if len(key) == 14:
        return f"{key[:2]}.{key[2:5]}.{key[5:8]}/{key[8:12]}-{key[12:]}"
    return key


def split_phone(phone: str) -> tuple[str, str]:
    """Omie keeps the area code (DDD) apart from the number."""
    digits = re.sub(r"\D", "", phone or "")
    if digits.startswith("55") and len(digits) in (12, 13):
        digits = digits[2:]
    if len(digits) in (10, 11):
        return digits[:2], digits[2:]
    return "", digits


def format_zip(value: str) -> str:
    digits = re.sub(r"\D", "", value or "")
    return f"{digits[:5]}-{digits[5:]}" if len(digits) == 8 else digits


# --------------------------------------------------------------------------- customers
def customer_payload(customer: CustomerRecord) -> dict[str, Any]:
    """A clientes_cadastro for UpsertCliente / IncluirCliente, keyed by TecPet's id."""
    ddd, number = split_phone(customer.phone)
    name = customer.name.strip()
    payload = {
        "codigo_cliente_integracao": customer.id,
        "razao_social": name,
        "nome_fantasia": name,
        "cnpj_cpf": format_tax_id(customer.tax_id),
        "email": customer.email.strip(),
        "telefone1_ddd": ddd,
        "telefone1_numero": number,
        "endereco": customer.street.strip(),
        "endereco_numero": customer.number.strip(),
        "complemento": customer.complement.strip(),
        "bairro": customer.district.strip(),
        "cidade": customer.city.strip(),
        "cidade_ibge": customer.city_ibge_code.strip(),
        "estado": customer.state.strip().upper(),
        "cep": format_zip(customer.zip_code),
        "codigo_pais": BRAZIL_COUNTRY_CODE,
        "inscricao_estadual": customer.state_registration.strip(),
        "contribuinte": contributor_flag(customer),
    }
    return payload


def contributor_flag(customer: CustomerRecord) -> str:
    """An ICMS taxpayer is a company with a state registration other than ISENTO."""
    registration = customer.state_registration.strip().upper()
    return "S" if customer.person_type == "PJ" and registration and registration != "ISENTO" else "N"


def customer_update_payload(remote_id: str, customer: CustomerRecord) -> dict[str, Any]:
    """AlterarCliente addresses the record by Omie's id and leaves its integration code alone."""
    payload = customer_payload(customer)
    payload.pop("codigo_cliente_integracao", None)
    payload["codigo_cliente_omie"] = int(remote_id)
    return payload


def customer_record(data: dict[str, Any]) -> CustomerRecord:
    """Omie's clientes_cadastro as a canonical record (the id is TecPet's, when Omie has it)."""
    tax_id = tax_id_key(data.get("cnpj_cpf"))
    ddd, number = str(data.get("telefone1_ddd") or ""), str(data.get("telefone1_numero") or "")
    person_type = "PF" if (data.get("pessoa_fisica") == "S" or len(tax_id) == 11) else "PJ"
    return CustomerRecord(
        id=str(data.get("codigo_cliente_integracao") or ""),
        person_type=person_type,
        name=str(data.get("razao_social") or ""),
        tax_id=tax_id,
        state_registration=str(data.get("inscricao_estadual") or ""),
        email=str(data.get("email") or ""),
        phone=re.sub(r"\D", "", ddd + number),
        zip_code=re.sub(r"\D", "", str(data.get("cep") or "")),
        street=str(data.get("endereco") or ""),
        number=str(data.get("endereco_numero") or ""),
        complement=str(data.get("complemento") or ""),
        district=str(data.get("bairro") or ""),
        city=str(data.get("cidade") or ""),
        city_ibge_code=str(data.get("cidade_ibge") or ""),
        state=str(data.get("estado") or "").upper(),
    )


def customer_changed_at(data: dict[str, Any]) -> datetime | None:
    info = data.get("info") or {}
    return parse_omie_stamp(info.get("dAlt"), info.get("hAlt")) or parse_omie_stamp(info.get("dInc"), info.get("hInc"))


def remote_customer(data: dict[str, Any]) -> RemoteCustomer:
    return RemoteCustomer(remote_id=str(data.get("codigo_cliente_omie") or ""), record=customer_record(data),
                          modified_at=customer_changed_at(data), raw=data)


def lote_number(codes: list[str]) -> int:
    """A lote number derived from its content: the same batch resent is the same request."""
    digest = hashlib.sha1("|".join(codes).encode("utf-8")).hexdigest()
    return int(digest[:8], 16)


# --------------------------------------------------------------------------- invoices
PAYMENT_DOCUMENT_TYPES = {
    # canonical pt-BR payment method -> Omie document type (the cTipoDoc list of Omie's cupom docs)
    "dinheiro": "DIN", "pix": "PIX", "boleto": "BOL", "cartão de crédito": "CRC", "cartao de credito": "CRC",
    "cartão de débito": "CRD", "cartao de debito": "CRD", "cheque": "CHQ", "crediário": "CRE", "crediario": "CRE",
}
PAYMENT_METHODS_BY_TYPE = {"DIN": "Dinheiro", "PIX": "PIX", "BOL": "Boleto", "CRC": "Cartão de Crédito",
                           "CRD": "Cartão de Débito", "CHQ": "Cheque", "CHT": "Cheque", "CRE": "Crediário",
                           "CRT": "Cartão de Crédito"}


def document_type(payment_method: str) -> str:
    return PAYMENT_DOCUMENT_TYPES.get((payment_method or "").strip().lower(), "99999")


def payment_method_of(document_type_code: str) -> str:
    return PAYMENT_METHODS_BY_TYPE.get((document_type_code or "").strip().upper(), "Outros")


def service_order_payload(invoice: InvoiceRecord, customer_remote_id: str, settings: dict[str, str]) -> dict[str, Any]:
    """IncluirOS for a TecPet invoice: the OS carries the services and the parcelas.

    Items say cNaoGerarFinanceiro "S": TecPet creates the receivables itself (with its own
    integration codes, so they can be found and settled), and billing the OS later must not
    create a second set.
    """
    return {
        "Cabecalho": {
            "cCodIntOS": invoice.id,
            "nCodCli": int(customer_remote_id),
            "dDtPrevisao": omie_date(invoice.issue_date),
            "cEtapa": settings.get("os_stage") or "50",
            "cCodParc": MANUAL_INSTALLMENTS,
            "nQtdeParc": len(invoice.installments),
        },
        "InformacoesAdicionais": {
            "cCodCateg": settings.get("category_code", ""),
            "nCodCC": int(settings["bank_account_id"]) if settings.get("bank_account_id", "").isdigit() else 0,
            "cNumPedido": invoice.number,
            "cDadosAdicNF": invoice.notes,
        },
        "ServicosPrestados": [service_item(n, item, settings) for n, item in enumerate(invoice.items, start=1)],
        "Parcelas": [installment_parcela(i) for i in invoice.installments],
    }


def service_item(sequence: int, item, settings: dict[str, str]) -> dict[str, Any]:
    return {
        "nSeqItem": sequence,
        "cDescServ": item.description,
        "nQtde": float(item.quantity),
        "nValUnit": money(item.unit_price),
        "cCodServMun": item.service_code or settings.get("service_code_municipal", ""),
        "cCodServLC116": settings.get("service_code_lc116", ""),
        "cTribServ": settings.get("service_taxation") or "01",
        "cRetemISS": "N",
        "cNaoGerarFinanceiro": "S",
    }


def installment_parcela(installment: Installment) -> dict[str, Any]:
    return {"nParcela": installment.number, "dDtVenc": omie_date(installment.due_date),
            "nValor": money(installment.amount)}


def receivable_code(invoice: InvoiceRecord, installment: Installment) -> str:
    """codigo_lancamento_integracao of one installment: stable, so a retry finds it."""
    return f"{invoice.id}-{installment.number}"


def receivable_payload(invoice: InvoiceRecord, installment: Installment, customer_remote_id: str,
                       service_order_id: str, settings: dict[str, str]) -> dict[str, Any]:
    count = len(invoice.installments)
    return {
        "codigo_lancamento_integracao": receivable_code(invoice, installment),
        "codigo_cliente_fornecedor": int(customer_remote_id),
        "data_emissao": omie_date(invoice.issue_date),
        "data_vencimento": omie_date(installment.due_date),
        "data_previsao": omie_date(installment.due_date),
        "valor_documento": money(installment.amount),
        "codigo_categoria": settings.get("category_code", ""),
        "id_conta_corrente": int(settings["bank_account_id"]) if settings.get("bank_account_id", "").isdigit() else 0,
        "numero_documento": invoice.number,
        "numero_parcela": f"{installment.number:03d}/{count:03d}",
        "codigo_tipo_documento": document_type(installment.payment_method),
        "nCodOS": int(service_order_id),
        "observacao": invoice.notes,
    }


def settlement_code(receivable_remote_id: str, amount: Decimal, paid_on: date) -> str:
    """codigo_baixa_integracao: the same payment sent twice is one baixa, not two."""
    return f"{receivable_remote_id}-{paid_on.strftime('%Y%m%d')}-{decimal_of(amount)}"


def settlement_payload(receivable_remote_id: str, amount: Decimal, paid_on: date, settings: dict[str, str]) -> dict[str, Any]:
    payload = {
        "codigo_lancamento": int(receivable_remote_id),
        "codigo_baixa_integracao": settlement_code(receivable_remote_id, amount, paid_on),
        "valor": money(amount),
        "data": omie_date(paid_on),
        "observacao": "Recebimento registrado no TecPet",
    }
    if settings.get("bank_account_id", "").isdigit():
        payload["codigo_conta_corrente"] = int(settings["bank_account_id"])
    return payload


NFSE_STATES = {"001": FiscalState.PENDING, "002": FiscalState.PENDING, "003": FiscalState.REJECTED,
               "004": FiscalState.ISSUED, "005": FiscalState.CANCELLED}


def fiscal_result(status: dict[str, Any]) -> FiscalResult:
    """StatusOS -> the invoice's outcome; the latest RPS tells what the city hall said."""
    remote_id = str(status.get("nCodOS") or "")
    if status.get("cCancelada") == "S":
        return FiscalResult(FiscalState.CANCELLED, remote_id=remote_id, message="The service order was cancelled in Omie.")
    rps_list = status.get("ListaRpsNfse") or []
    if not rps_list:
        message = "Omie has not billed the service order yet." if status.get("cFaturada") != "S" else "Waiting for the city hall."
        return FiscalResult(FiscalState.PENDING, remote_id=remote_id, message=message)
    rps = rps_list[-1]
    state = NFSE_STATES.get(str(rps.get("cStatusRps") or rps.get("cStatusLote") or "001"), FiscalState.PENDING)
    return FiscalResult(state, remote_id=remote_id, number=str(rps.get("nNfse") or ""),
                        message=city_hall_message(state, rps), access_key=str(rps.get("cCodVerif") or ""))


def city_hall_message(state: FiscalState, rps: dict[str, Any]) -> str:
    notes = []
    for msg in rps.get("mensagens") or []:
        text = str(msg.get("cDescricao") or "").strip()
        fix = str(msg.get("cCorrecao") or "").strip()
        if text:
            notes.append(f"{text} (what to do: {fix})" if fix else text)
    if notes:
        return "; ".join(notes)
    return {FiscalState.PENDING: "Sent to the city hall, waiting for its answer.",
            FiscalState.ISSUED: "NFS-e issued.", FiscalState.CANCELLED: "NFS-e cancelled.",
            FiscalState.REJECTED: "The city hall rejected the NFS-e without giving a reason."}[state]


# --------------------------------------------------------------------------- pulls
def receivable_changed_at(data: dict[str, Any]) -> datetime | None:
    info = data.get("info") or {}
    return parse_omie_stamp(info.get("dAlt"), info.get("hAlt")) or parse_omie_stamp(info.get("dInc"), info.get("hInc"))


def receipt(data: dict[str, Any]) -> Receipt:
    """A received title. Omie's list carries no payment date: the moment the title last
    changed (when it turned RECEBIDO) stands in for it."""
    changed = receivable_changed_at(data)
    order = data.get("nCodOS")
    return Receipt(
        remote_id=str(data.get("codigo_lancamento_omie") or ""),
        amount=decimal_of(data.get("valor_documento")),
        paid_at=changed.date() if changed else None,
        receivable_remote_id=str(data.get("codigo_lancamento_omie") or ""),
        origin=f"OS_{order}" if order else str(data.get("numero_documento") or ""),
        customer_remote_id=str(data.get("codigo_cliente_fornecedor") or ""),
        payment_method=payment_method_of(str(data.get("codigo_tipo_documento") or "")),
        raw=data,
    )


def pos_sale_changed_at(data: dict[str, Any], by: str = "inclusao") -> datetime | None:
    info = (data.get("cabecalhoCupom") or {}).get("info") or {}
    if by == "alteracao":
        return parse_omie_stamp(info.get("dDtAlteracao"), info.get("cHrAlteracao"))
    return parse_omie_stamp(info.get("dDtInclusao"), info.get("cHrInclusao"))


def pos_sale(data: dict[str, Any]) -> PosSale:
    header = data.get("cabecalhoCupom") or {}
    info = header.get("info") or {}
    sold_at = parse_omie_stamp(header.get("dDtEmissaoCupom"), header.get("cHrEmisaoCupom")) or pos_sale_changed_at(data)
    payments = data.get("pagamentosCupom") or []
    methods = sorted({payment_method_of(str(p.get("cTipoDoc") or "")) for p in payments})
    status = ("cancelled" if info.get("cCupomCancelado") == "S"
              else "returned" if info.get("cCupomDevolvido") == "S" else "completed")
    items = [{"description": str(i.get("xProd") or ""), "quantity": decimal_of(i.get("nQuant")),
              "unit_price": decimal_of(i.get("vUnit")), "total": decimal_of(i.get("vItem"))}
             for i in data.get("itensCupom") or []]
    return PosSale(remote_id=str(header.get("nIdCupom") or ""), sold_at=sold_at or datetime.min,
                   total=decimal_of(header.get("nValorCupom")), customer_remote_id=str(header.get("idCliente") or ""),
                   payment_method=", ".join(methods), status=status, items=items, raw=data)


# --------------------------------------------------------------------------- webhooks
def parse_webhook(body: bytes | str) -> dict[str, Any] | None:
    """Omie's envelope {messageId, topic, event, author, appKey, appHash, origin}, or None."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_ping(envelope: dict[str, Any]) -> bool:
    """Omie checks a new webhook address with {"ping": "omie"} before sending events."""
    return envelope.get("ping") == "omie"


# --------------------------------------------------------------------------- faults
@dataclass(frozen=True)
class Fault:
    code: str
    text: str           # the faultstring without its "ERROR:" prefix

    @property
    def raw(self) -> dict[str, str]:
        return {"faultcode": self.code, "faultstring": f"ERROR: {self.text}"}


def fault_of(body: Any) -> Fault | None:
    """Omie faults come on HTTP 500 and, some clients report, on 200 as well: always look."""
    if not isinstance(body, dict) or "faultstring" not in body:
        return None
    text = re.sub(r"^\s*ERROR:\s*", "", str(body.get("faultstring") or ""), flags=re.I).strip()
    return Fault(code=str(body.get("faultcode") or ""), text=text)


def is_empty_page(fault: Fault) -> bool:
    """Fault 5113 "Não existem registros para a página [N]" is an empty page, not an error."""
    return fault.code.endswith("-5113") or "não existem registros para a página" in fault.text.lower()


def is_misuse_block(fault: Fault) -> bool:
    return "MISUSE_API_PROCESS" in fault.code or "consumo indevido" in fault.text.lower()


def is_redundant(fault: Fault) -> bool:
    return fault.code.endswith("Client-6") or "consumo redundante" in fault.text.lower()


def is_busy(fault: Fault) -> bool:
    """Client-1880: the previous request of the same method is still being processed."""
    return fault.code.endswith("-1880")


def is_already_billed(fault: Fault) -> bool:
    """FaturarOS on an order billed before: the outcome we wanted already happened."""
    return bool(re.search(r"já (foi |está )?faturad", fault.text, flags=re.I))


def is_missing_record(fault: Fault) -> bool:
    """"… não cadastrado", "não encontrado": something that may exist a moment later."""
    return bool(re.search(r"não (está |foi )?(cadastrad|encontrad)|não existe", fault.text, flags=re.I))


def is_server_side(fault: Fault) -> bool:
    """A fault Omie itself owns (instability), as opposed to one about our request."""
    return fault.code.startswith("SOAP-ENV:Server")


def is_auth_failure(fault: Fault) -> bool:
    text = fault.text.lower()
    return any(k in text for k in ("chave de acesso", "app key", "app_key", "app secret", "app_secret", "appkey"))


def seconds_in(fault: Fault, default: float) -> float:
    """"Tente novamente em 1678 segundos" / "Aguarde 42 segundos" -> 1678 / 42."""
    found = re.search(r"(\d+)\s*segundo", fault.text, flags=re.I)
    return float(found.group(1)) if found else default


_EXISTING_BY_CODE = re.compile(r"já cadastrad\w*.*?c[óo]digo de integra[çc][ãa]o\s*\[([^\]]*)\].*?nCod\s*\[(\d+)\]", re.I)
_EXISTING_BY_TAX_ID = re.compile(r"já cadastrad\w*.*?CPF/CNPJ\s*\[([^\]]*)\].*?Id\s*\[(\d+)\]", re.I)


def existing_by_integration_code(fault: Fault) -> str | None:
    """"… já cadastrado para o Código de Integração [X] com o nCod [Y]" -> "Y"."""
    found = _EXISTING_BY_CODE.search(fault.text)
    return found.group(2) if found else None


def existing_by_tax_id(fault: Fault) -> str | None:
    """"Cliente já cadastrado para o CPF/CNPJ [x] com o Id [n]" -> "n"."""
    found = _EXISTING_BY_TAX_ID.search(fault.text)
    return found.group(2) if found else None


# Omie tag -> canonical field; settings fields where the fault is about the integration's setup.
FIELD_BY_TAG = {
    "cnpj_cpf": "tax_id", "razao_social": "name", "nome_fantasia": "name", "email": "email",
    "telefone1_ddd": "phone", "telefone1_numero": "phone", "cep": "zip_code", "endereco": "street",
    "endereco_numero": "number", "complemento": "complement", "bairro": "district", "cidade": "city",
    "cidade_ibge": "city_ibge_code", "estado": "state", "inscricao_estadual": "state_registration",
    "cCodCateg": "category_code", "codigo_categoria": "category_code", "nCodCC": "bank_account_id",
    "id_conta_corrente": "bank_account_id", "codigo_conta_corrente": "bank_account_id",
    "cCodServMun": "service_code_municipal", "cCodServLC116": "service_code_lc116", "cCodParc": "installments",
    "nValor": "installments", "dDtVenc": "installments", "data_vencimento": "installments",
    "valor_documento": "amount", "valor": "amount", "data": "paid_on", "nCodCli": "customer",
    "codigo_cliente_fornecedor": "customer",
}
FIELD_BY_WORDS = (
    (r"cpf\s*/\s*cnpj|cnpj\s*/\s*cpf|\bcpf\b|\bcnpj\b", "tax_id"),
    (r"raz[ãa]o social", "name"),
    (r"\bcep\b", "zip_code"),
    (r"e-?mail", "email"),
    (r"inscri[çc][ãa]o estadual", "state_registration"),
    (r"\bbairro\b", "district"),
    (r"\bcidade\b|munic[íi]pio", "city"),
    (r"\bestado\b|\buf\b", "state"),
    (r"n[úu]mero do endere[çc]o", "number"),
    (r"endere[çc]o|logradouro", "street"),
    (r"telefone", "phone"),
    (r"categoria", "category_code"),
    (r"conta corrente", "bank_account_id"),
    (r"c[óo]digo do servi[çc]o|servi[çc]o municipal|lc ?116", "service_code_municipal"),
    (r"parcela", "installments"),
)


def field_of(fault: Fault) -> str:
    """The canonical field a fault is about: a [tag] Omie names first, else its words."""
    for tag in re.findall(r"\[([A-Za-z_0-9]+)\]", fault.text):
        if tag in FIELD_BY_TAG:
            return FIELD_BY_TAG[tag]
    lowered = fault.text.lower()
    for pattern, field_name in FIELD_BY_WORDS:
        if re.search(pattern, lowered):
            return field_name
    return ""


def error_for(fault: Fault, subject: str) -> ConnectorError:
    """Turn an Omie fault into the typed error the sync layer acts on, in plain words."""
    if is_misuse_block(fault):
        wait = seconds_in(fault, 1800.0)
        return RateLimitedError(f"Omie blocked this app key for repeated failing calls; it unblocks in "
                                f"{wait / 60:.0f} minutes ({fault.text})", retry_after=wait, raw=fault.raw)
    if is_redundant(fault):
        return RateLimitedError(f"Omie refused a repeat of the same request within a minute ({fault.text})",
                                retry_after=seconds_in(fault, 60.0), raw=fault.raw)
    if is_busy(fault):
        return RateLimitedError(f"Omie is still processing the previous request ({fault.text})", retry_after=2.0,
                                raw=fault.raw)
    if is_auth_failure(fault):
        return AuthError(f"Omie rejected the App Key / App Secret: {fault.text}", raw=fault.raw)
    if is_server_side(fault):
        return TransientError(f"Omie had a temporary problem: {fault.text}", raw=fault.raw)
    field_name = field_of(fault)
    if is_missing_record(fault) and field_name in ("", "customer"):
        return NotFoundError(f"Omie does not know this {subject}: {fault.text}", raw=fault.raw)
    if not field_name:
        return PermanentError(f"Omie refused the {subject}: {fault.text}", raw=fault.raw)
    # plain() reads "Omie refused the customer (tax_id: <Omie's reason>)"
    return PermanentError(f"Omie refused the {subject}", raw=fault.raw,
                          field_errors=[FieldError(field_name, fault.text)])

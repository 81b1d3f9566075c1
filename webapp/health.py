"""Customer record health: every rule that makes an invoice fail, checked before billing.

Pure functions (no Flask, no database) so the same check serves the web page, the CLI, the sync
worker and the benchmark. Each problem carries a stable code (for filters and translations), a
severity ("error": the invoice will fail; "warning": worth fixing) and a message in plain words that
tells the clinic owner what to fix. The rules and their severities are those of
/work/shared/erp/record-rules.md; an ERP adds its own through its connector's `record_requirements`.

Speed is a requirement: a clinic network's whole customer base is rechecked at once (100,000
records must take well under a second on a small server). So each rule has a cheap guard on the
hot path that lets a good value through with a few comparisons, and only a value that fails its
guard goes to the function that works out what exactly is wrong and words the message. Tables
(check-digit chunks, CEP ranges, municipalities) are precomputed in `integrations.brazil`, and the
city/IBGE/UF verdict is memoized because customers cluster in a few cities.
"""
from __future__ import annotations

import functools
import gc
import re
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Iterator, Sequence

from integrations import brazil
from integrations.base import RecordRequirement

ERROR = "error"
WARNING = "warning"

#: The customer fields the check reads, in the order `_read_fields` returns them.
FIELDS = ("id", "person_type", "name", "tax_id", "state_registration", "email", "phone", "zip_code",
          "street", "number", "complement", "district", "city", "city_ibge_code", "state")
_FIELD_INDEX = {name: i for i, name in enumerate(FIELDS)}

CustomerRecordLike = Any  # an integrations.base.CustomerRecord, or a Mapping with FIELDS as keys

#: NF-e 4.00 size of the destinatário's xNome, xLgr, nro, xCpl, xBairro, xMun and email.
NFE_MAX_LENGTH = 60
MIN_NAME_LENGTH = 2      # xNome, xLgr, xBairro and xMun have at least 2 characters
NO_NUMBER = "S/N"
EXEMPT_STATE_REGISTRATION = "ISENTO"
PERSON_TYPES = ("PF", "PJ")
_UFS = brazil.UF_IBGE_CODES

# One compiled pattern for the e-mail syntax: dotted local part, domain labels that neither start nor
# end with a hyphen, a letters-only top-level domain. Possessive quantifiers keep it from
# backtracking. No DNS and no library call: this runs once per record.
_LOCAL_CHAR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_EMAIL_SYNTAX = re.compile(
    rf"{_LOCAL_CHAR}++(?:\.{_LOCAL_CHAR}++)*+@(?:(?!-)[A-Za-z0-9-]++(?<!-)\.)+[A-Za-z]{{2,63}}"
)
_email_well_formed = _EMAIL_SYNTAX.fullmatch


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing to fix on a customer record. Frozen: memoized problems are shared between records."""

    field: str
    code: str
    severity: str        # "error" | "warning"
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "severity": self.severity, "message": self.message}


# --------------------------------------------------------------------------- reading records
def _clean(value: Any) -> str:
    """A non-text field value as trimmed text: JSON numbers and None must not crash the check."""
    return "" if value is None else str(value).strip()


_ALL_FIELDS_OF_DICT = itemgetter(*FIELDS)
_ALL_FIELDS_OF_OBJECT = attrgetter(*FIELDS)
_strip = str.strip


def _read_fields(record: CustomerRecordLike) -> list[str]:
    """The record's FIELDS as trimmed strings, from a dict, any Mapping or a CustomerRecord.

    The common case (every field present, all text) is one C-level fetch and one C-level strip;
    a missing key or a non-text value (None, a JSON number) takes the careful path.
    """
    try:
        raw = _ALL_FIELDS_OF_DICT(record) if isinstance(record, dict) else _ALL_FIELDS_OF_OBJECT(record)
        return list(map(_strip, raw))
    except (KeyError, AttributeError, TypeError):
        get = record.get if isinstance(record, Mapping) else vars(record).get
        return [v.strip() if isinstance(v, str) else _clean(v) for v in map(get, FIELDS)]


# --------------------------------------------------------------------------- identity
MISSING_STATE_REGISTRATION = Problem(
    "state_registration", "state_registration.missing_pj", WARNING,
    f"The company has no state registration (IE): enter it, or write {EXEMPT_STATE_REGISTRATION} if the "
    "company is exempt.")


def _check_unknown_person_type(person_type: str, tax_id: str, out: list[Problem]) -> None:
    """Neither PF nor PJ: say so, and still flag a tax ID that is neither a CPF nor a CNPJ."""
    shown = f" ({person_type!r})" if person_type else ""
    out.append(Problem("person_type", "person_type.invalid", ERROR,
                       f"The customer type is not set{shown}: choose person (PF) or company (PJ)."))
    if brazil.tax_id_kind(tax_id) is None:
        out.append(_tax_id_problem(person_type, tax_id))


def _tax_id_problem(person_type: str, raw: str) -> Problem:
    """What exactly is wrong with a tax ID that failed its check, worded for the owner."""
    if not raw:
        wanted = {"PF": "CPF", "PJ": "CNPJ"}.get(person_type, "CPF (person) or CNPJ (company)")
        return Problem("tax_id", "tax_id.missing", ERROR,
                       f"The {wanted} is empty: ask the customer for it and enter it.")
    tax_id = brazil.normalize_tax_id(raw)
    kind = brazil.tax_id_kind(tax_id)
    if person_type == "PF" and kind == "CNPJ":
        return Problem("tax_id", "tax_id.type_mismatch", ERROR,
                       f"The tax ID {brazil.format_tax_id(tax_id)} is a company's CNPJ but the customer is a "
                       "person (PF): change the customer type to company (PJ), or enter the person's CPF.")
    if person_type == "PJ" and kind == "CPF":
        return Problem("tax_id", "tax_id.type_mismatch", ERROR,
                       f"The tax ID {brazil.format_tax_id(tax_id)} is a person's CPF but the customer is a "
                       "company (PJ): change the customer type to person (PF), or enter the company's CNPJ.")
    if person_type == "PF":
        return Problem("tax_id", "tax_id.invalid_cpf", ERROR, f"The CPF {_cpf_fault(tax_id)}")
    if person_type == "PJ":
        return Problem("tax_id", "tax_id.invalid_cnpj", ERROR, f"The CNPJ {_cnpj_fault(tax_id)}")
    return Problem("tax_id", "tax_id.invalid", ERROR,
                   f"The tax ID {raw!r} is neither a valid CPF nor a valid CNPJ: check it with the customer.")


def _cpf_fault(tax_id: str) -> str:
    """The end of the sentence saying what is wrong with a CPF, so the owner knows where to look."""
    if not (tax_id.isascii() and tax_id.isdigit()):
        return f"{tax_id} has letters or symbols: a CPF has 11 digits only."
    if len(tax_id) != brazil.CPF_LENGTH:
        return f"{tax_id} has {len(tax_id)} digits: a CPF has 11."
    if tax_id.count(tax_id[0]) == brazil.CPF_LENGTH:
        return f"{brazil.format_tax_id(tax_id)} is not a real number (all digits alike): enter the customer's CPF."
    return f"{brazil.format_tax_id(tax_id)} is not valid (its check digits do not match): check it with the customer."


def _cnpj_fault(tax_id: str) -> str:
    """The end of the sentence saying what is wrong with a CNPJ, numeric or alphanumeric."""
    if len(tax_id) != brazil.CNPJ_LENGTH:
        return f"{tax_id} has {len(tax_id)} characters: a CNPJ has 14."
    if not (tax_id.isascii() and tax_id[:12].isalnum()):
        return f"{tax_id} has symbols: a CNPJ has 12 letters or digits, then 2 digits."
    if not tax_id[12:].isdigit():
        return f"{tax_id} ends in {tax_id[12:]}: the last 2 characters of a CNPJ are digits."
    if tax_id.count(tax_id[0]) == brazil.CNPJ_LENGTH:
        return f"{brazil.format_tax_id(tax_id)} is not a real number (all digits alike): enter the company's CNPJ."
    return f"{brazil.format_tax_id(tax_id)} is not valid (its check digits do not match): check it with the customer."


# --------------------------------------------------------------------------- name and street lines
NAME_MISSING = Problem("name", "name.missing", ERROR, "The name is empty: enter the customer's full name.")
STREET_MISSING = Problem("street", "street.missing", ERROR, "The street is empty: enter the customer's street.")
NUMBER_MISSING = Problem("number", "number.missing", WARNING,
                         f"The address number is empty: enter it, or {NO_NUMBER} if the address has no number.")
DISTRICT_MISSING = Problem("district", "district.missing", WARNING,
                           "The district (bairro) is empty: enter it; some ERPs and city halls refuse invoices "
                           "without it.")


def _check_texts(name: str, street: str, number: str, complement: str, district: str, out: list[Problem]) -> None:
    """NF-e xNome and enderDest text: missing or too short is an error for name and street, a
    warning for district; an empty number asks for S/N; too long is a warning (the text gets cut)."""
    _check_length(out, NAME_MISSING, "name", name, "enter the customer's full name.")
    _check_length(out, STREET_MISSING, "street", street, "enter the full street name.")
    if not number:
        out.append(NUMBER_MISSING)
    elif len(number) > NFE_MAX_LENGTH:
        out.append(_too_long("number", "address number", number))
    if len(complement) > NFE_MAX_LENGTH:
        out.append(_too_long("complement", "complement", complement))
    _check_length(out, DISTRICT_MISSING, "district (bairro)", district, "enter the full district name.")


def _check_length(out: list[Problem], missing: Problem, label: str, value: str, fix: str) -> None:
    """Missing / too short (at the severity of `missing`) / too long (a warning) for one text field.

    The missing-field problems are shared constants: empty fields are the most common fault and
    their message does not depend on the record.
    """
    if not value:
        out.append(missing)
    elif len(value) < MIN_NAME_LENGTH:
        out.append(Problem(missing.field, f"{missing.field}.too_short", missing.severity,
                           f"The {label} {value!r} is too short: {fix}"))
    elif len(value) > NFE_MAX_LENGTH:
        out.append(_too_long(missing.field, label, value))


def _too_long(field: str, label: str, value: str) -> Problem:
    """Over the NF-e size the ERP or the invoice cuts the text: better the owner chooses the cut."""
    return Problem(field, f"{field}.too_long", WARNING,
                   f"The {label} has {len(value)} characters; invoices keep {NFE_MAX_LENGTH}, so it would be cut "
                   f"to {value[:NFE_MAX_LENGTH]!r}: shorten it.")


# --------------------------------------------------------------------------- place: UF, CEP, city, IBGE
def _check_state_and_zip(zip_code: str, state: str, out: list[Problem]) -> None:
    """UF one of the 27; CEP of 8 digits, not all zeros, inside the UF's ranges (DF/GO interleave).

    Reached when the hot-path guard in `_check_values` found something wrong.
    """
    state_ok = state in _UFS
    if not state_ok:
        out.append(_state_problem(state))
    cep = brazil.normalize_cep(zip_code)
    if len(cep) != brazil.CEP_LENGTH or not cep.isascii() or not cep.isdigit() or cep == "00000000":
        out.append(_cep_format_problem(zip_code))
        return
    cep_uf = brazil.uf_of_cep_digits(cep)
    if cep_uf is None or (state_ok and cep_uf != state):
        out.append(_cep_state_problem(cep, cep_uf, state))


STATE_MISSING = Problem("state", "state.missing", ERROR, "The state (UF) is empty: enter it, e.g. SP.")
ZIP_CODE_MISSING = Problem("zip_code", "zip_code.missing", ERROR, "The CEP is empty: enter the customer's CEP.")
CITY_MISSING = Problem("city", "city.missing", ERROR, "The city is empty: enter the customer's city.")


def _state_problem(state: str) -> Problem:
    if not state:
        return STATE_MISSING
    return Problem("state", "state.invalid", ERROR,
                   f"The state {state!r} is not a Brazilian UF: enter one of the 27, e.g. SP, RJ, MG, DF.")


def _cep_format_problem(raw: str) -> Problem:
    if not raw:
        return ZIP_CODE_MISSING
    return Problem("zip_code", "zip_code.invalid", ERROR,
                   f"The CEP {raw!r} is not valid: a CEP has 8 digits (not all zeros), e.g. 01310-100.")


def _cep_state_problem(cep: str, cep_uf: str | None, state: str) -> Problem:
    """A well-formed CEP in no state's range is not a CEP; one of another state contradicts the UF."""
    shown = brazil.format_cep(cep)
    if cep_uf is None:
        return Problem("zip_code", "zip_code.invalid", ERROR,
                       f"The CEP {shown} is in no state's CEP range: check it with the customer.")
    return Problem("zip_code", "zip_code.outside_state", ERROR,
                   f"The CEP {shown} belongs to {cep_uf}, not to {state}: fix the CEP or the state.")


@functools.lru_cache(maxsize=65536)
def _city_problems(city: str, code: str, state: str) -> tuple[Problem, ...]:
    """City name, IBGE code and UF ("" when the UF itself is wrong) checked together.

    Memoized: clinics' customers live in a handful of cities, so almost every record asks a question
    answered before. The answer depends only on the arguments and the fixed IBGE table.
    """
    out: list[Problem] = []
    table = brazil.municipalities()
    city_comparable = _check_city_name(city, out)
    place = table.by_code.get(code)
    if place is None:
        out.append(_ibge_code_problem(city, code, state, table))
        return tuple(out)
    if state and place.uf != state:
        out.append(Problem("city_ibge_code", "city_ibge_code.other_state", ERROR,
                           f"The IBGE code {code} is {_place_name(place)}, not a city of {state}: "
                           "fix the code or the state."))
    if city_comparable and brazil.city_key(city) != table.key_by_code[code]:
        hint = _code_hint(city, state, table)
        out.append(Problem("city", "city.ibge_mismatch", ERROR,
                           f"The city {city!r} is not the place of IBGE code {code} ({_place_name(place)}): "
                           f"fix the city or the code.{hint}"))
    return tuple(out)


def _check_city_name(city: str, out: list[Problem]) -> bool:
    """NF-e xMun, 2 to 60 characters; returns whether the name is worth comparing with the code."""
    if not city:
        out.append(CITY_MISSING)
        return False
    if len(city) < MIN_NAME_LENGTH:
        out.append(Problem("city", "city.too_short", ERROR, f"The city {city!r} is too short: enter its full name."))
        return False
    if len(city) > NFE_MAX_LENGTH:
        out.append(_too_long("city", "city", city))
    return True


def _ibge_code_problem(city: str, code: str, state: str, table: brazil.MunicipalityTable) -> Problem:
    """A missing or unreal IBGE code, with the right one when the city and UF identify it."""
    hint = _code_hint(city, state, table)
    if not code:
        return Problem("city_ibge_code", "city_ibge_code.missing", ERROR,
                       f"The IBGE city code is empty: enter the 7-digit IBGE code of the customer's city.{hint}")
    if len(code) != brazil.IBGE_CODE_LENGTH or not code.isascii() or not code.isdigit():
        fault = f"The IBGE city code {code!r} is not valid: it has 7 digits."
    elif int(code[:2]) not in brazil.UF_BY_IBGE_CODE:
        fault = f"The IBGE city code {code} is not valid: its first 2 digits are no state's code."
    elif not brazil.is_valid_ibge_code(code):
        fault = f"The IBGE city code {code} is not valid (its last digit does not match): check for a typo."
    else:
        fault = f"The IBGE city code {code} is not a municipality in IBGE's list."
    return Problem("city_ibge_code", "city_ibge_code.invalid", ERROR, fault + hint)


def _code_hint(city: str, state: str, table: brazil.MunicipalityTable) -> str:
    """" The IBGE code of X/UF is N." when the city name and UF identify a municipality, else ""."""
    code = table.code_by_uf_key.get((state, brazil.city_key(city))) if (city and state) else None
    if code is None:
        return ""
    return f" The IBGE code of {_place_name(table.by_code[code])} is {code}."


def _place_name(place: brazil.Municipality) -> str:
    return f"{brazil.display_city_name(place.name)}/{place.uf}"


# --------------------------------------------------------------------------- contact
def _email_problem(email: str) -> Problem:
    """Optional field, but when present it must be well formed and fit the NF-e's 60 characters."""
    if _email_well_formed(email) is None:
        return Problem("email", "email.invalid", WARNING,
                       f"The e-mail {email!r} is not a valid address: fix it or leave it empty.")
    return Problem("email", "email.too_long", WARNING,
                   f"The e-mail has {len(email)} characters; invoices keep {NFE_MAX_LENGTH}: use a shorter address.")


# --------------------------------------------------------------------------- ERP requirements
@dataclass(frozen=True, slots=True)
class _CompiledRequirement:
    """A RecordRequirement with its field resolved to a position once per run, not per record."""

    index: int
    person_type: str | None
    rule: RecordRequirement


def compile_requirements(requirements: Iterable[RecordRequirement]) -> tuple[_CompiledRequirement, ...]:
    """Resolve field names once; an unknown field or severity is a connector bug and fails loudly."""
    compiled = []
    for rule in requirements:
        if rule.field not in _FIELD_INDEX:
            raise ValueError(f"record requirement {rule.code!r} names unknown field {rule.field!r}; "
                             f"known: {', '.join(FIELDS)}")
        if rule.severity not in (ERROR, WARNING):
            raise ValueError(f"record requirement {rule.code!r} has severity {rule.severity!r}")
        person_type = rule.person_type.upper() if rule.person_type else None
        compiled.append(_CompiledRequirement(_FIELD_INDEX[rule.field], person_type, rule))
    return tuple(compiled)


def _apply_requirements(values: list[str], person_type: str, compiled: Sequence[_CompiledRequirement],
                        out: list[Problem]) -> None:
    """Add what the ERP demands beyond the generic rules (required fields, shorter limits)."""
    for req in compiled:
        if req.person_type is not None and req.person_type != person_type:
            continue
        rule = req.rule
        value = values[req.index]
        if rule.required and not value:
            _add_erp_problem(rule, (".missing", ".missing_pj"), out)
        elif rule.max_length is not None and len(value) > rule.max_length:
            _add_erp_problem(rule, (".too_long",), out)


def _add_erp_problem(rule: RecordRequirement, generic_endings: tuple[str, ...], out: list[Problem]) -> None:
    """The ERP's problem replaces the generic one for the same field and condition (one message per
    fix, at the ERP's severity), unless the generic one is an error and the ERP's only a warning."""
    same = [p for p in out if p.field == rule.field and p.code.endswith(generic_endings)]
    if rule.severity == WARNING and any(p.severity == ERROR for p in same):
        return
    for p in same:
        out.remove(p)
    out.append(Problem(rule.field, rule.code, rule.severity, rule.message))


# --------------------------------------------------------------------------- public API
_CEP_LENGTH = brazil.CEP_LENGTH
_SHORTEST, _LONGEST = MIN_NAME_LENGTH, NFE_MAX_LENGTH
_CEP_UF_BY_PREFIX = brazil.CEP_UF_BY_PREFIX
_normalize_tax_id = brazil.normalize_tax_id
_cpf_ok = brazil.is_valid_normalized_cpf
_cnpj_ok = brazil.is_valid_normalized_cnpj


def _check_values(values: list[str], compiled: Sequence[_CompiledRequirement]) -> list[Problem]:
    """All rules over one record's trimmed fields.

    The hot path: each group of rules is one cheap guard that a good record passes; a record that
    fails a guard goes to the function that finds and words the exact problems. Names used here are
    bound at module level because a global lookup is cheaper than a module attribute.
    """
    (_, person_type, name, tax_id, state_registration, email, _phone, zip_code,
     street, number, complement, district, city, city_ibge_code, state) = values
    if person_type not in PERSON_TYPES:
        person_type = person_type.upper()    # "pj" is a typing habit, not another type
    if state not in _UFS:
        state = state.upper()                # likewise "sp"
    out: list[Problem] = []
    # A valid CPF on a PF, a valid CNPJ on a PJ (SEFAZ rejections 237 and 207), an IE on a PJ.
    if person_type == "PF":
        if not _cpf_ok(tax_id if tax_id.isdigit() else _normalize_tax_id(tax_id)):
            out.append(_tax_id_problem(person_type, tax_id))
    elif person_type == "PJ":
        if not _cnpj_ok(_normalize_tax_id(tax_id)):
            out.append(_tax_id_problem(person_type, tax_id))
        if not state_registration:
            out.append(MISSING_STATE_REGISTRATION)
    else:
        _check_unknown_person_type(person_type, tax_id, out)
    if not (_SHORTEST <= len(name) <= _LONGEST and _SHORTEST <= len(street) <= _LONGEST
            and 0 < len(number) <= _LONGEST and len(complement) <= _LONGEST
            and _SHORTEST <= len(district) <= _LONGEST):              # every text inside its NF-e bounds
        _check_texts(name, street, number, complement, district, out)
    cep = zip_code.replace("-", "")      # 01310-100 -> 01310100; dots and spaces take the slow path
    # A malformed CEP, "00000000" and a CEP of another UF all miss the prefix table's answer.
    if len(cep) != _CEP_LENGTH or not cep.isdigit() or not cep.isascii() or _CEP_UF_BY_PREFIX[int(cep[:3])] != state:
        _check_state_and_zip(zip_code, state, out)
    city_problems = _city_problems(city, city_ibge_code, state if state in _UFS else "")
    if city_problems:
        out.extend(city_problems)
    if email and (len(email) > NFE_MAX_LENGTH or _email_well_formed(email) is None):
        out.append(_email_problem(email))
    if compiled:
        _apply_requirements(values, person_type, compiled, out)
    return out


def check_customer(record: CustomerRecordLike, requirements: Iterable[RecordRequirement] = ()) -> list[Problem]:
    """Problems of one customer (a CustomerRecord or a dict); an empty list means ready to bill."""
    return _check_values(_read_fields(record), compile_requirements(requirements))


def check_many(records: Iterable[CustomerRecordLike],
               requirements: Iterable[RecordRequirement] = ()) -> list[list[Problem]]:
    """Problems of each record, in input order; the requirements are prepared once for the batch."""
    compiled = compile_requirements(requirements)
    check, read = _check_values, _read_fields
    with _cyclic_gc_paused():
        return [check(read(record), compiled) for record in records]


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector during a batch check.

    A batch keeps one new list per record, and every few thousand of them CPython runs a full
    collection that walks every object of the process (inside the web app, ~90,000 of them): that
    was a fifth to a half of a 100,000-record check when measured. The check makes no reference cycles, so
    nothing is lost by collecting after it instead; reference counting still frees everything as
    usual. The collector is switched back on only if it was on, so a caller's own choice stands.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def has_errors(problems: Iterable[Problem]) -> bool:
    """True when at least one problem will make the invoice fail."""
    return any(p.severity == ERROR for p in problems)


def health_score(problem_lists: Sequence[Sequence[Problem]]) -> float:
    """Share of records with no error (warnings do not stop billing); 1.0 for no records at all,
    since nothing stands in the way of billing."""
    if not problem_lists:
        return 1.0
    clean = sum(1 for problems in problem_lists if not has_errors(problems))
    return clean / len(problem_lists)

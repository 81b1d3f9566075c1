"""Brazilian identifiers and places, checked offline: CPF, CNPJ, CEP, UF and IBGE municipality codes.

Every function here is pure and cheap, because the customer health check runs them on every record
before billing (100,000 records must take well under a second). That is why the check digits are
found with precomputed tables and a few integer operations instead of a validation library call,
and why the other tables (CEP ranges, municipalities) are built once and only looked up afterwards.
Nothing here touches the network.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import re
import unicodedata
from bisect import bisect_right
from operator import mul
from typing import NamedTuple

# --------------------------------------------------------------------------- states (UF)
#: IBGE code of each of the 27 federative units; the first two digits of a municipality code.
UF_IBGE_CODES: dict[str, int] = {
    "RO": 11, "AC": 12, "AM": 13, "RR": 14, "PA": 15, "AP": 16, "TO": 17,
    "MA": 21, "PI": 22, "CE": 23, "RN": 24, "PB": 25, "PE": 26, "AL": 27, "SE": 28, "BA": 29,
    "MG": 31, "ES": 32, "RJ": 33, "SP": 35,
    "PR": 41, "SC": 42, "RS": 43,
    "MS": 50, "MT": 51, "GO": 52, "DF": 53,
}
UFS: tuple[str, ...] = tuple(sorted(UF_IBGE_CODES))
UF_BY_IBGE_CODE: dict[int, str] = {code: uf for uf, code in UF_IBGE_CODES.items()}


def normalize_uf(value: str) -> str:
    """`sp`, ` SP ` and `SP` are the same state; the ERPs and the NF-e want upper case."""
    return (value or "").strip().upper()


def is_valid_uf(value: str) -> bool:
    """True for one of the 27 UFs, in any case."""
    return normalize_uf(value) in UF_IBGE_CODES


# --------------------------------------------------------------------------- CPF / CNPJ
CPF_LENGTH = 11
CNPJ_LENGTH = 14

# Weights of the check digits. The value of a character is its ASCII code minus 48, so a weighted sum
# over the raw bytes minus 48 * sum(weights) is the weighted sum over the values.
_CPF_W1 = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_CPF_W2 = (11, 10, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_W1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_W2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CPF_B1, _CPF_B2 = 48 * sum(_CPF_W1), 48 * sum(_CPF_W2)
_CNPJ_B1, _CNPJ_B2 = 48 * sum(_CNPJ_W1), 48 * sum(_CNPJ_W2)
_DIGITS = frozenset("0123456789")
_CNPJ_BASE_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Receita Federal's rule shared by CPF and CNPJ: remainder below 2 gives 0, else 11 - remainder.
_CHECK_DIGIT_OF_REMAINDER = tuple(0 if remainder < 2 else 11 - remainder for remainder in range(11))


def normalize_tax_id(value: str) -> str:
    """Drop the mask (`.`, `/`, `-`, whitespace) and upper-case: lower-case letters in an
    alphanumeric CNPJ are a typing habit, not another number, and the tax ID is stored in this form.

    Only mask characters go, so a stray letter in a CPF stays visible to the check.
    """
    if not value:
        return ""
    if not value.isalnum():
        value = value.replace(".", "").replace("/", "").replace("-", "")
        if not value.isalnum():
            value = "".join(value.split())
    return value.upper()


def _mod11_digit(total: int) -> int:
    return _CHECK_DIGIT_OF_REMAINDER[total % 11]


def cpf_check_digits(base: str) -> str:
    """The two check digits of the first nine CPF digits (the plain form of the rule; also builds
    test and benchmark data)."""
    raw = base.encode("ascii")
    first = _mod11_digit(sum(map(mul, raw, _CPF_W1)) - _CPF_B1)
    second = _mod11_digit(sum(map(mul, raw + bytes((first + 48,)), _CPF_W2)) - _CPF_B2)
    return f"{first}{second}"


def cnpj_check_digits(base: str) -> str:
    """The two check digits of the first twelve CNPJ characters, numeric or alphanumeric."""
    raw = base.upper().encode("ascii")
    first = _mod11_digit(sum(map(mul, raw, _CNPJ_W1)) - _CNPJ_B1)
    second = _mod11_digit(sum(map(mul, raw + bytes((first + 48,)), _CNPJ_W2)) - _CNPJ_B2)
    return f"{first}{second}"


# Fast path for all-digit numbers (every CPF and, for years still, most CNPJs). The check digits only
# depend on the two weighted sums modulo 11, and sums modulo 11 add up chunk by chunk. So the number
# is read once with int(), cut into 3-digit chunks with integer division, and each chunk's two
# contributions (mod 11) are looked up packed as r1 * 64 + r2; the packed total (each part below 64
# for up to 5 chunks) indexes the expected pair of check digits. Same results as the functions
# above (the tests check them against each other and against validate-docbr), in a third of the time.
_PACK = 64


def _chunk_table(weights1: tuple[int, ...], weights2: tuple[int, ...]) -> tuple[int, ...]:
    """Packed weighted sums (mod 11) of every 3-digit chunk 000..999 at one position of the number."""
    table = []
    for chunk in range(1000):
        digits = (chunk // 100, chunk // 10 % 10, chunk % 10)
        table.append(sum(map(mul, digits, weights1)) % 11 * _PACK + sum(map(mul, digits, weights2)) % 11)
    return tuple(table)


def _expected_check_digits() -> tuple[int, ...]:
    """Check digits (as the number first * 10 + second) for every packed pair of partial sums.

    The second digit's sum also counts the first digit, with weight 2 for both CPF and CNPJ.
    """
    expected = []
    for packed in range(_PACK * _PACK):
        first = _mod11_digit(packed // _PACK)
        expected.append(first * 10 + _mod11_digit(packed % _PACK + 2 * first))
    return tuple(expected)


_CPF_CHUNKS = tuple(_chunk_table(_CPF_W1[i:i + 3], _CPF_W2[i:i + 3]) for i in (0, 3, 6))
_CNPJ_CHUNKS = tuple(_chunk_table(_CNPJ_W1[i:i + 3], _CNPJ_W2[i:i + 3]) for i in (0, 3, 6, 9))
_EXPECTED_CHECK_DIGITS = _expected_check_digits()
# 111.111.111-11 and the like pass the arithmetic but are no one's number.
_REPEATED_CPFS = frozenset(int(str(d) * CPF_LENGTH) for d in range(10))
_REPEATED_CNPJS = frozenset(int(str(d) * CNPJ_LENGTH) for d in range(10))


def is_valid_normalized_cpf(tax_id: str) -> bool:
    """CPF test on a value already through `normalize_tax_id` (the health check normalizes once and
    asks several questions): 11 ASCII digits, not all alike, check digits right."""
    if len(tax_id) != CPF_LENGTH or not tax_id.isascii() or not tax_id.isdigit():
        return False
    number = int(tax_id)
    base, check = divmod(number, 100)
    high, mid, low = _CPF_CHUNKS
    packed = high[base // 1000000] + mid[base // 1000 % 1000] + low[base % 1000]
    return _EXPECTED_CHECK_DIGITS[packed] == check and number not in _REPEATED_CPFS


def is_valid_normalized_cnpj(tax_id: str) -> bool:
    """CNPJ test on a value already through `normalize_tax_id`: 12 of 0-9/A-Z, then 2 numeric check
    digits, not all alike."""
    if len(tax_id) != CNPJ_LENGTH or not tax_id.isascii():
        return False
    if tax_id.isdigit():
        number = int(tax_id)
        base, check = divmod(number, 100)
        c0, c1, c2, c3 = _CNPJ_CHUNKS
        packed = c0[base // 1000000000] + c1[base // 1000000 % 1000] + c2[base // 1000 % 1000] + c3[base % 1000]
        return _EXPECTED_CHECK_DIGITS[packed] == check and number not in _REPEATED_CNPJS
    if not _CNPJ_BASE_CHARS.issuperset(tax_id[:12]) or not _DIGITS.issuperset(tax_id[12:]):
        return False
    return cnpj_check_digits(tax_id[:12]) == tax_id[12:]


def is_valid_cpf(value: str) -> bool:
    """True for a real CPF, with or without its mask."""
    return is_valid_normalized_cpf(normalize_tax_id(value))


def is_valid_cnpj(value: str) -> bool:
    """True for a real CNPJ, numeric or alphanumeric (IN RFB 2.229/2024), masked or not, any case."""
    return is_valid_normalized_cnpj(normalize_tax_id(value))


def tax_id_kind(value: str) -> str | None:
    """"CPF" or "CNPJ" when the value is a valid one of them, else None (so callers can tell a
    CPF typed on a company record apart from a plain typo)."""
    tax_id = normalize_tax_id(value)
    if is_valid_normalized_cpf(tax_id):
        return "CPF"
    if is_valid_normalized_cnpj(tax_id):
        return "CNPJ"
    return None


def format_tax_id(value: str) -> str:
    """Show a CPF as 000.000.000-00 and a CNPJ as 00.000.000/0000-00.

    Anything of another length comes back normalized but unmasked: display code must never fail on
    bad data, and a mask over a wrong number would make it look right.
    """
    t = normalize_tax_id(value)
    if len(t) == CPF_LENGTH:
        return f"{t[:3]}.{t[3:6]}.{t[6:9]}-{t[9:]}"
    if len(t) == CNPJ_LENGTH:
        return f"{t[:2]}.{t[2:5]}.{t[5:8]}/{t[8:12]}-{t[12:]}"
    return t


# --------------------------------------------------------------------------- CEP
CEP_LENGTH = 8

#: Correios ranges per UF, as (first, last) 8-digit numbers; DF and GO interleave around Brasília.
CEP_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "RO": ((76800000, 76999999),),
    "AC": ((69900000, 69999999),),
    "AM": ((69000000, 69299999), (69400000, 69899999)),
    "RR": ((69300000, 69399999),),
    "PA": ((66000000, 68899999),),
    "AP": ((68900000, 68999999),),
    "TO": ((77000000, 77999999),),
    "MA": ((65000000, 65999999),),
    "PI": ((64000000, 64999999),),
    "CE": ((60000000, 63999999),),
    "RN": ((59000000, 59999999),),
    "PB": ((58000000, 58999999),),
    "PE": ((50000000, 56999999),),
    "AL": ((57000000, 57999999),),
    "SE": ((49000000, 49999999),),
    "BA": ((40000000, 48999999),),
    "MG": ((30000000, 39999999),),
    "ES": ((29000000, 29999999),),
    "RJ": ((20000000, 28999999),),
    "SP": ((1000000, 19999999),),
    "PR": ((80000000, 87999999),),
    "SC": ((88000000, 89999999),),
    "RS": ((90000000, 99999999),),
    "MS": ((79000000, 79999999),),
    "MT": ((78000000, 78899999),),
    "GO": ((72800000, 72999999), (73700000, 76799999)),
    "DF": ((70000000, 72799999), (73000000, 73699999)),
}


def _cep_index() -> tuple[list[int], list[int], list[str]]:
    """Sorted range starts with their ends and UFs, so one bisect finds a CEP's state."""
    ranges = sorted((lo, hi, uf) for uf, spans in CEP_RANGES.items() for lo, hi in spans)
    for (_, hi, uf), (lo, _, other) in zip(ranges, ranges[1:]):
        if lo <= hi:
            raise ValueError(f"CEP ranges of {uf} and {other} overlap")
    return [r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges]


_CEP_STARTS, _CEP_ENDS, _CEP_UFS = _cep_index()
_CEP_PREFIX_SPAN = 100000          # one entry per first 3 digits of the CEP
SPLIT_CEP_PREFIX = "?"             # a prefix shared by two UFs (none today): ask the bisect


def _cep_prefix_table() -> tuple[str | None, ...]:
    """UF of each 3-digit CEP prefix, since every Correios boundary of the table falls on one.

    One list index is the health check's fastest way from a CEP to its UF; a prefix that a future
    range splits is marked and answered by the bisect, so an edit of CEP_RANGES cannot go wrong.
    """
    table: list[str | None] = []
    for prefix in range(1000):
        first, last = prefix * _CEP_PREFIX_SPAN, prefix * _CEP_PREFIX_SPAN + _CEP_PREFIX_SPAN - 1
        table.append(_uf_by_bisect(first) if _covers_whole_prefix(first, last) else SPLIT_CEP_PREFIX)
    return tuple(table)


def _covers_whole_prefix(first: int, last: int) -> bool:
    """True when one range holds both ends of the prefix (or none holds either)."""
    i, j = bisect_right(_CEP_STARTS, first) - 1, bisect_right(_CEP_STARTS, last) - 1
    return i == j and (i < 0 or (first <= _CEP_ENDS[i]) == (last <= _CEP_ENDS[i]))


def _uf_by_bisect(number: int) -> str | None:
    i = bisect_right(_CEP_STARTS, number) - 1
    if i >= 0 and number <= _CEP_ENDS[i]:
        return _CEP_UFS[i]
    return None


#: UF (or None, or SPLIT_CEP_PREFIX) of each first-3-digits of a CEP: CEP_UF_BY_PREFIX[int(cep[:3])].
CEP_UF_BY_PREFIX = _cep_prefix_table()


def normalize_cep(value: str) -> str:
    """`01310-100`, `01.310-100` and `01310100` are the same CEP: keep the digits' form."""
    if not value:
        return ""
    if len(value) == CEP_LENGTH and value.isdigit():
        return value
    return "".join(value.split()).replace("-", "").replace(".", "")


def is_valid_cep(value: str) -> bool:
    """8 ASCII digits, not all zeros (whether it falls in a state is `cep_uf`'s question)."""
    cep = normalize_cep(value)
    return len(cep) == CEP_LENGTH and cep.isascii() and cep.isdigit() and cep != "00000000"


def cep_uf(value: str) -> str | None:
    """The UF whose Correios range holds this CEP, or None (malformed, or in no state's range)."""
    if not is_valid_cep(value):
        return None
    return uf_of_cep_digits(normalize_cep(value))


def uf_of_cep_digits(cep: str) -> str | None:
    """UF of a CEP already known to be 8 ASCII digits: the health check's one-lookup path."""
    uf = CEP_UF_BY_PREFIX[int(cep[:3])]
    return _uf_by_bisect(int(cep)) if uf == SPLIT_CEP_PREFIX else uf


def cep_in_uf(cep: str, uf: str) -> bool:
    """True when the CEP lies inside one of the given UF's ranges."""
    found = cep_uf(cep)
    return found is not None and found == normalize_uf(uf)


def format_cep(value: str) -> str:
    """Show a CEP as 00000-000; anything that is not 8 digits comes back unmasked, unchanged."""
    cep = normalize_cep(value)
    if len(cep) == CEP_LENGTH and cep.isdigit():
        return f"{cep[:5]}-{cep[5:]}"
    return cep


# --------------------------------------------------------------------------- IBGE municipalities
IBGE_CODE_LENGTH = 7

#: Real municipalities whose 7th digit breaks the check-digit rule (listed in the NF-e manual).
IBGE_CHECK_DIGIT_EXCEPTIONS = frozenset({
    "2201919", "2201988", "2202251",  # PI
    "2611533",                        # PE
    "3117836", "3152131",             # MG
    "4305871",                        # RS
    "5203939", "5203962",             # GO
})


class Municipality(NamedTuple):
    code: str
    uf: str
    name: str      # as the table spells it: lower case, no accents ("sao paulo")


def ibge_check_digit(first_six: str) -> int:
    """7th digit of an IBGE code: weights 1,2,1,2,1,2, two-digit products summed digit by digit."""
    total = 0
    for position, char in enumerate(first_six):
        product = int(char) * (1 if position % 2 == 0 else 2)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def is_valid_ibge_code(value: str) -> bool:
    """7 digits, a known UF prefix and a right check digit (or one of the nine listed exceptions).

    This is the shape check; `municipality` answers whether the code is a real municipality.
    """
    code = (value or "").strip()
    if len(code) != IBGE_CODE_LENGTH or not code.isascii() or not code.isdigit():
        return False
    if int(code[:2]) not in UF_BY_IBGE_CODE:
        return False
    return code in IBGE_CHECK_DIGIT_EXCEPTIONS or ibge_check_digit(code[:6]) == int(code[6])


@functools.lru_cache(maxsize=32768)
def city_key(name: str) -> str:
    """Comparison form of a city name: no accents, case folded, letters and digits only.

    "São Paulo", "SAO PAULO" and "sao  paulo" are one city, and so are "Ji-Paraná" and "Ji Parana"
    or "Alta Floresta D'Oeste" and "Alta Floresta D’Oeste": the spelling of a hyphen or apostrophe
    does not make another place. Cached because clinics repeat the same few cities.
    """
    decomposed = unicodedata.normalize("NFKD", name).casefold()
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))


def same_city(a: str, b: str) -> bool:
    """Accent-, case- and punctuation-insensitive comparison of two city names."""
    return city_key(a or "") == city_key(b or "")


class MunicipalityTable(NamedTuple):
    by_code: dict[str, Municipality]
    key_by_code: dict[str, str]              # code -> city_key(name)
    code_by_uf_key: dict[tuple[str, str], str]  # (UF, city_key(name)) -> code


MUNICIPALITY_PACKAGE = "brutils"
MUNICIPALITY_RESOURCE = "data/cities_code.json"


def _read_municipality_resource() -> dict[str, dict[str, str]]:
    """brutils' table as shipped, {UF: {normalized name: code}}, read as a package resource.

    The resource reader comes from the package's import spec, so brutils itself is never imported:
    its __init__ pulls holidays, num2words and urllib (a fifth of a second and some 75,000 objects
    the garbage collector would then walk during every large check), and its lookup functions call
    IBGE's web API, which no check here may depend on.
    """
    spec = importlib.util.find_spec(MUNICIPALITY_PACKAGE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{MUNICIPALITY_PACKAGE} is not installed: it ships IBGE's municipality table")
    reader = spec.loader.get_resource_reader(spec.name)
    resource = reader.files().joinpath(MUNICIPALITY_RESOURCE)
    return json.loads(resource.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def municipalities() -> MunicipalityTable:
    """IBGE's 5,570 municipalities, inverted once from {UF: {name: code}} to lookups by code."""
    by_code: dict[str, Municipality] = {}
    for uf, cities in _read_municipality_resource().items():
        for name, code in cities.items():
            by_code[str(code)] = Municipality(str(code), uf, name)
    key_by_code = {code: city_key(m.name) for code, m in by_code.items()}
    code_by_uf_key = {(m.uf, key_by_code[code]): code for code, m in by_code.items()}
    return MunicipalityTable(by_code, key_by_code, code_by_uf_key)


def municipality(code: str) -> Municipality | None:
    """The real municipality of an IBGE code, or None."""
    return municipalities().by_code.get((code or "").strip())


def municipality_code(city: str, uf: str) -> str | None:
    """The IBGE code of a city name in a UF (accent/case-insensitive), or None when unknown there."""
    return municipalities().code_by_uf_key.get((normalize_uf(uf), city_key(city or "")))


def city_matches_code(city: str, code: str) -> bool:
    """True when the city name is the municipality of that IBGE code."""
    key = municipalities().key_by_code.get((code or "").strip())
    return key is not None and key == city_key(city or "")


_SMALL_WORDS = frozenset({"d", "da", "das", "de", "del", "do", "dos", "e"})
_WORD = re.compile(r"[a-z]+")


def display_city_name(name: str) -> str:
    """The table's lower-case name capitalized for messages ("ji-parana" -> "Ji-Parana").

    The table has no accents, so messages show "Sao Paulo": close enough for the owner to recognize.
    """
    def capitalize(match: re.Match) -> str:
        word = match.group(0)
        return word if match.start() and word in _SMALL_WORDS else word.capitalize()

    return _WORD.sub(capitalize, name)

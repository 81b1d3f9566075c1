"""integrations.brazil against the vectors of record-rules.md, IBGE's table and validate-docbr.

validate-docbr is an independent implementation of the Receita Federal rules, so agreeing with it on
random numbers (valid and not) checks both the plain and the fast check-digit paths.
"""
from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validate_docbr import CNPJ, CPF

from integrations import brazil

ROOT = Path(__file__).resolve().parents[2]
DOCBR_CPF, DOCBR_CNPJ = CPF(), CNPJ()


# --------------------------------------------------------------------------- CPF
@pytest.mark.parametrize("value", ["52998224725", "529.982.247-25"])
def test_cpf_vectors_valid(value):
    assert brazil.is_valid_cpf(value)
    assert brazil.tax_id_kind(value) == "CPF"


@pytest.mark.parametrize("value", ["52998224724", "11111111111", "5299822472", "529.98A.247-25", "", "529982247250"])
def test_cpf_vectors_invalid(value):
    assert not brazil.is_valid_cpf(value)


@pytest.mark.parametrize("digit", string.digits)
def test_cpf_all_same_digit_rejected(digit):
    assert not brazil.is_valid_cpf(digit * 11)


def test_cpf_with_non_ascii_digits_rejected():
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in "52998224725")
    assert not brazil.is_valid_cpf(arabic_indic)


# --------------------------------------------------------------------------- CNPJ
@pytest.mark.parametrize("value", ["11222333000181", "11.222.333/0001-81", "12ABC34501DE35", "12.ABC.345/01DE-35",
                                   "12abc34501de35", "12.abc.345/01de-35"])
def test_cnpj_vectors_valid(value):
    assert brazil.is_valid_cnpj(value)
    assert brazil.tax_id_kind(value) == "CNPJ"


@pytest.mark.parametrize("value", ["11222333000180", "00000000000000", "12ABC34501DE36", "12ABC34501DEAB",
                                   "1122233300018", "12ABC345-01DE35X", "12ABC3450!DE35"])
def test_cnpj_vectors_invalid(value):
    assert not brazil.is_valid_cnpj(value)


@pytest.mark.parametrize("digit", string.digits)
def test_cnpj_all_same_digit_rejected(digit):
    assert not brazil.is_valid_cnpj(digit * 14)


def test_cnpj_character_value_is_ascii_minus_48():
    # 12ABC34501DE: A=17, B=18, C=19, D=20, E=21 -> DV 3 then 5 (record-rules.md's vector)
    assert brazil.cnpj_check_digits("12ABC34501DE") == "35"
    assert brazil.cnpj_check_digits("12abc34501de") == "35"
    assert brazil.cnpj_check_digits("112223330001") == "81"


def test_normalize_tax_id_keeps_letters_upper_and_drops_masks():
    assert brazil.normalize_tax_id("12.abc.345/01de-35") == "12ABC34501DE35"
    assert brazil.normalize_tax_id(" 529.982.247-25 ") == "52998224725"
    assert brazil.normalize_tax_id("529.98A.247-25") == "52998A24725"  # a stray letter stays visible
    assert brazil.normalize_tax_id("") == ""


@pytest.mark.parametrize("value, shown", [
    ("52998224725", "529.982.247-25"),
    ("11222333000181", "11.222.333/0001-81"),
    ("12abc34501de35", "12.ABC.345/01DE-35"),
    ("1234", "1234"),                 # not a CPF or CNPJ length: shown unmasked, not made to look right
])
def test_format_tax_id(value, shown):
    assert brazil.format_tax_id(value) == shown


digit_strings = st.text(alphabet=string.digits, min_size=9, max_size=9)
cnpj_bases = st.text(alphabet=string.digits + string.ascii_uppercase, min_size=12, max_size=12)


@settings(max_examples=400, deadline=None)
@given(base=digit_strings, tail=st.text(alphabet=string.digits, min_size=2, max_size=2))
def test_cpf_agrees_with_validate_docbr(base, tail):
    built = base + brazil.cpf_check_digits(base)
    for candidate in (built, base + tail):
        assert brazil.is_valid_cpf(candidate) == DOCBR_CPF.validate(candidate)


@settings(max_examples=400, deadline=None)
@given(base=cnpj_bases, tail=st.text(alphabet=string.digits, min_size=2, max_size=2))
def test_alphanumeric_cnpj_agrees_with_validate_docbr(base, tail):
    built = base + brazil.cnpj_check_digits(base)
    for candidate in (built, base + tail, built.lower()):
        assert brazil.is_valid_cnpj(candidate) == DOCBR_CNPJ.validate(candidate.upper())


@settings(max_examples=400, deadline=None)
@given(base=st.text(alphabet=string.digits, min_size=12, max_size=12),
       tail=st.text(alphabet=string.digits, min_size=2, max_size=2))
def test_numeric_cnpj_fast_path_agrees_with_plain_rule_and_docbr(base, tail):
    for candidate in (base + brazil.cnpj_check_digits(base), base + tail):
        plain = candidate[12:] == brazil.cnpj_check_digits(base) and len(set(candidate)) > 1
        assert brazil.is_valid_normalized_cnpj(candidate) == plain == DOCBR_CNPJ.validate(candidate)


# --------------------------------------------------------------------------- UF
def test_uf_list_has_the_27_units_with_distinct_ibge_codes():
    assert len(brazil.UFS) == 27
    assert len(set(brazil.UF_IBGE_CODES.values())) == 27
    assert {"SP", "RJ", "MG", "DF", "GO", "TO", "AC"} <= set(brazil.UFS)


@pytest.mark.parametrize("value, valid", [("sp", True), (" SP ", True), ("DF", True), ("XX", False), ("", False),
                                          ("EX", False)])
def test_is_valid_uf(value, valid):
    assert brazil.is_valid_uf(value) is valid


# --------------------------------------------------------------------------- CEP
@pytest.mark.parametrize("value, valid", [("01310-100", True), ("01310100", True), ("01.310-100", True),
                                          ("00000-000", False), ("0131010", False), ("013101000", False),
                                          ("0131O100", False), ("", False)])
def test_cep_shape(value, valid):
    assert brazil.is_valid_cep(value) is valid


def test_format_cep():
    assert brazil.format_cep("01310100") == "01310-100"
    assert brazil.format_cep("01.310-100") == "01310-100"
    assert brazil.format_cep("123") == "123"


@pytest.mark.parametrize("cep, uf", [
    ("70000-000", "DF"), ("72799-999", "DF"),      # Brasília's first block
    ("72800-000", "GO"), ("72999-999", "GO"),      # Goiás towns next to the capital
    ("73000-000", "DF"), ("73699-999", "DF"),      # DF again
    ("73700-000", "GO"), ("76799-999", "GO"),      # the rest of Goiás
    ("76800-000", "RO"), ("69300-000", "RR"), ("69299-999", "AM"), ("69400-000", "AM"),
    ("68900-000", "AP"), ("68899-999", "PA"), ("01000-000", "SP"), ("19999-999", "SP"),
    ("78899-999", "MT"), ("99999-999", "RS"),
    ("00999-999", None), ("78900-000", None),      # in no state's range
])
def test_cep_uf_at_range_edges(cep, uf):
    assert brazil.cep_uf(cep) == uf


def test_every_range_edge_maps_to_its_uf():
    for uf, spans in brazil.CEP_RANGES.items():
        for lo, hi in spans:
            assert brazil.cep_uf(f"{lo:08d}") == uf and brazil.cep_uf(f"{hi:08d}") == uf
            assert brazil.cep_in_uf(f"{lo:08d}", uf.lower())


def test_prefix_table_agrees_with_the_ranges_everywhere():
    """The health check's one-lookup path must give the ranges' answer for every CEP prefix."""
    for prefix in range(1000):
        for cep in (f"{prefix:03d}00000", f"{prefix:03d}54321", f"{prefix:03d}99999"):
            expected = next((uf for uf, spans in brazil.CEP_RANGES.items()
                             if any(lo <= int(cep) <= hi for lo, hi in spans)), None)
            assert brazil.uf_of_cep_digits(cep) == expected, cep


# --------------------------------------------------------------------------- IBGE
EXCEPTIONS = {"2201919": "PI", "2201988": "PI", "2202251": "PI", "2611533": "PE", "3117836": "MG",
              "3152131": "MG", "4305871": "RS", "5203939": "GO", "5203962": "GO"}


@pytest.mark.parametrize("code, uf", sorted(EXCEPTIONS.items()))
def test_the_nine_check_digit_exceptions_are_valid_real_municipalities(code, uf):
    assert brazil.ibge_check_digit(code[:6]) != int(code[6])   # they really break the rule
    assert brazil.is_valid_ibge_code(code)
    place = brazil.municipality(code)
    assert place is not None and place.uf == uf


REFERENCE_CITIES = [
    ("São Paulo", "SP", "3550308"), ("Rio de Janeiro", "RJ", "3304557"), ("Belo Horizonte", "MG", "3106200"),
    ("Brasília", "DF", "5300108"), ("Curitiba", "PR", "4106902"), ("Porto Alegre", "RS", "4314902"),
    ("Campinas", "SP", "3509502"), ("Valparaíso de Goiás", "GO", "5221858"), ("Coronel Barros", "RS", "4305871"),
]


@pytest.mark.parametrize("city, uf, code", REFERENCE_CITIES)
def test_reference_city_codes(city, uf, code):
    assert brazil.is_valid_ibge_code(code)
    assert brazil.municipality(code).uf == uf
    assert brazil.city_matches_code(city, code)
    assert brazil.city_matches_code(city.upper(), code)
    assert brazil.municipality_code(city, uf.lower()) == code


def test_table_has_5570_municipalities_all_shaped_right_and_in_their_uf():
    table = brazil.municipalities().by_code
    assert len(table) == 5570
    for code, place in table.items():
        assert brazil.is_valid_ibge_code(code), code
        assert int(code[:2]) == brazil.UF_IBGE_CODES[place.uf], code
    # check-digit failures in the whole table are exactly the nine listed exceptions
    assert {c for c in table if brazil.ibge_check_digit(c[:6]) != int(c[6])} == set(EXCEPTIONS)


@pytest.mark.parametrize("code", ["355030", "35503080", "3550309", "35503O8", "9950308", "", "3550308 x"])
def test_invalid_ibge_codes(code):
    assert not brazil.is_valid_ibge_code(code)
    assert brazil.municipality(code) is None


def test_valid_shape_but_not_a_municipality():
    code = "355099" + str(brazil.ibge_check_digit("355099"))
    assert brazil.is_valid_ibge_code(code)
    assert brazil.municipality(code) is None


def test_city_names_compare_without_accents_case_or_punctuation():
    assert brazil.same_city("São Paulo", "SAO PAULO")
    assert brazil.same_city("sao  paulo", "São Paulo")
    assert brazil.same_city("Ji-Paraná", "Ji Parana")
    assert brazil.same_city("Alta Floresta D'Oeste", "alta floresta d’oeste")
    assert not brazil.same_city("São Paulo", "São Paulo de Olivença")
    assert not brazil.same_city("Campinas", "Campinas do Sul")


def test_same_name_in_two_states_resolves_per_uf():
    # "Bom Jesus" exists in several states: the UF decides the code.
    codes = {uf: brazil.municipality_code("Bom Jesus", uf) for uf in ("PI", "RS", "SC", "PB", "RN")}
    assert len(set(codes.values())) == 5
    for uf, code in codes.items():
        assert brazil.municipality(code).uf == uf


def test_display_name_for_messages():
    assert brazil.display_city_name("alta floresta d'oeste") == "Alta Floresta d'Oeste"
    assert brazil.display_city_name("ji-parana") == "Ji-Parana"


def test_loading_the_table_does_not_import_brutils():
    """brutils' package import drags in network-calling helpers and heavy dependencies."""
    code = ("import sys, json; from integrations import brazil; n = len(brazil.municipalities().by_code); "
            "print(json.dumps([n, 'brutils' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [5570, False]

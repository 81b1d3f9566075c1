"""webapp.health: every rule of record-rules.md with a good and a bad record, severities, requirements."""
from __future__ import annotations

import gc
import time

import pytest

from integrations import registry
from integrations.base import CustomerRecord, RecordRequirement
from webapp.health import (ERROR, WARNING, Problem, check_customer, check_many, compile_requirements, has_errors,
                           health_score)

PERSON = {
    "id": "c1", "person_type": "PF", "name": "João Conceição d'Ávila", "tax_id": "529.982.247-25",
    "state_registration": "", "email": "joao.avila@example.com.br", "phone": "(11) 98765-4321",
    "zip_code": "01310-100", "street": "Avenida Paulista", "number": "1578", "complement": "Apto 12",
    "district": "Bela Vista", "city": "São Paulo", "city_ibge_code": "3550308", "state": "SP",
}
COMPANY = {
    "id": "c2", "person_type": "PJ", "name": "Clínica Veterinária Bom Pelo Ltda", "tax_id": "11222333000181",
    "state_registration": "244.208.357.110", "email": "contato@bompelo.com.br", "phone": "",
    "zip_code": "13010-000", "street": "Rua Barão de Jaguara", "number": "S/N", "complement": "",
    "district": "Centro", "city": "Campinas", "city_ibge_code": "3509502", "state": "SP",
}


def changed(base: dict, **fields) -> dict:
    return {**base, **fields}


def codes(problems: list[Problem]) -> dict[str, str]:
    return {p.code: p.severity for p in problems}


# --------------------------------------------------------------------------- good records
@pytest.mark.parametrize("record", [
    PERSON, COMPANY,
    changed(PERSON, tax_id="52998224725", state="sp", person_type="pf"),        # normalized forms
    changed(COMPANY, tax_id="12.abc.345/01de-35"),                              # alphanumeric, lower case
    changed(COMPANY, state_registration="ISENTO"),
    changed(PERSON, city="SAO PAULO", zip_code="01310100", email="", complement=""),
    changed(PERSON, city="Valparaíso de Goiás", city_ibge_code="5221858", state="GO", zip_code="72800-000"),
    changed(PERSON, city="Brasília", city_ibge_code="5300108", state="DF", zip_code="73000-000"),
    changed(PERSON, city="Coronel Barros", city_ibge_code="4305871", state="RS", zip_code="98735-000"),
    changed(PERSON, name="  Ana Lú  ", number="  S/N "),
])
def test_good_records_have_no_problems(record):
    assert check_customer(record) == []


def test_customer_record_and_dict_give_the_same_answer():
    record = CustomerRecord.from_dict(changed(PERSON, tax_id="52998224724", district=""))
    assert check_customer(record) == check_customer(record.to_dict())
    assert codes(check_customer(record)) == {"tax_id.invalid_cpf": ERROR, "district.missing": WARNING}


def test_missing_keys_none_and_numbers_do_not_crash():
    record = {"id": 7, "person_type": "PF", "name": "Ana Souza", "tax_id": 52998224725, "zip_code": None,
              "street": "Rua A", "number": 10, "district": "Centro", "city": "São Paulo",
              "city_ibge_code": 3550308, "state": "SP"}
    assert codes(check_customer(record)) == {"zip_code.missing": ERROR}


# --------------------------------------------------------------------------- one rule at a time
RULES = [
    # (base, changes, code, severity)
    (PERSON, {"person_type": "PX"}, "person_type.invalid", ERROR),
    (PERSON, {"tax_id": ""}, "tax_id.missing", ERROR),
    (PERSON, {"tax_id": "529.982.247-24"}, "tax_id.invalid_cpf", ERROR),
    (PERSON, {"tax_id": "111.111.111-11"}, "tax_id.invalid_cpf", ERROR),
    (PERSON, {"tax_id": "5299822472"}, "tax_id.invalid_cpf", ERROR),
    (PERSON, {"tax_id": "529.98A.247-25"}, "tax_id.invalid_cpf", ERROR),
    (PERSON, {"tax_id": "11.222.333/0001-81"}, "tax_id.type_mismatch", ERROR),
    (COMPANY, {"tax_id": "52998224725"}, "tax_id.type_mismatch", ERROR),
    (COMPANY, {"tax_id": "11222333000180"}, "tax_id.invalid_cnpj", ERROR),
    (COMPANY, {"tax_id": "00000000000000"}, "tax_id.invalid_cnpj", ERROR),
    (COMPANY, {"tax_id": "12ABC34501DE36"}, "tax_id.invalid_cnpj", ERROR),
    (COMPANY, {"tax_id": "12ABC34501DEAB"}, "tax_id.invalid_cnpj", ERROR),
    (COMPANY, {"state_registration": ""}, "state_registration.missing_pj", WARNING),
    (PERSON, {"name": ""}, "name.missing", ERROR),
    (PERSON, {"name": "   "}, "name.missing", ERROR),
    (PERSON, {"name": " A "}, "name.too_short", ERROR),
    (PERSON, {"name": "Ana " + "x" * 60}, "name.too_long", WARNING),
    (PERSON, {"street": ""}, "street.missing", ERROR),
    (PERSON, {"street": "R"}, "street.too_short", ERROR),
    (PERSON, {"street": "Rua " + "x" * 60}, "street.too_long", WARNING),
    (PERSON, {"number": ""}, "number.missing", WARNING),
    (PERSON, {"number": "1" * 61}, "number.too_long", WARNING),
    (PERSON, {"complement": "c" * 61}, "complement.too_long", WARNING),
    (PERSON, {"district": ""}, "district.missing", WARNING),
    (PERSON, {"district": "C"}, "district.too_short", WARNING),
    (PERSON, {"district": "d" * 61}, "district.too_long", WARNING),
    (PERSON, {"state": ""}, "state.missing", ERROR),
    (PERSON, {"state": "XX"}, "state.invalid", ERROR),
    (PERSON, {"zip_code": ""}, "zip_code.missing", ERROR),
    (PERSON, {"zip_code": "0131010"}, "zip_code.invalid", ERROR),
    (PERSON, {"zip_code": "00000-000"}, "zip_code.invalid", ERROR),
    (PERSON, {"zip_code": "0131O-100"}, "zip_code.invalid", ERROR),
    (PERSON, {"zip_code": "78900-000"}, "zip_code.invalid", ERROR),       # in no state's range
    (PERSON, {"zip_code": "20040-020"}, "zip_code.outside_state", ERROR),  # a Rio CEP on a SP record
    (PERSON, {"city": ""}, "city.missing", ERROR),
    (PERSON, {"city": "S"}, "city.too_short", ERROR),
    (PERSON, {"city": "Campinas"}, "city.ibge_mismatch", ERROR),
    (PERSON, {"city_ibge_code": ""}, "city_ibge_code.missing", ERROR),
    (PERSON, {"city_ibge_code": "355030"}, "city_ibge_code.invalid", ERROR),
    (PERSON, {"city_ibge_code": "3550309"}, "city_ibge_code.invalid", ERROR),
    (PERSON, {"city_ibge_code": "3550990"}, "city_ibge_code.invalid", ERROR),  # right shape, no such place
    (PERSON, {"city_ibge_code": "3304557", "city": "Rio de Janeiro"}, "city_ibge_code.other_state", ERROR),
    (PERSON, {"email": "joao.avila@"}, "email.invalid", WARNING),
    (PERSON, {"email": "joao avila@example.com"}, "email.invalid", WARNING),
    (PERSON, {"email": "joao@-example.com"}, "email.invalid", WARNING),
    (PERSON, {"email": "a" * 50 + "@example.com.br"}, "email.too_long", WARNING),
]


@pytest.mark.parametrize("base, changes, code, severity", RULES, ids=[f"{r[2]}:{list(r[1].values())[0]!r}"[:60]
                                                                       for r in RULES])
def test_each_rule_flags_its_bad_value_only(base, changes, code, severity):
    assert check_customer(base) == []                        # the same record without the fault is clean
    problems = check_customer(changed(base, **changes))
    assert codes(problems).get(code) == severity, problems
    problem = next(p for p in problems if p.code == code)
    assert problem.field == code.split(".")[0]
    assert problem.message.startswith("The ") and len(problem.message) > 30


def test_no_number_warning_suggests_s_n():
    [problem] = check_customer(changed(PERSON, number=""))
    assert "S/N" in problem.message


def test_df_go_interleave():
    goias_town = changed(PERSON, city="Valparaíso de Goiás", city_ibge_code="5221858", zip_code="72800-000")
    assert codes(check_customer(changed(goias_town, state="GO"))) == {}
    as_df = codes(check_customer(changed(goias_town, state="DF")))
    assert as_df == {"zip_code.outside_state": ERROR, "city_ibge_code.other_state": ERROR}
    brasilia = changed(PERSON, city="Brasília", city_ibge_code="5300108", state="DF")
    assert codes(check_customer(changed(brasilia, zip_code="72799-999"))) == {}
    assert codes(check_customer(changed(brasilia, zip_code="72800-000"))) == {"zip_code.outside_state": ERROR}
    assert codes(check_customer(changed(brasilia, zip_code="73700-000"))) == {"zip_code.outside_state": ERROR}


def test_mismatch_and_missing_code_messages_name_the_right_code():
    [mismatch] = check_customer(changed(PERSON, city="Campinas"))
    assert "3509502" in mismatch.message and "3550308" in mismatch.message
    [missing] = check_customer(changed(PERSON, city_ibge_code=""))
    assert "3550308" in missing.message


def test_wrong_state_is_reported_once_not_as_cep_or_code_problems():
    assert codes(check_customer(changed(PERSON, state="ZZ"))) == {"state.invalid": ERROR}


def test_unknown_person_type_still_checks_the_tax_id():
    assert codes(check_customer(changed(PERSON, person_type=""))) == {"person_type.invalid": ERROR}
    bad = codes(check_customer(changed(PERSON, person_type="", tax_id="123")))
    assert bad == {"person_type.invalid": ERROR, "tax_id.invalid": ERROR}


def test_message_of_a_masked_mistake_shows_the_formatted_number():
    [problem] = check_customer(changed(PERSON, tax_id="52998224724"))
    assert "529.982.247-24" in problem.message


# --------------------------------------------------------------------------- ERP requirements
NAME_40 = RecordRequirement("name", "acme.name_too_long", WARNING, "Acme keeps 40 characters of the name.",
                            max_length=40)
DISTRICT_REQUIRED = RecordRequirement("district", "acme.district_required", ERROR,
                                      "Acme refuses customers without a district.", required=True)
EMAIL_FOR_PF = RecordRequirement("email", "acme.email_required_pf", ERROR, "Acme needs the e-mail of a person.",
                                 required=True, person_type="PF")
PHONE_MAX = RecordRequirement("phone", "acme.phone_too_long", ERROR, "Acme keeps 12 characters of the phone.",
                              max_length=12)


def test_requirement_max_length():
    long_name = changed(PERSON, name="Maria Aparecida da Conceição Albuquerque Souza")   # 45 characters
    assert check_customer(long_name) == []
    assert codes(check_customer(long_name, (NAME_40,))) == {"acme.name_too_long": WARNING}
    assert codes(check_customer(PERSON, (PHONE_MAX,))) == {"acme.phone_too_long": ERROR}


def test_requirement_raises_a_generic_warning_to_an_error_without_repeating_it():
    no_district = changed(PERSON, district="")
    assert codes(check_customer(no_district)) == {"district.missing": WARNING}
    problems = check_customer(no_district, (DISTRICT_REQUIRED,))
    assert codes(problems) == {"acme.district_required": ERROR}
    assert problems[0].message == DISTRICT_REQUIRED.message
    assert check_customer(PERSON, (DISTRICT_REQUIRED,)) == []


def test_requirement_warning_never_hides_a_generic_error():
    name_wanted = RecordRequirement("name", "acme.name_required", WARNING, "Acme wants a name.", required=True)
    assert codes(check_customer(changed(PERSON, name=""), (name_wanted,))) == {"name.missing": ERROR}


def test_requirement_for_one_person_type_only():
    assert codes(check_customer(changed(PERSON, email=""), (EMAIL_FOR_PF,))) == {"acme.email_required_pf": ERROR}
    assert check_customer(changed(COMPANY, email=""), (EMAIL_FOR_PF,)) == []


def test_requirement_naming_an_unknown_field_fails_loudly():
    with pytest.raises(ValueError, match="unknown field"):
        check_customer(PERSON, (RecordRequirement("nickname", "acme.x", ERROR, "x", required=True),))


def test_every_registered_connectors_requirements_compile():
    """Connectors name canonical fields; a typo there would silently never apply."""
    for connector in registry.all_connectors():
        assert len(compile_requirements(connector.record_requirements)) == len(connector.record_requirements)


# --------------------------------------------------------------------------- batch, score
def test_check_many_keeps_order_and_matches_check_customer():
    records = [PERSON, changed(PERSON, tax_id=""), COMPANY, changed(COMPANY, number="", district="")]
    results = check_many(records, (DISTRICT_REQUIRED,))
    assert results == [check_customer(r, (DISTRICT_REQUIRED,)) for r in records]
    assert [has_errors(p) for p in results] == [False, True, False, True]


def test_check_many_gives_the_garbage_collector_back_as_it_found_it():
    assert gc.isenabled()
    check_many([PERSON])
    assert gc.isenabled()
    gc.disable()
    try:
        check_many([PERSON])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_has_errors_and_health_score():
    warning_only = check_customer(changed(PERSON, number=""))
    error = check_customer(changed(PERSON, tax_id=""))
    assert not has_errors(warning_only) and has_errors(error) and not has_errors([])
    assert health_score([[], warning_only, error]) == pytest.approx(2 / 3)
    assert health_score([error, error]) == 0.0
    assert health_score([]) == 1.0


def test_ten_thousand_records_check_fast():
    """A guard against an accidental slow path; the real figure is bench/bench_health.py's."""
    from bench.bench_health import generate

    records = generate(10_000, seed=11)
    started = time.perf_counter()
    results = check_many(records)
    elapsed = time.perf_counter() - started
    assert len(results) == 10_000 and 0.5 < health_score(results) < 1.0
    assert elapsed < 1.0, f"10,000 records took {elapsed:.2f} s"


# --------------------------------------------------------------------------- e-mail syntax
AGREED_EMAILS = ["ana@example.com", "ana.souza+pet@clinica.com.br", "o'brien@x.com", "a@b.co", "ANA@X.COM",
                 "user@sub.domain-x.org", "ana@123.com", "ana@localhost", "ana..souza@x.com", ".ana@x.com",
                 "ana.@x.com", "ana@x_y.com", "ana@-x.com", "ana@x-.com", "ana@x.com.", "ana@@x.com",
                 "ana@x..com", "ana @x.com", "ana@x.123", "ana@[127.0.0.1]"]


@pytest.mark.parametrize("email", AGREED_EMAILS)
def test_email_rule_agrees_with_email_validator(email):
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(email, check_deliverability=False)
        expected = {}
    except EmailNotValidError:
        expected = {"email.invalid": WARNING}
    assert codes(check_customer(changed(PERSON, email=email))) == expected


@pytest.mark.parametrize("email", ["joão@example.com", "ana@example.c"])
def test_email_rule_is_stricter_than_rfc_where_invoices_are(email):
    """Deliberate differences: ERPs and the NF-e take ASCII addresses (RFC 6531 allows accents), and no
    top-level domain has one letter."""
    assert codes(check_customer(changed(PERSON, email=email))) == {"email.invalid": WARNING}


def test_problems_are_immutable_because_memoized_ones_are_shared():
    import dataclasses

    first = check_customer(changed(PERSON, city="Campinas"))[0]
    second = check_customer(changed(PERSON, id="other", city="Campinas"))[0]
    assert first == second
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.message = "changed"

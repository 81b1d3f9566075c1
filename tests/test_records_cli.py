"""`records check FILE [--erp NAME]` driven through click's CliRunner: output, order, exit codes."""
from __future__ import annotations

import json
from typing import ClassVar

import pytest
from click.testing import CliRunner

from integrations import registry
from integrations.base import Connector, RecordRequirement
from webapp.records_cli import records

GOOD = {"id": "a1", "person_type": "PF", "name": "Ana Souza", "tax_id": "52998224725", "state_registration": "",
        "email": "ana@example.com", "phone": "", "zip_code": "01310-100", "street": "Avenida Paulista",
        "number": "1000", "complement": "", "district": "Bela Vista", "city": "São Paulo",
        "city_ibge_code": "3550308", "state": "SP"}
WARNING_ONLY = {**GOOD, "id": "b2", "number": ""}
BROKEN = {**GOOD, "id": 3, "tax_id": "52998224724", "zip_code": "20040-020"}


class StrictErp(Connector):
    """A connector declared here so the --erp path runs through the real registry lookup."""

    name = "strict_test_erp"
    label = "Strict test ERP"
    record_requirements: ClassVar = (
        RecordRequirement("name", "strict.name_too_long", "error", "Strict keeps 5 characters of the name.",
                          max_length=5),
    )


@pytest.fixture
def runner():
    return CliRunner()


def write(tmp_path, data, name="customers.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_report_shape_and_order_with_errors_exit_1(runner, tmp_path):
    result = runner.invoke(records, ["check", write(tmp_path, [BROKEN, GOOD, WARNING_ONLY])])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [entry["id"] for entry in report] == [3, "a1", "b2"]
    assert all(set(entry) == {"id", "problems"} for entry in report)
    assert {p["code"] for p in report[0]["problems"]} == {"tax_id.invalid_cpf", "zip_code.outside_state"}
    assert report[1]["problems"] == []
    [warning] = report[2]["problems"]
    assert set(warning) == {"field", "code", "severity", "message"}
    assert (warning["field"], warning["code"], warning["severity"]) == ("number", "number.missing", "warning")


def test_warnings_only_exit_0(runner, tmp_path):
    result = runner.invoke(records, ["check", write(tmp_path, [GOOD, WARNING_ONLY])])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2


def test_empty_list_exit_0(runner, tmp_path):
    result = runner.invoke(records, ["check", write(tmp_path, [])])
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_dash_reads_stdin(runner):
    result = runner.invoke(records, ["check", "-"], input=json.dumps([GOOD, BROKEN]))
    assert result.exit_code == 1
    assert [entry["id"] for entry in json.loads(result.stdout)] == ["a1", 3]


def test_accents_are_kept_readable_in_the_output(runner, tmp_path):
    result = runner.invoke(records, ["check", write(tmp_path, [{**GOOD, "city": "São Carlos"}])])
    assert result.exit_code == 1
    assert "São Carlos" in result.stdout


@pytest.mark.parametrize("content, says", [
    ("{not json", "is not JSON"),
    (json.dumps({"customers": [GOOD]}), "not a list"),
    (json.dumps([GOOD, "a2"]), "item 1"),
    (json.dumps([GOOD, None]), "item 1"),
    ("", "is not JSON"),
])
def test_unusable_content_exit_2(runner, tmp_path, content, says):
    result = runner.invoke(records, ["check", write(tmp_path, content)])
    assert result.exit_code == 2
    assert says in result.stderr and result.stdout == ""


def test_missing_file_and_directory_exit_2(runner, tmp_path):
    missing = runner.invoke(records, ["check", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    directory = runner.invoke(records, ["check", str(tmp_path)])
    assert directory.exit_code == 2 and "directory" in directory.stderr


def test_not_utf8_exit_2(runner, tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps([{**GOOD, "city": "São Paulo"}], ensure_ascii=False).encode("latin-1"))
    result = runner.invoke(records, ["check", str(path)])
    assert result.exit_code == 2 and "UTF-8" in result.stderr


def test_unknown_erp_exit_2_lists_known_ones(runner, tmp_path):
    result = runner.invoke(records, ["check", write(tmp_path, [GOOD]), "--erp", "no_such_erp"])
    assert result.exit_code == 2
    assert "no_such_erp" in result.stderr
    for known in registry.CONNECTORS:
        assert known in result.stderr
    assert result.stdout == ""


def test_erp_requirements_are_applied(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(registry.CONNECTORS, StrictErp.name, f"{__name__}:StrictErp")
    path = write(tmp_path, [GOOD, {**GOOD, "id": "short", "name": "Ana"}])
    plain = runner.invoke(records, ["check", path])
    assert plain.exit_code == 0
    strict = runner.invoke(records, ["check", path, "--erp", StrictErp.name])
    assert strict.exit_code == 1
    first, second = json.loads(strict.stdout)
    assert [p["code"] for p in first["problems"]] == ["strict.name_too_long"]
    assert second["problems"] == []


def test_each_registered_erp_loads(runner, tmp_path):
    path = write(tmp_path, [GOOD])
    for name in registry.CONNECTORS:
        result = runner.invoke(records, ["check", path, "--erp", name])
        assert result.exit_code in (0, 1), (name, result.stderr)
        assert [entry["id"] for entry in json.loads(result.stdout)] == ["a1"]


def test_missing_argument_is_a_usage_error(runner):
    result = runner.invoke(records, ["check"])
    assert result.exit_code == 2

"""`flask records check FILE [--erp NAME]`: the customer health check on a JSON file, for support.

Support gets a clinic's export (or a sample pasted from a ticket) and wants to know, before any sync,
which customers will fail to bill and why. Output is JSON on stdout, one entry per input record in
input order, so it can be piped to jq or diffed. Exit codes let scripts branch: 0 no record has an
error, 1 some do, 2 the input (or the ERP name) could not be used.

Only click is imported at module level: the Flask app registers the group with
`app.cli.add_command(records)`, and this module must not import the app back.
"""
from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from webapp.health import check_many, has_errors

EXIT_CLEAN = 0
EXIT_ERRORS = 1
EXIT_UNUSABLE = 2


@click.group("records")
def records() -> None:
    """Customer records: check them against the invoice rules."""


@records.command("check")
@click.argument("file", type=str)
@click.option("--erp", "erp", default=None, metavar="NAME",
              help="Also apply what this ERP demands of a customer (its connector's record requirements).")
def check(file: str, erp: str | None) -> None:
    """Check the customers in FILE (a JSON list of objects; - reads stdin) and print their problems."""
    requirements = _requirements_of(erp) if erp else ()
    customers = _load_customers(file)
    problem_lists = check_many(customers, requirements)
    report = [{"id": customer.get("id"), "problems": [p.to_dict() for p in problems]}
              for customer, problems in zip(customers, problem_lists)]
    click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    sys.exit(EXIT_ERRORS if any(has_errors(p) for p in problem_lists) else EXIT_CLEAN)


def _fail(message: str) -> NoReturn:
    """Unusable input: say why on stderr and exit 2, with nothing on stdout to be mistaken for a report."""
    click.echo(f"records check: {message}", err=True)
    sys.exit(EXIT_UNUSABLE)


def _requirements_of(erp: str) -> tuple:
    """The ERP's record requirements, from the registry (the connector's module is imported lazily)."""
    from integrations import registry

    try:
        return tuple(registry.connector_class(erp).record_requirements)
    except KeyError:
        _fail(f"unknown ERP {erp!r}; known ERPs: {', '.join(sorted(registry.CONNECTORS))}")
    except ImportError as exc:
        _fail(f"the {erp} connector could not be loaded ({exc})")


def _load_customers(file: str) -> list[dict[str, Any]]:
    """The JSON list of customer objects in FILE, or exit 2 saying what is wrong with it."""
    text = _read_text(file)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{_shown(file)} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    if not isinstance(data, list):
        _fail(f"{_shown(file)} holds a JSON {_json_type(data)}, not a list of customer objects")
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            _fail(f"item {position} of {_shown(file)} is a JSON {_json_type(item)}, not a customer object")
    return data


def _read_text(file: str) -> str:
    """FILE's text, or stdin for `-`."""
    try:
        with click.open_file(file, encoding="utf-8") as handle:
            return handle.read()
    except IsADirectoryError:
        _fail(f"{file} is a directory, not a JSON file")
    except FileNotFoundError:
        _fail(f"{file} does not exist")
    except UnicodeDecodeError:
        _fail(f"{_shown(file)} is not UTF-8 text")
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")


def _shown(file: str) -> str:
    return "stdin" if file == "-" else file


def _json_type(value: Any) -> str:
    """JSON's name for a decoded value's type, the words the person who wrote the file knows."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")

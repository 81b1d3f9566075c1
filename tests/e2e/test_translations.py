"""The Portuguese catalog keeps up with the pages: every string marked for translation in webapp/ has a
pt-BR translation, placeholders match, and the texts translated by key (capabilities, features) cover
every value the connectors can declare. No browser needed; it lives with the browser tests because both
check what a person reads."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from babel.messages.pofile import read_po

from integrations.base import CAPABILITY_TEXT, FEATURE_LABELS, Capability, Feature

from .conftest import ROOT

PO = ROOT / "translations" / "pt_BR" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extract(tmp_path):
    """What `pybabel extract` finds in the sources today (the command of translations/README.md)."""
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "translations/babel.cfg",
                    "-k", "_l", "-k", "lazy_gettext", "-k", "lazy_pgettext:1c,2", "-k", "N_", "--no-location",
                    "-o", str(pot), "."], cwd=ROOT, check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    with pot.open("rb") as fh:
        return read_po(fh)


def test_every_page_string_has_a_portuguese_translation(tmp_path):
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="pt_BR")
    missing, wrong = [], []
    for msg in extract(tmp_path):
        if not msg.id:
            continue
        connector_note = any("connector note" in c for c in msg.auto_comments)
        entry = catalog.get(msg.id, context=msg.context)
        strings = entry.string if entry is not None and isinstance(entry.string, tuple) else (
            (entry.string,) if entry is not None else ("",))
        if entry is None or not all(strings) or entry.fuzzy:
            if not connector_note:  # a connector's new note shows in English until translated
                missing.append((msg.context, msg.id))
            continue
        ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        for s in strings:
            if set(PLACEHOLDER.findall(s)) != wanted:
                wrong.append((msg.id, s))
    assert missing == [], "translate these in translations/pt_BR/LC_MESSAGES/messages.po: " + repr(missing)
    assert wrong == [], wrong


def test_texts_translated_by_key_cover_every_declared_value():
    from webapp.i18n import CAPABILITY_TEXT as SHOWN, FEATURE_LABELS as SHOWN_FEATURES
    assert set(SHOWN) == {c.value for c in Capability}
    for cap, (yes, no) in CAPABILITY_TEXT.items():  # the English page says exactly what the connector says
        assert (SHOWN[cap.value][0]._args[0], SHOWN[cap.value][1]._args[0]) == (yes, no), cap
    assert set(SHOWN_FEATURES) == {f.value for f in Feature}
    for feature, text in FEATURE_LABELS.items():
        assert SHOWN_FEATURES[feature.value]._args[0] == text, feature


def test_brazilian_formats():
    from datetime import date, datetime
    from webapp.formatting import br_date, money, quantity, sync_chart, tax_id
    assert money("1234.56") == "R$ 1.234,56" and money(-0.5) == "-R$ 0,50" and money(None) == ""
    assert tax_id("12ABC34501DE35") == "12.ABC.345/01DE-35"
    assert tax_id("11222333000181") == "11.222.333/0001-81" and tax_id("52998224725") == "529.982.247-25"
    assert tax_id("123") == "123"  # no mask over a wrong number
    assert br_date(date(2026, 1, 2)) == "02/01/2026" and br_date("2026-12-25") == "25/12/2026"
    assert br_date(datetime(2026, 7, 1, 15, 30)) == "01/07/2026 12:30"  # stored UTC, shown in Brasília time
    assert quantity("1.0000") == "1" and quantity("2.50") == "2,5"
    chart = sync_chart([{"day": "2026-11-20", "created": 3, "updated": 5, "failed": 1}], today=date(2026, 11, 25))
    assert len(chart["bars"]) == 30 and chart["totals"] == {"created": 3, "updated": 5, "failed": 1}
    day = next(b for b in chart["bars"] if b["day"] == date(2026, 11, 20))
    assert [s["series"] for s in day["segments"]] == ["created", "updated", "failed"] and chart["top"] >= 9

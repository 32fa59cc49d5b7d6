"""The external evaluation set (tests/data/labeler/external): format, the No Finding rule, the split.

Written by two annotators who never read the labeler's code or the development set (issue 15);
their decisions are in w1-decisions.md / w2-decisions.md and GUIDELINES.md section 13. The texts
are kept as written, real reports' quirks included (empty reports, surrounding blank lines, times
of day, placeholder names such as "Dr. X"); the labels are checked as the development set's are.
The split into tuning and held-out parts is drawn once from the ids and recorded in split.tsv: a
changed split fails here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chexpert.schema import OBSERVATIONS
from tests.conftest import GOLD_TAGS as TAGS

DATA = Path(__file__).parent / "data" / "labeler" / "external"
FILES = {"w1.jsonl": "w1-", "w2.jsonl": "w2-"}
KEYS = ("id", "text", "labels", "tags", "note")
STATES = (1.0, 0.0, -1.0)
NO_FINDING = "No Finding"
PATHOLOGIES = tuple(name for name in OBSERVATIONS if name not in (NO_FINDING, "Support Devices"))
#: Dates would mean a report was not de-identified (times of day and placeholders are kept, as in MIMIC).
DATES = re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b(?:19|20)\d{2}\b")


def load(name: str) -> list[dict[str, Any]]:
    text = (DATA / name).read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text, f"{name}: lines must end with a single \\n"
    return [json.loads(line) for line in text.split("\n")[:-1]]


def split_part(report_id: str) -> str:
    """As bench/labeler.py draws it: a seeded hash of the id, about 60% tuning."""
    digest = hashlib.sha256(f"chexpert labeler external set, issue 15: {report_id}".encode()).hexdigest()
    return "tuning" if int(digest[:8], 16) / 2**32 < 0.6 else "held-out"


@pytest.mark.parametrize("name", FILES)
def test_records_are_well_formed(name: str) -> None:
    records = load(name)
    assert len(records) == 150
    for number, record in enumerate(records, start=1):
        where = f"{name} line {number}"
        assert list(record) == [key for key in KEYS if key in record], f"{where}: keys {list(record)}"
        assert record["id"] == f"{FILES[name]}{number:04d}", where
        assert isinstance(record["text"], str), where
        labels = record["labels"]
        assert list(labels) == [o for o in OBSERVATIONS if o in labels], f"{where}: labels not in train.csv order"
        assert all(type(v) is float and v in STATES for v in labels.values()), where
        assert isinstance(record["tags"], list) and set(record["tags"]) <= TAGS, f"{where}: tags {record['tags']}"
        assert DATES.search(record["text"]) is None, f"{where}: a date"


def test_no_finding_follows_the_rule_and_empty_reports_are_blank() -> None:
    for name in FILES:
        for record in load(name):
            labels, where = record["labels"], record["id"]
            if not record["text"].strip():
                assert labels == {}, f"{where}: an empty report is blank throughout"
                continue
            finding = any(labels.get(o) in (1.0, -1.0) for o in PATHOLOGIES) or "other-abnormality" in record["tags"]
            assert labels.get(NO_FINDING) == (None if finding else 1.0), where


def test_texts_are_unique_and_every_style_is_there() -> None:
    records = [record for name in FILES for record in load(name)]
    texts = Counter(" ".join(r["text"].lower().split()) for r in records if r["text"].strip())
    assert [t for t, c in texts.items() if c > 1] == []
    joined = [r["text"] for r in records]
    assert sum("XXXX" in t for t in joined) >= 20 and sum("___" in t for t in joined) >= 20
    assert sum("NARRATIVE:" in t for t in joined) >= 20  # CheXpert Plus sections
    assert sum(not t.strip() for t in joined) >= 1  # empty reports


def test_the_split_is_the_one_drawn_and_recorded() -> None:
    lines = (DATA / "split.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tpart"
    recorded = dict(line.split("\t") for line in lines[1:])
    ids = [record["id"] for name in FILES for record in load(name)]
    assert sorted(recorded) == sorted(ids)
    assert all(recorded[i] == split_part(i) for i in ids)
    parts = Counter(recorded.values())
    assert 0.55 <= parts["tuning"] / len(ids) <= 0.65


def test_first_contact_is_stored() -> None:
    stored = json.loads((DATA / "first_contact.json").read_text(encoding="utf-8"))
    assert stored["commit"] == "0a9d14e"
    assert set(stored["scores"]) == {"all", "tuning", "held-out"}
    assert (DATA / "FIRST_CONTACT.md").is_file()

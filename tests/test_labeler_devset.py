"""The report labeler's annotated development set (tests/data/labeler): format, invariants, coverage.

The rules checked here are written in tests/data/labeler/GUIDELINES.md; a broken edit of the gold
labels fails here. ``python tests/test_labeler_devset.py`` prints the coverage table.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chexpert.schema import OBSERVATIONS
from tests.conftest import GOLD_TAGS as TAGS

DATA = Path(__file__).parent / "data" / "labeler"
FILES = {"sentences.jsonl": "s", "reports.jsonl": "r"}
MINIMUM_RECORDS = {"sentences.jsonl": 400, "reports.jsonl": 100}
STATES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}
NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"
PATHOLOGIES = tuple(name for name in OBSERVATIONS if name not in (NO_FINDING, SUPPORT_DEVICES))
KEYS = ("id", "text", "labels", "tags", "note")
#: Cases per observation and state across both files (Support Devices and Fracture uncertain, the rare ones, included).
MINIMUM_PER_STATE = 10
MINIMUM_PER_TAG = 5
#: Dates, times and titled names would mean a case was not de-identified.
IDENTIFYING = re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b(?:19|20)\d{2}\b|\b\d{1,2}:\d{2}\b|\b(?:Dr|Mr|Mrs|Ms)\.? [A-Z]")


def load(name: str) -> list[dict[str, Any]]:
    """Every record of one file, in order; malformed lines raise with the file and line number."""
    records = []
    raw = (DATA / name).read_bytes()
    text = raw.decode("utf-8")
    if not text.endswith("\n") or "\r" in text:
        raise ValueError(f"{name}: lines must end with a single \\n, the last one too")
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name} line {number}: not JSON: {error}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{name} line {number}: not a JSON object")
        records.append(record)
    return records


def all_records() -> list[dict[str, Any]]:
    return [record for name in FILES for record in load(name)]


def coverage(records: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Observation -> Counter of state names over ``records``."""
    table: dict[str, Counter[str]] = {name: Counter() for name in OBSERVATIONS}
    for record in records:
        for name, value in record["labels"].items():
            table[name][STATES[value]] += 1
    return table


def coverage_table() -> str:
    """The per-observation, per-state counts of each file and both together, as aligned text."""
    parts = {name: coverage(load(name)) for name in FILES}
    total = coverage(all_records())
    lines = [
        f"{'observation':<28}"
        + "".join(f"{f'{file[0]}:{state[:3]}':>8}" for file in FILES for state in STATES.values())
        + "".join(f"{state:>11}" for state in STATES.values())
    ]
    for name in OBSERVATIONS:
        cells = "".join(f"{parts[file][name][state]:>8}" for file in FILES for state in STATES.values())
        lines.append(f"{name:<28}{cells}" + "".join(f"{total[name][state]:>11}" for state in STATES.values()))
    counts = ", ".join(f"{file}: {len(load(file))}" for file in FILES)
    tags = Counter(tag for record in all_records() for tag in record["tags"])
    lines.append(f"records: {counts}")
    lines.append("tags: " + ", ".join(f"{tag} {count}" for tag, count in sorted(tags.items())))
    return "\n".join(lines)


@pytest.mark.parametrize("name", FILES)
def test_records_are_well_formed(name: str) -> None:
    records = load(name)
    prefix = FILES[name]
    for number, record in enumerate(records, start=1):
        where = f"{name} line {number}"
        assert list(record) == [key for key in KEYS if key in record], f"{where}: keys {list(record)} are not {KEYS} in order"
        assert {"id", "text", "labels", "tags"} <= set(record), f"{where}: id, text, labels and tags are required"
        assert record["id"] == f"{prefix}{number:04d}", f"{where}: id {record['id']!r}, expected {prefix}{number:04d} (ids run in file order)"
        text = record["text"]
        assert isinstance(text, str) and text.strip() == text and text, f"{where}: text must be a non-empty string without surrounding space"
        assert "\t" not in text and "\r" not in text, f"{where}: tabs or carriage returns in the text"
        labels = record["labels"]
        assert isinstance(labels, dict), f"{where}: labels must be an object"
        for observation, value in labels.items():
            assert observation in OBSERVATIONS, f"{where}: unknown observation {observation!r} (spell it as in train.csv)"
            assert type(value) is float and value in STATES, f"{where}: {observation} is {value!r}, not 1.0, 0.0 or -1.0"
        assert list(labels) == [name for name in OBSERVATIONS if name in labels], f"{where}: labels not in train.csv column order"
        tags = record["tags"]
        assert isinstance(tags, list) and len(set(tags)) == len(tags), f"{where}: tags must be a list without repeats"
        assert set(tags) <= TAGS, f"{where}: unknown tags {sorted(set(tags) - TAGS)}"
        if "note" in record:
            assert isinstance(record["note"], str) and record["note"].strip(), f"{where}: an empty note"
        identifying = IDENTIFYING.search(text)
        assert identifying is None, f"{where}: {identifying.group(0)!r} looks like a date, time or name (write ___)"


@pytest.mark.parametrize("name", FILES)
def test_texts_are_unique(name: str) -> None:
    texts = Counter(" ".join(record["text"].lower().split()) for record in load(name))
    repeated = [text for text, count in texts.items() if count > 1]
    assert not repeated, f"{name}: the same text twice: {repeated[:3]}"


def test_no_finding_follows_the_rule() -> None:
    """No Finding is 1.0 exactly when nothing but devices is positive or uncertain and no other abnormality is tagged."""
    for record in all_records():
        labels = record["labels"]
        finding = any(labels.get(name) in (1.0, -1.0) for name in PATHOLOGIES) or "other-abnormality" in record["tags"]
        expected = None if finding else 1.0
        assert labels.get(NO_FINDING) == expected, f"{record['id']}: No Finding {labels.get(NO_FINDING)}, the rule gives {expected} ({record['text'][:60]!r})"


def test_tags_agree_with_labels() -> None:
    for record in all_records():
        labels, tags, where = record["labels"], set(record["tags"]), record["id"]
        values = set(labels.values())
        assert ("negation" in tags) == (0.0 in values), f"{where}: the negation tag marks exactly the cases with a 0.0"
        assert ("uncertainty" in tags) == (-1.0 in values), f"{where}: the uncertainty tag marks exactly the cases with a -1.0"
        assert ("device" in tags) == (SUPPORT_DEVICES in labels), f"{where}: the device tag marks exactly the cases with Support Devices"
        if "chf" in tags:
            # GUIDELINES.md section 9: CHF is an Edema mention and makes Cardiomegaly at least uncertain.
            assert labels.get("Cardiomegaly") in (1.0, -1.0) and labels.get("Edema") in (1.0, -1.0), f"{where}: CHF without Cardiomegaly and Edema 1.0/-1.0"
        if "other-abnormality" in tags:
            assert NO_FINDING not in labels, f"{where}: an other abnormality leaves No Finding blank"
        if "indication" in tags:
            assert where.startswith("r"), f"{where}: only whole reports have context sections"


@pytest.mark.parametrize("name", FILES)
def test_minimum_records(name: str) -> None:
    assert len(load(name)) >= MINIMUM_RECORDS[name]


def test_every_observation_and_state_is_covered() -> None:
    table = coverage(all_records())
    print("\n" + coverage_table())
    short = [
        f"{name} {state} {table[name][state]}"
        for name in OBSERVATIONS
        if name != NO_FINDING
        for state in STATES.values()
        if table[name][state] < MINIMUM_PER_STATE
    ]
    assert not short, f"fewer than {MINIMUM_PER_STATE} cases: {short}"
    assert table[NO_FINDING]["positive"] >= MINIMUM_PER_STATE
    assert table[NO_FINDING]["negative"] == table[NO_FINDING]["uncertain"] == 0, "No Finding is 1.0 or blank"
    tags = Counter(tag for record in all_records() for tag in record["tags"])
    rare = {tag: tags[tag] for tag in TAGS if tags[tag] < MINIMUM_PER_TAG}
    assert not rare, f"tags used fewer than {MINIMUM_PER_TAG} times: {rare}"


def test_reports_look_like_reports() -> None:
    """Typical length, section headings, numbered lists and run-on sentences are all represented."""
    reports = load("reports.jsonl")
    words = [len(record["text"].split()) for record in reports]
    assert 50 <= statistics.median(words) <= 150, f"median report length {statistics.median(words)} words"
    assert min(words) >= 10 and max(words) <= 300
    headed = sum(bool(re.search(r"\b(?:FINDINGS|IMPRESSION)\s*:", record["text"], re.IGNORECASE)) for record in reports)
    numbered = sum(bool(re.search(r"(?:^|\s)1[.)]\s*\S.*?(?:^|\s)2[.)]\s*\S", record["text"], re.DOTALL)) for record in reports)
    run_on = sum(bool(re.search(r"[a-z]\.[A-Z]", record["text"])) for record in reports)
    assert headed >= len(reports) // 2, f"only {headed} reports with FINDINGS:/IMPRESSION: headings"
    assert numbered >= 15, f"only {numbered} reports with numbered lists"
    assert run_on >= 10, f"only {run_on} reports with a missing space after a period"


if __name__ == "__main__":
    print(coverage_table())

"""The labeler's work is linear in the length of a report, and bounded per report (issue 14).

No timing assertion: each pathological report is labelled in a child process given a generous
limit that a linear labeler meets with a wide margin on a loaded machine, while the quadratic
(or worse) code this replaced needed minutes to hours for the same reports (20,000 dots: 12 s;
"no effusion " 20,000 times: 39 s; "effusion or " 4,000 times: 77 s, cubic). The work is also
checked by counting: a decision looks at a bounded number of triggers however long its sentence.
"""

from __future__ import annotations

import subprocess
import sys

from chexpert.labeler import label_report
from chexpert.labeler.negation import decide, find_triggers
from chexpert.labeler.sentences import LONGEST, split
from chexpert.schema import LONGEST_REPORT

# Runs of punctuation, repeated phrases without a full stop, lists of alternatives, hedges, spaces.
UNITS = (
    ".", "?", "no effusion ", "effusion or ", "no effusion, ", "possible effusion ", "heart size enlarged ", "\n",
    "IMPRESSION" + " " * 40, "? effusion ", "effusion vs ", "clinical\nhistory ", "air" + " " * 30 + "-" + " " * 30,
)  # fmt: skip

CHILD = """
import sys
from chexpert.labeler import label_report, label_reports
for unit in {units!r}:
    text = "effusion " + unit * (1_000_000 // len(unit)) + "a effusion"
    label_reports([text], sections="report")
label_report(text)
print("done")
"""


def test_pathological_reports_of_1_mb_finish_in_linear_time() -> None:
    code = CHILD.format(units=UNITS)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"


def test_a_report_is_read_up_to_its_bound() -> None:
    text = "No effusion. " + "x " * LONGEST_REPORT + "Large pneumothorax."
    result = label_report(text, sections="report")
    assert result["Pleural Effusion"].value == 0.0
    assert result["Pneumothorax"].value is None  # beyond the bound: not read
    assert max(end for _, end in result.spans) <= LONGEST_REPORT
    assert f"of {len(text):,} characters" in result.explain()  # said, not silent


def test_a_run_on_sentence_is_cut_into_clauses() -> None:
    text = "no effusion, " * 1000
    pieces = split(text)
    assert len(pieces) > 1
    assert all(b - a <= LONGEST for a, b in pieces)
    assert "".join(text[a:b] for a, b in pieces).replace(" ", "") == text.replace(" ", "")


class _Counting(list):
    """A list of triggers that counts how many of its items are looked at."""

    looked = 0

    def __getitem__(self, index):
        item = super().__getitem__(index)
        _Counting.looked += len(item) if isinstance(index, slice) else 1
        return item

    def __iter__(self):
        for item in super().__iter__():
            _Counting.looked += 1
            yield item

    def __reversed__(self):
        for item in super().__reversed__():
            _Counting.looked += 1
            yield item


def test_a_decision_looks_at_a_bounded_number_of_triggers() -> None:
    per_mention = []
    for repeats in (50, 400):
        sentence = "effusion or " * repeats
        triggers = _Counting(find_triggers(sentence))
        mentions = [(i * 12, i * 12 + 8) for i in range(repeats)]
        _Counting.looked = 0
        values = {decide(sentence, triggers, mentions, i).value for i in range(repeats)}
        assert values == {-1.0}
        per_mention.append(_Counting.looked / repeats)
    assert per_mention[1] < per_mention[0] * 1.5  # constant per mention, not growing with the sentence

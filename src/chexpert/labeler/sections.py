"""Report sections: find the headings, choose the text to label.

A heading is a known section name followed by a colon at the start of a line or of a sentence
("FINDINGS:", "Impression:", inline "... stable. IMPRESSION: ..."), or a known name alone on its
line ("IMPRESSION"). Names that no list knows ("LUNGS:", "Lines/tubes:") are subheadings of the
section they stand in and stay part of it.

Choosing (``sections=``):

- ``impression``: the impression (also "conclusion", "opinion"); the findings when
  the report has no impression, the report when it has neither: what the original labeler read;
- ``findings``: the findings; the impression when there are none, then the report;
- ``report``: every section except those that say why and how the study was made (indication,
  history, reason, comparison, technique, examination, procedure): their "evaluate for pneumonia"
  names what was suspected, not what was seen. Recommendations, notifications and addenda are read.

>>> text = "INDICATION: cough. FINDINGS: Small left effusion. IMPRESSION: Effusion."
>>> [text[a:b] for a, b in select(text, "findings")[1]]
['Small left effusion.']
>>> select(text, "impression")[0], [text[a:b] for a, b in select(text, "report")[1]]
('impression', ['Small left effusion.', 'Effusion.'])
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from chexpert.labeler.phrases import PhraseMatcher, normalize
from chexpert.validation import check_choice

__all__ = ["SECTIONS", "Section", "find_sections", "select"]

#: The choices of :func:`select` (and of ``chexpert label --sections``).
SECTIONS: Final[tuple[str, ...]] = ("impression", "findings", "report")


IMPRESSION, FINDINGS, CONTEXT, OTHER, PREAMBLE = "impression", "findings", "context", "other", "preamble"

_HEADINGS: Final[dict[str, str]] = {
    **dict.fromkeys(
        (
            "impression",
            "impressions",
            "conclusion",
            "conclusions",
            "opinion",
            "final impression",
            "impression and recommendation",
            "impression and recommendations",
            "impression/recommendation",
            "impression/recommendations",
            "assessment",
            "interpretation",
            "diagnosis",
            "findings and impression",
            "findings/impression",
            "impression and findings",
            "findings and impressions",
            "findings/impressions",
        ),
        IMPRESSION,
    ),
    **dict.fromkeys(
        ("findings", "finding", "report", "description", "results", "result", "observations", "body", "report text", "findings narrative"),
        FINDINGS,
    ),
    **dict.fromkeys(
        (
            "recommendation",
            "recommendations",
            "notification",
            "addendum",
            "wet read",
            "comment",
            "comments",
            "note",
            "narrative",
            "end of impression",
            "summary",
            "summary of findings",
        ),
        OTHER,
    ),
    **dict.fromkeys(
        (
            "history",
            "clinical history",
            "indication",
            "indications",
            "reason for exam",
            "reason for examination",
            "reason for study",
            "reason for the exam",
            "reason",
            "clinical information",
            "clinical indication",
            "clinical data",
            "clinical details",
            "clinical notes",
            "clinical",
            "comparison",
            "comparisons",
            "technique",
            "procedure",
            "examination",
            "exam",
            "exam type",
            "study",
            "type of study",
            "accession number",
            "accession",
            "history/indication",
            "indication/history",
            "clinical history/indication",
            "reason for exam/indication",
            "exam/history",
            "patient history",
            "medical history",
            "prior studies",
            "prior",
            "priors",
            "views",
            "view",
            "technique/comparison",
            "comparison/technique",
            "examination/procedure",
            "procedure/examination",
            "ordering physician",
            "referring physician",
            "dictated by",
            "signed by",
            "electronically signed by",
            "attending",
            "resident",
            "radiologist",
            "date",
            "exam date",
            "study date",
            "final report",
            "contrast",
            "dose",
            "request",
            "clinical question",
            "question",
            "question to be answered",
            "mrn",
            "location",
        ),
        CONTEXT,
    ),
}
# Findings and impression in one heading: both kinds at once.
_BOTH: Final = frozenset({"findings and impression", "findings/impression", "impression and findings", "findings and impressions", "findings/impressions"})

# Names alone on their line are headings too, for the sections a labeller needs.
_LINE_HEADINGS: Final = frozenset(
    {
        "impression",
        "impressions",
        "findings",
        "conclusion",
        "conclusions",
        "summary",
        "history",
        "indication",
        "comparison",
        "technique",
        "final report",
        "report",
        "addendum",
        "findings and impression",
        "opinion",
    }
)


def _names(names: Iterable[str]) -> str:
    # A trie, so that "clinical history" is not cut at "clinical" and each position costs little.
    return PhraseMatcher(dict.fromkeys(names, "")).pattern.pattern


# A known name after a line break or a sentence's end (the text is searched with a line break put
# before it, so that every branch starts by consuming a character: the regex engine then skips
# ahead to candidates), then a colon; or, for a few names, alone on their line. Runs of spaces are
# taken possessively: a name followed by a long run of spaces and no colon costs one pass, not one
# pass per space. (A run of dots costs a failed attempt per dot, about a microsecond: linear.)
_HEADING: Final = re.compile(
    rf"[\n.;!?][ \t]*+(?:(?P<name>{_names(_HEADINGS)})[ \t]*+(?:\(pfi\)[ \t]*+)?:"
    rf"|(?P<line>{_names(_LINE_HEADINGS)})[ \t]*+(?=\r?\n|$))",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Section:
    """One section of a report: its kind, its heading as written, the span of its text."""

    kind: str  # impression, findings, context, or preamble (text before the first heading)
    heading: str
    start: int
    end: int


def find_sections(text: str) -> list[Section]:
    """The sections of ``text`` in order; text before the first heading is the ``preamble``.

    >>> [(s.kind, s.heading) for s in find_sections("EXAM: CXR\\nFINDINGS: Clear.\\nIMPRESSION\\nNormal.")]
    [('context', 'EXAM'), ('findings', 'FINDINGS'), ('impression', 'IMPRESSION')]
    """
    headings: list[tuple[int, int, str, str]] = []  # heading start, text start, kind, name
    for match in _HEADING.finditer("\n" + text):
        name = match.group("name") or match.group("line")
        key = normalize(name)
        kind = IMPRESSION + "+" + FINDINGS if key in _BOTH else _HEADINGS[key]
        start = (match.start("name") if match.group("name") else match.start("line")) - 1
        headings.append((start, match.end() - 1, kind, name))
    sections: list[Section] = []
    first = headings[0][0] if headings else len(text)
    if text[:first].strip():
        sections.append(Section(PREAMBLE, "", 0, first))
    for i, (_, body, kind, name) in enumerate(headings):
        end = headings[i + 1][0] if i + 1 < len(headings) else len(text)
        sections.append(Section(kind, name, body, end))
    return sections


def select(text: str, sections: str = "impression") -> tuple[str, list[tuple[int, int]]]:
    """Which part of the report is labelled, and its ``(start, end)`` spans in ``text``.

    Returns the part actually used (``impression``, ``findings`` or ``report``: a report without
    the asked section falls back as described in the module) and its non-empty spans.

    >>> select("No acute findings.", "impression")
    ('report', [(0, 18)])
    """
    check_choice("sections", sections, SECTIONS)
    found = find_sections(text)
    order = {"impression": (IMPRESSION, FINDINGS), "findings": (FINDINGS, IMPRESSION), "report": ()}[sections]
    for kind in order:
        spans = [(s.start, s.end) for s in found if kind in s.kind.split("+") and text[s.start : s.end].strip()]
        if spans:
            return kind, _trim(text, spans)
    spans = [(s.start, s.end) for s in found if s.kind != CONTEXT and text[s.start : s.end].strip()]
    return "report", _trim(text, spans)


def _trim(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            out.append((start, end))
    return out

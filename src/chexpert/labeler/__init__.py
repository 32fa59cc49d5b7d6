"""The report labeler: free-text chest radiograph reports to the 14 CheXpert observations.

CheXpert's semantics: positive (1.0) when mentioned without negation or uncertainty, negative
(0.0) when every mention is negated, uncertain (-1.0) when hedged, blank when not mentioned;
positive wins over uncertain, uncertain over negative; No Finding and the heart-failure rule as
the original labeler. Every label comes with the mentions, sentences, spans and triggers behind
it. No parser model, no download, no Java: pure Python and ``re``.

One module per step: :mod:`~chexpert.labeler.sections` (which part of the report),
:mod:`~chexpert.labeler.sentences`, :mod:`~chexpert.labeler.vocabulary` (what counts as a mention),
:mod:`~chexpert.labeler.mentions`, :mod:`~chexpert.labeler.negation` (negation and uncertainty),
:mod:`~chexpert.labeler.aggregation`, :mod:`~chexpert.labeler.explain` (what is returned),
:mod:`~chexpert.labeler.pipeline` (the steps in order) and :mod:`~chexpert.labeler.files`
(CSV files and folders of reports, streamed, in parallel).

>>> from chexpert.labeler import label_report
>>> label_report("No pneumothorax. Mild cardiomegaly.")["Cardiomegaly"].value
1.0
"""

from __future__ import annotations

from chexpert.labeler.explain import Mention, ObservationLabel, ReportLabels, Trigger
from chexpert.labeler.pipeline import LongReportWarning, label_report, label_reports, label_stream
from chexpert.labeler.sections import SECTIONS

__all__ = [
    "label_report",
    "label_reports",
    "label_stream",
    "LongReportWarning",
    "ReportLabels",
    "ObservationLabel",
    "Mention",
    "Trigger",
    "SECTIONS",
]

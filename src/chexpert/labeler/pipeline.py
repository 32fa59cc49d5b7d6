"""One report to its 14 labels: sections, sentences, mentions, negation and uncertainty, aggregation.

Pure Python and ``re``: the vocabulary and the triggers are each one compiled regex (a trie) run
once over the labelled text, so a typical report costs a handful of regex passes and a little
Python per mention. :func:`label_reports` takes the same steps without building the explanation.

>>> result = label_report("IMPRESSION: 1. Mild pulmonary edema.2. No pneumothorax.")
>>> {name: value for name, value in result.labels.items() if value is not None}
{'Edema': 1.0, 'Pneumothorax': 0.0}
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

import numpy as np

from chexpert.labeler.aggregation import Reading, aggregate
from chexpert.labeler.explain import Mention, ObservationLabel, ReportLabels, Trigger
from chexpert.labeler.mentions import find_mentions
from chexpert.labeler.negation import TriggerMatch, decide, find_triggers
from chexpert.labeler.phrases import flatten
from chexpert.labeler.sections import SECTIONS, select
from chexpert.labeler.sentences import split
from chexpert.labeler.vocabulary import OTHER, Term
from chexpert.parallel import Chunks, run_chunks
from chexpert.schema import LONGEST_REPORT, OBSERVATIONS, Code
from chexpert.validation import check_choice, check_int, check_type

__all__ = ["label_report", "label_reports", "label_stream", "labelled_chunks", "AHEAD_PER_WORKER", "CHUNK", "EMPTY", "LongReportWarning"]

_DEVICES: Final = ("Support Devices",)
_CODE: Final[dict[float | None, int]] = {1.0: Code.POSITIVE, 0.0: Code.NEGATIVE, -1.0: Code.UNCERTAIN, None: Code.BLANK}
_BLANK_ROW: Final = np.full(len(OBSERVATIONS), Code.BLANK, dtype=np.int8)
#: Reports handed to a worker at a time: enough that pickling is a small part of the work.
CHUNK: Final = 256


class _Found(NamedTuple):
    """One counted or excluded mention as read (offsets in the report)."""

    term: Term
    start: int
    end: int
    sentence: tuple[int, int]
    value: float
    trigger: TriggerMatch | None  # offsets relative to the sentence
    counted: bool


class LongReportWarning(UserWarning):
    """Some reports were longer than :data:`LONGEST_REPORT` characters and read only that far."""


def _bounded(text: str) -> str:
    """``text`` up to :data:`LONGEST_REPORT` characters, cut at a space where there is one."""
    if len(text) <= LONGEST_REPORT:
        return text
    cut = text.rfind(" ", LONGEST_REPORT // 2, LONGEST_REPORT)
    return text[: cut if cut > 0 else LONGEST_REPORT]


def _read(text: str, sections: str) -> tuple[str, list[tuple[int, int]], list[_Found]]:
    """Section, spans and every mention of one report, decided (its first LONGEST_REPORT characters)."""
    text = _bounded(text)
    section, spans = select(text, sections)
    flat = flatten(text)
    found: list[_Found] = []
    for span_start, span_end in spans:
        matches = find_mentions(flat, span_start, span_end)
        if not matches:
            continue
        starts = [a for a, _, _ in matches]
        for start, end in split(text, span_start, span_end):
            first = bisect.bisect_left(starts, start)
            last = bisect.bisect_left(starts, end, first)
            if first == last:
                continue
            local = [(a - start, b - start, term) for a, b, term in matches[first:last] if b <= end]
            counted = [m for m in local if not m[2].excluded]
            for a, b, term in local:
                if term.excluded:
                    found.append(_Found(term, start + a, start + b, (start, end), 1.0, None, False))
            if not counted:
                continue
            sentence = flat[start:end]
            triggers = find_triggers(sentence)
            offsets = [(a, b) for a, b, _ in counted]
            for i, (a, b, term) in enumerate(counted):
                decision = decide(sentence, triggers, offsets, i, attribute=term.attribute, device=term.observations == _DEVICES)
                if decision.finding:  # else an attribute that says nothing ("heart size is stable")
                    found.append(_Found(term, start + a, start + b, (start, end), decision.value, decision.trigger, True))
    return section, spans, found


def _readings(found: list[_Found]) -> tuple[list[Reading], list[tuple[_Found, str]]]:
    readings: list[Reading] = []
    owners: list[tuple[_Found, str]] = []
    for item in found:
        if not item.counted:
            continue
        term = item.term
        for k, observation in enumerate(term.observations):
            readings.append(Reading(observation, item.value, term.implies if k == 0 else ()))
            owners.append((item, observation))
    return readings, owners


def label_report(text: str, *, sections: str = "impression") -> ReportLabels:
    """Label one free-text chest radiograph report with the 14 CheXpert observations, explained.

    ``sections`` chooses what is read: ``impression`` (as the original labeler: the impression,
    else the findings, else the whole report), ``findings``, or ``report`` (every section but
    indication, history, comparison, technique, examination and procedure). An empty report is
    blank throughout. Labelling is linear in the length of the report, and a report longer than
    :data:`LONGEST_REPORT` characters is read to that point (``spans`` say what was read).

    >>> import chexpert
    >>> result = chexpert.label_report("FINDINGS: Heart size is normal. IMPRESSION: Right lower lobe opacity, likely pneumonia.")
    >>> result.section, result["Pneumonia"].value, result["Lung Opacity"].value, result["Cardiomegaly"].value
    ('impression', -1.0, 1.0, None)
    >>> print(result["Pneumonia"].mentions[0])
    'pneumonia' uncertain (uncertainty: 'likely') in 'Right lower lobe opacity, likely pneumonia.'
    """
    check_type("text", text, str, "the text of a report")
    check_choice("sections", sections, SECTIONS)
    if not text.strip():
        empty = tuple(ObservationLabel(name, None, (), "empty report") for name in OBSERVATIONS)
        return ReportLabels(text, sections, (), empty)
    section, spans, found = _read(text, sections)
    readings, owners = _readings(found)
    labels = aggregate(readings)
    mentions = [_mention(text, item, observation) for item, observation in owners]
    by_observation: dict[str, list[Mention]] = {}
    for mention in mentions:
        by_observation.setdefault(mention.observation, []).append(mention)
    for target, sources in labels.implied.items():
        for i in sources:
            source = mentions[i]
            rule = Trigger(source.text, source.span, "rule")
            by_observation.setdefault(target, []).append(source._replace_observation(target, -1.0, rule))
    observations = []
    for j, name in enumerate(OBSERVATIONS):
        evidence = [mentions[i] for i in labels.others] if j == 0 else by_observation.get(name, [])
        observations.append(ObservationLabel(name, labels.values[j], tuple(evidence), labels.reasons[j]))
    other = tuple(by_observation.get(OTHER, ()))
    excluded = tuple(_mention(text, item, "") for item in found if not item.counted)
    return ReportLabels(text, section, tuple(spans), tuple(observations), other, excluded)


def _mention(text: str, item: _Found, observation: str) -> Mention:
    start, end = item.sentence
    trigger = None
    if item.trigger is not None:
        t = item.trigger
        trigger = Trigger(text[start + t.start : start + t.end], (start + t.start, start + t.end), t.rule.kind)
    return Mention(observation, item.term.phrase, text[item.start : item.end], (item.start, item.end), text[start:end], item.sentence, item.value, trigger)


#: What :func:`labelled_chunks` reports as the part read: a position in SECTIONS, or EMPTY.
EMPTY: Final = len(SECTIONS)


def _codes(texts: list[str], sections: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes of many reports, and the part of each that was read (a position in SECTIONS, or EMPTY).

    The steps of :func:`label_report` without the explanation.
    """
    out = np.empty((len(texts), len(OBSERVATIONS)), dtype=np.int8)
    used = np.full(len(texts), EMPTY, dtype=np.int8)
    for i, text in enumerate(texts):
        if not text.strip():
            out[i] = _BLANK_ROW
            continue
        section, _, found = _read(text, sections)
        readings, _ = _readings(found)
        out[i] = [_CODE[value] for value in aggregate(readings).values]
        used[i] = SECTIONS.index(section)
    return out, used


def label_stream(texts: Iterable[str], *, sections: str = "impression", workers: int = 1, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Label ``texts`` in order, yielding one ``(n, 14)`` int8 array of codes per ``chunk`` reports.

    With ``workers`` > 1, chunks are labelled by that many processes; at most two chunks per
    worker are in flight, so memory stays bounded however long ``texts`` is.

    >>> [block.tolist() for block in label_stream(["No effusion.", ""], chunk=1)]  # doctest: +NORMALIZE_WHITESPACE
    [[[1, -2, -2, -2, -2, -2, -2, -2, -2, -2, 0, -2, -2, -2]], [[-2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2]]]
    """
    check_choice("sections", sections, SECTIONS)
    workers = check_int("workers", workers, low=1)
    chunk = check_int("chunk", chunk, low=1)
    return _codes_only(_batches(texts, chunk), sections, workers)


def _codes_only(batches: Iterator[list[str]], sections: str, workers: int) -> Iterator[np.ndarray]:
    # A generator, so that the pool starts on the first block and stops when the caller drops it.
    with labelled_chunks(batches, sections, workers) as results:
        for codes, _ in results:
            yield codes


#: Batches in flight per worker in :func:`labelled_chunks`: enough that a worker finding its next
#: batch queued never waits for this process, few enough that memory stays bounded.
AHEAD_PER_WORKER: Final = 2


def labelled_chunks(batches: Iterable[list[str]], sections: str, workers: int) -> Chunks[tuple[np.ndarray, np.ndarray]]:
    """``(codes, part read)`` per batch of reports, in order; batches go to ``workers`` processes.

    At most :data:`AHEAD_PER_WORKER` batches per worker are in flight, and ``batches`` is read no
    further ahead than that, so that a caller streaming a file keeps bounded memory. Use it in a
    ``with`` block: leaving it stops the workers (:func:`chexpert.parallel.run_chunks`, whose
    policy for signals and shutdown this follows).

    >>> with labelled_chunks(iter([["No effusion."]]), "impression", 1) as results:  # no section: the whole report (2)
    ...     [(codes.tolist(), used.tolist()) for codes, used in results]
    [([[1, -2, -2, -2, -2, -2, -2, -2, -2, -2, 0, -2, -2, -2]], [2])]
    """
    return run_chunks(_codes_of, iter(batches), workers=workers, state=sections, setup=_warm_up, ahead=AHEAD_PER_WORKER * workers)


def _codes_of(sections: str, batch: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return _codes(batch, sections)


def _warm_up(sections: str) -> str:
    """Compile the vocabulary in a worker before its first chunk; the worker's state is ``sections``."""
    _read("no effusion.", "report")
    return sections


def label_reports(texts: Iterable[str], *, sections: str = "impression", workers: int = 1) -> np.ndarray:
    """The labels of many reports as an ``(n, 14)`` int8 array of :class:`chexpert.Code` values.

    Columns follow :data:`chexpert.OBSERVATIONS`; blank is -2, as in the index, so that
    :func:`chexpert.apply_policy` takes the result as it is.

    A report longer than :data:`LONGEST_REPORT` characters is read to that point; how many were
    is said by one :class:`LongReportWarning` (never silently).

    >>> label_reports(["Cardiomegaly.", "Possible pneumonia."])[:, [2, 7]].tolist()
    [[1, -2], [-2, -1]]
    """
    cut = [0]

    def counted(items: Iterable[str]) -> Iterator[str]:
        for text in items:
            if isinstance(text, str) and len(text) > LONGEST_REPORT:
                cut[0] += 1
            yield text

    blocks = list(label_stream(counted(texts), sections=sections, workers=workers))
    if cut[0]:
        warnings.warn(
            f"{cut[0]:,} report{'s were' if cut[0] > 1 else ' was'} longer than {LONGEST_REPORT:,} characters "
            "and read only that far (label_report(text).explain() shows where)",
            LongReportWarning,
            stacklevel=2,
        )
    return np.concatenate(blocks) if blocks else np.empty((0, len(OBSERVATIONS)), dtype=np.int8)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        if not isinstance(text, str):
            check_type("each report", text, str, "a string")
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

"""What the labeler returns: every label with the mentions and triggers that decided it.

>>> from chexpert.labeler import label_report
>>> result = label_report("Small left effusion. No pneumothorax.")
>>> result["Pleural Effusion"].value, result["Pneumothorax"].value, result["Edema"].value
(1.0, 0.0, None)
>>> mention = result["Pneumothorax"].mentions[0]
>>> mention.text, mention.span, mention.trigger.text, mention.trigger.kind
('pneumothorax', (24, 36), 'No', 'negation')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from chexpert.schema import LONGEST_REPORT, OBSERVATIONS, Code

__all__ = ["Trigger", "Mention", "ObservationLabel", "ReportLabels", "VALUE_TEXT"]

#: How each value reads, for explanations and the CSV (blank is None / an empty cell).
VALUE_TEXT: Final[dict[float | None, str]] = {1.0: "positive", 0.0: "negative", -1.0: "uncertain", None: "blank"}
_CODES: Final[dict[float | None, Code]] = {1.0: Code.POSITIVE, 0.0: Code.NEGATIVE, -1.0: Code.UNCERTAIN, None: Code.BLANK}


@dataclass(frozen=True, slots=True)
class Trigger:
    """The phrase that decided a mention, as written, with its span in the report.

    ``kind``: ``negation``, ``uncertainty``, ``pseudo`` (looked like a negation, is not: "no
    change in"), ``finding`` (made an attribute a finding: "enlarged" for "heart size"), or
    ``rule`` (the heart-failure rule; ``span`` is then that of the heart-failure mention).
    """

    text: str
    span: tuple[int, int]
    kind: str


@dataclass(frozen=True, slots=True)
class Mention:
    """One mention of an observation (or of another abnormality) and how it reads."""

    observation: str  # one of the 14, or "Other abnormality"
    phrase: str  # the vocabulary entry it matched ("pleural effusion" for "Pleural effusions")
    text: str  # as written in the report
    span: tuple[int, int]  # offsets in the report
    sentence: str
    sentence_span: tuple[int, int]
    value: float  # 1.0 positive, 0.0 negative, -1.0 uncertain
    trigger: Trigger | None  # what decided it; None for a plain positive mention

    def __str__(self) -> str:
        why = f" ({self.trigger.kind}: {self.trigger.text!r})" if self.trigger is not None else ""
        return f"{self.text!r} {VALUE_TEXT[self.value]}{why} in {self.sentence!r}"

    def _replace_observation(self, observation: str, value: float, trigger: Trigger) -> Mention:
        return Mention(observation, self.phrase, self.text, self.span, self.sentence, self.sentence_span, value, trigger)


@dataclass(frozen=True, slots=True)
class ObservationLabel:
    """The label of one observation in one report, with the mentions behind it."""

    observation: str
    value: float | None  # 1.0, 0.0, -1.0, or None for blank
    mentions: tuple[Mention, ...]
    reason: str  # one line: why this value

    @property
    def code(self) -> Code:
        """The value as the index stores it (:class:`chexpert.Code`)."""
        return _CODES[self.value]


@dataclass(frozen=True)
class ReportLabels(Mapping[str, ObservationLabel]):
    """The 14 labels of one report: a mapping from observation name to :class:`ObservationLabel`.

    ``section`` is the part of the report that was labelled (``impression``, ``findings`` or
    ``report``), ``spans`` where it lies in ``text``; ``other`` holds the mentions of other
    abnormalities (they decide No Finding) and ``excluded`` the look-alikes that were not counted.
    """

    text: str
    section: str
    spans: tuple[tuple[int, int], ...]
    observations: tuple[ObservationLabel, ...]
    other: tuple[Mention, ...] = ()
    excluded: tuple[Mention, ...] = ()

    def __getitem__(self, observation: str) -> ObservationLabel:
        try:
            return self.observations[OBSERVATIONS.index(observation)]
        except ValueError:
            raise KeyError(observation) from None

    def __iter__(self) -> Iterator[str]:
        return iter(OBSERVATIONS)

    def __len__(self) -> int:
        return len(OBSERVATIONS)

    @property
    def labels(self) -> dict[str, float | None]:
        """``{observation: 1.0 | 0.0 | -1.0 | None}`` in CSV column order."""
        return {label.observation: label.value for label in self.observations}

    @property
    def codes(self) -> np.ndarray:
        """The 14 labels as int8 :class:`chexpert.Code` values (blank is -2), as the index stores them."""
        return np.array([_CODES[label.value] for label in self.observations], dtype=np.int8)

    def explain(self) -> str:
        """Every non-blank label with its reason and mentions, one per line (blank ones omitted).

        >>> from chexpert.labeler import label_report
        >>> print(label_report("Possible small left effusion.").explain())
        labelled: report
        No Finding: blank (Pleural Effusion positive or uncertain)
        Pleural Effusion: uncertain (uncertain mention)
          'effusion' uncertain (uncertainty: 'Possible') in 'Possible small left effusion.'
        """
        lines = [f"labelled: {self.section}"]
        if len(self.text) > LONGEST_REPORT:
            read = max((end for _, end in self.spans), default=0)
            lines.append(f"read: the first {read:,} of {len(self.text):,} characters (a report is read up to {LONGEST_REPORT:,})")
        for label in self.observations:
            if label.value is None and not label.mentions and label.observation != "No Finding":
                continue
            lines.append(f"{label.observation}: {VALUE_TEXT[label.value]} ({label.reason})")
            lines.extend(f"  {mention}" for mention in label.mentions)
        if self.other:
            lines.append("Other abnormalities (not among the 14):")
            lines.extend(f"  {mention}" for mention in self.other)
        if self.excluded:
            lines.append("Not counted (look-alikes):")
            lines.extend(f"  {mention.text!r} in {mention.sentence!r}" for mention in self.excluded)
        return "\n".join(lines)

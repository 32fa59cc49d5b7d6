"""Look-alike radiology reports written from the 14 label codes, in sections, as CheXpert Plus has them.

:func:`render_report` writes FINDINGS and IMPRESSION text in standard radiology language: each
observation that is not blank is mentioned, positively ("Small left pleural effusion."), negated
with an explicit trigger ("No pneumothorax.") or hedged ("Possible early pneumonia."); blank
observations are not mentioned. The labels the text expresses are returned with it, per section,
following CheXpert's rules (positive wins over uncertain over negative; No Finding is 1.0 when
nothing but Support Devices is positive or uncertain and no other abnormality is mentioned), so that
a report labeler can be tested on the round trip.

>>> from chexpert.schema import OBSERVATIONS
>>> codes = [-2] * 14; codes[OBSERVATIONS.index("Pleural Effusion")] = 1
>>> report = render_report(codes, seed=3)
>>> "effusion" in report.findings.lower(), report.labels == tuple(codes)
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from chexpert import schema
from chexpert.errors import InvalidArgumentError

__all__ = ["SECTION_COLUMNS", "SynthReport", "render_report", "section_labels"]

POS, NEG, UNC, BLANK = (int(c) for c in (schema.Code.POSITIVE, schema.Code.NEGATIVE, schema.Code.UNCERTAIN, schema.Code.BLANK))

#: The section columns of CheXpert Plus, in CSV order (``section_`` prefix left out).
SECTION_COLUMNS: Final[tuple[str, ...]] = schema.PLUS_SECTIONS

_SIDES: Final = ("right", "left")
_LOBES: Final = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe", "lingula")

# Per observation: (positive, negative, uncertain) phrasings. {side} is right/left, {lobe} a lobe,
# {size} a size word. Each sentence mentions exactly one observation, in words a labeler knows.
_PHRASES: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "Enlarged Cardiomediastinum": (
        ("The cardiomediastinal silhouette is enlarged.", "Widened mediastinum.", "The mediastinum is widened."),
        ("The mediastinum is not widened.", "No mediastinal widening."),
        ("The mediastinum may be widened.", "Possible widening of the mediastinum."),
    ),
    "Cardiomegaly": (
        ("{size} cardiomegaly.", "The heart is enlarged.", "Cardiomegaly is present."),
        ("No cardiomegaly.", "The heart is not enlarged."),
        ("Possible mild cardiomegaly.", "Cardiomegaly cannot be excluded."),
    ),
    "Lung Opacity": (
        ("Patchy opacity in the {lobe}.", "Bibasilar opacities.", "There is an opacity at the {side} base."),
        ("No focal opacity.", "No airspace opacity."),
        ("Possible opacity at the {side} base.", "Questionable opacity in the {lobe}."),
    ),
    "Lung Lesion": (
        ("A 1.5 cm nodule in the {lobe}.", "{side_cap} hilar mass.", "Spiculated mass in the {lobe}."),
        ("No pulmonary nodule.", "No lung mass."),
        ("Possible nodule in the {lobe}.", "Questionable {side} lung nodule; CT is recommended."),
    ),
    "Edema": (
        ("{size} pulmonary edema.", "Interstitial pulmonary edema.", "There is pulmonary edema."),
        ("No pulmonary edema.", "No edema."),
        ("Possible mild pulmonary edema.", "Findings may represent mild interstitial edema."),
    ),
    "Consolidation": (
        ("Consolidation in the {lobe}.", "Dense consolidation at the {side} base."),
        ("No focal consolidation.", "No consolidation."),
        ("Consolidation at the {side} base cannot be excluded.", "Possible consolidation in the {lobe}."),
    ),
    "Pneumonia": (
        ("{lobe_cap} pneumonia.", "Findings of pneumonia in the {lobe}."),
        ("No evidence of pneumonia.", "No pneumonia."),
        ("Pneumonia cannot be excluded.", "Possible early pneumonia in the {lobe}."),
    ),
    "Atelectasis": (
        ("Bibasilar atelectasis.", "{side_cap} basilar atelectasis.", "Subsegmental atelectasis in the {lobe}."),
        ("No atelectasis.",),
        ("Possible subsegmental atelectasis at the {side} base.", "Questionable atelectasis in the {lobe}."),
    ),
    "Pneumothorax": (
        ("{size} {side} apical pneumothorax.", "There is a {side} pneumothorax."),
        ("No pneumothorax.", "There is no pneumothorax."),
        ("Questionable small {side} apical pneumothorax.", "Possible tiny {side} pneumothorax."),
    ),
    "Pleural Effusion": (
        ("{size} {side} pleural effusion.", "Bilateral pleural effusions.", "There is a {side} pleural effusion."),
        ("No pleural effusion.", "There is no pleural effusion."),
        ("Possible small {side} pleural effusion.", "A small {side} pleural effusion cannot be excluded."),
    ),
    "Pleural Other": (
        ("Pleural thickening along the {side} lateral chest wall.", "{side_cap} apical pleural thickening."),
        ("No pleural thickening.",),
        ("Possible pleural thickening at the {side} apex.",),
    ),
    "Fracture": (
        ("Acute fracture of the {side} seventh rib.", "Displaced fracture of the {side} clavicle."),
        ("No acute fracture.", "No displaced rib fracture."),
        ("Possible nondisplaced fracture of the {side} fifth rib.",),
    ),
    "Support Devices": (
        ("Endotracheal tube terminates 4 cm above the carina.", "{side_cap} internal jugular central venous catheter with tip in the SVC.",
         "Left chest wall pacemaker with leads in the right atrium and ventricle.", "Nasogastric tube courses below the diaphragm."),
        ("No tubes or lines are seen.",),
        ("Questionable retained pacing wire fragment.",),
    ),
}  # fmt: skip

# Positive or uncertain findings restated in the impression, shorter.
_IMPRESSION: Final[dict[str, tuple[str, str]]] = {
    "Enlarged Cardiomediastinum": ("Enlarged cardiomediastinal silhouette.", "Possible mediastinal widening."),
    "Cardiomegaly": ("Cardiomegaly.", "Possible cardiomegaly."),
    "Lung Opacity": ("Lung opacity as described.", "Possible opacity as described."),
    "Lung Lesion": ("Lung nodule as above; CT is recommended.", "Possible lung nodule; CT is recommended."),
    "Edema": ("Pulmonary edema.", "Possible mild pulmonary edema."),
    "Consolidation": ("Consolidation as described.", "Consolidation cannot be excluded."),
    "Pneumonia": ("Pneumonia.", "Pneumonia cannot be excluded."),
    "Atelectasis": ("Atelectasis.", "Possible atelectasis."),
    "Pneumothorax": ("Pneumothorax as described.", "Possible pneumothorax."),
    "Pleural Effusion": ("Pleural effusion.", "Possible pleural effusion."),
    "Pleural Other": ("Pleural thickening.", "Possible pleural thickening."),
    "Fracture": ("Rib fracture as above.", "Possible rib fracture."),
    "Support Devices": ("Support devices in standard position.", "Questionable retained pacing wire."),
}

# Abnormalities outside the 14 observations: mentioned so that a report with nothing positive
# among them still has No Finding blank, as CheXpert's labeler decides.
_OTHER_ABNORMALITY: Final = ("Degenerative changes of the thoracic spine.", "Small hiatal hernia.")
_NORMAL_IMPRESSION: Final = ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.")
_COMPLAINTS: Final = ("shortness of breath", "cough", "chest pain", "fever", "hypoxia", "dyspnea on exertion")
_SIZES: Final = ("Small", "Moderate", "Large", "Mild")
_ORDER: Final = schema.OBSERVATIONS[1:]  # mention order in the findings: as radiologists go, roughly
_NO_FINDING, _SUPPORT = 0, schema.OBSERVATIONS.index("Support Devices")


@dataclass(frozen=True)
class SynthReport:
    """A look-alike report: its sections, the whole text, and the labels each part expresses.

    ``sections`` maps every name in :data:`SECTION_COLUMNS` to its text ("" when absent).
    ``labels``, ``findings_labels`` and ``impression_labels`` are 14 codes (``schema.Code``) in
    ``schema.OBSERVATIONS`` order, for the whole report and for each section alone.
    """

    sections: dict[str, str]
    text: str
    labels: tuple[int, ...]
    findings_labels: tuple[int, ...]
    impression_labels: tuple[int, ...]

    @property
    def findings(self) -> str:
        return self.sections["findings"]

    @property
    def impression(self) -> str:
        return self.sections["impression"]


def section_labels(states: dict[int, int], other_abnormality: bool, *, empty: bool = False) -> tuple[int, ...]:
    """CheXpert's aggregation for one piece of text: the state of each mentioned observation and
    the No Finding rule; all blank for an empty section.

    >>> section_labels({9: 1}, False)[:1], section_labels({9: 0}, False)[:1]
    ((-2,), (1,))
    """
    out = [BLANK] * len(schema.OBSERVATIONS)
    if empty:
        return tuple(out)
    for j, state in states.items():
        out[j] = state
    abnormal = any(state in (POS, UNC) for j, state in states.items() if j not in (_NO_FINDING, _SUPPORT))
    out[_NO_FINDING] = BLANK if abnormal or other_abnormality else POS
    return tuple(out)


def render_report(codes: Sequence[int], *, seed: int | Sequence[int] = 0, view: str = "PA and lateral", sex: str = "") -> SynthReport:
    """A report whose text expresses ``codes`` (14 ``schema.Code`` values in CSV order).

    1 is mentioned positively, 0 negated, -1 hedged, -2 (blank) not at all. No Finding is
    expressed by the rule (a "No acute cardiopulmonary process." impression when it is 1, another
    abnormality mentioned when it is blank and nothing else is positive), so ``labels`` equals
    ``codes`` whenever the codes obey CheXpert's No Finding rule, as released labels do. ``seed``
    chooses among phrasings; the same seed gives the same text. ``view`` ("PA and lateral",
    "portable AP") and ``sex`` ("Male", "Female") shape the technique and history lines.

    >>> render_report([1] + [-2] * 13).impression
    'No acute cardiopulmonary process.'
    """
    codes = [int(c) for c in codes]
    if len(codes) != len(schema.OBSERVATIONS) or any(c not in (POS, NEG, UNC, BLANK) for c in codes):
        raise InvalidArgumentError(f"codes must be {len(schema.OBSERVATIONS)} values among 1, 0, -1, -2 in schema.OBSERVATIONS order, not {codes!r}")
    rng = np.random.default_rng(seed if isinstance(seed, int) else list(seed))
    side = _SIDES[int(rng.integers(2))]
    lobe = _LOBES[int(rng.integers(len(_LOBES)))]
    fill = {"side": side, "side_cap": side.capitalize(), "lobe": lobe, "lobe_cap": lobe[0].upper() + lobe[1:],
            "size": _SIZES[int(rng.integers(len(_SIZES)))]}  # fmt: skip

    states = {j: codes[j] for j in range(1, len(codes)) if codes[j] != BLANK}
    findings: list[str] = []
    negatives: list[int] = []
    for name in _ORDER:
        j = schema.OBSERVATIONS.index(name)
        state = states.get(j)
        if state is None:
            continue
        if state == NEG:
            negatives.append(j)
            continue
        options = _PHRASES[name][0 if state == POS else 2]
        findings.append(_sentence(options[int(rng.integers(len(options)))].format(**fill)))
    for j in negatives:
        options = _PHRASES[schema.OBSERVATIONS[j]][1]
        findings.append(options[int(rng.integers(len(options)))])
    abnormal = any(s in (POS, UNC) for j, s in states.items() if j != _SUPPORT)
    other = not abnormal and codes[_NO_FINDING] != POS
    if other:
        findings.append(_OTHER_ABNORMALITY[int(rng.integers(len(_OTHER_ABNORMALITY)))])

    impression_states = {j: s for j, s in states.items() if s in (POS, UNC)}
    lines = [_IMPRESSION[schema.OBSERVATIONS[j]][0 if s == POS else 1] for j, s in sorted(impression_states.items())]
    if not lines or not abnormal:
        lines.insert(0, _NORMAL_IMPRESSION[int(rng.integers(len(_NORMAL_IMPRESSION)))])
    numbered = len(lines) > 1 and rng.random() < 0.5
    impression = "\n".join(f"{k}. {line}" for k, line in enumerate(lines, 1)) if numbered else " ".join(lines)

    age_word = {"Male": "man", "Female": "woman"}.get(sex, "patient")
    sections = dict.fromkeys(SECTION_COLUMNS, "")
    sections["narrative"] = "XR CHEST 2 VIEWS" if "lateral" in view else "XR CHEST 1 VIEW PORTABLE"
    sections["clinical_history"] = f"___-year-old {age_word} with {_COMPLAINTS[int(rng.integers(len(_COMPLAINTS)))]}."
    sections["comparison"] = ("None.", "___.", "Chest radiograph from ___.")[int(rng.integers(3))]
    sections["technique"] = f"{view[0].upper()}{view[1:]} views of the chest." if "lateral" in view else f"Single {view} view of the chest."
    sections["findings"] = " ".join(findings) if findings else "The lungs and pleural spaces are unremarkable."
    sections["impression"] = impression
    sections["accession_number"] = f"{int(rng.integers(0, 10**8)):08d}"
    text = "\n\n".join(
        f"{heading}:\n{sections[key]}"
        for heading, key in (("NARRATIVE", "narrative"), ("ACCESSION NUMBER", "accession_number"), ("CLINICAL HISTORY", "clinical_history"),
                             ("COMPARISON", "comparison"), ("TECHNIQUE", "technique"), ("FINDINGS", "findings"), ("IMPRESSION", "impression"))
        if sections[key]
    )  # fmt: skip
    whole = section_labels(states, other)
    return SynthReport(
        sections=sections,
        text=text + "\n\nEND OF IMPRESSION:",
        labels=whole,
        findings_labels=section_labels(states, other),
        impression_labels=section_labels(impression_states, False),
    )


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]

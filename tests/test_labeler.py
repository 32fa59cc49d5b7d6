"""The report labeler: CheXpert's semantics, each pipeline step, explanations, the Python API.

Cases are written here by hand, one per rule; the annotated development set (tests/data/labeler)
measures the whole in tests/test_labeler_accuracy.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chexpert
from chexpert.errors import InvalidArgumentError
from chexpert.labeler import label_report, label_reports, label_stream
from chexpert.labeler.phrases import PhraseMatcher, flatten
from chexpert.labeler.sections import find_sections, select
from chexpert.labeler.sentences import split
from chexpert.labeler.vocabulary import OTHER, terms
from chexpert.schema import OBSERVATIONS, Code


def labels(text: str, sections: str = "report") -> dict[str, float]:
    """The non-blank labels of ``text``."""
    return {name: value for name, value in label_report(text, sections=sections).labels.items() if value is not None}


# --- semantics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Moderate right pleural effusion.", {"Pleural Effusion": 1.0}),
        ("No pleural effusion.", {"No Finding": 1.0, "Pleural Effusion": 0.0}),
        ("Possible small right pleural effusion.", {"Pleural Effusion": -1.0}),
        ("Portable chest radiograph.", {"No Finding": 1.0}),
    ],
)
def test_positive_negative_uncertain_blank(text: str, expected: dict[str, float]) -> None:
    assert labels(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("No right effusion. Small left effusion.", 1.0),  # positive beats negative
        ("Small left effusion. Possible right effusion.", 1.0),  # positive beats uncertain
        ("No right effusion. Possible left effusion.", -1.0),  # uncertain beats negative
        ("No right effusion. No left effusion.", 0.0),  # every mention negated
    ],
)
def test_aggregation_order(text: str, value: float) -> None:
    assert labels(text)["Pleural Effusion"] == value


def test_no_finding_rule() -> None:
    assert labels("Endotracheal tube in good position.") == {"No Finding": 1.0, "Support Devices": 1.0}
    assert labels("No effusion, consolidation or pneumothorax.")["No Finding"] == 1.0
    assert "No Finding" not in labels("Possible small pneumothorax.")
    # another abnormality outside the 14 takes No Finding away, positive or hedged; negated it does not
    assert labels("Small hiatal hernia.") == {}
    assert labels("Possible emphysema.") == {}
    assert labels("No emphysema.") == {"No Finding": 1.0}
    result = label_report("Small hiatal hernia.")
    assert result["No Finding"].reason == "another abnormality mentioned"
    assert [m.text for m in result["No Finding"].mentions] == ["hiatal hernia"]
    assert [m.observation for m in result.other] == [OTHER]


@pytest.mark.parametrize(
    ("text", "edema", "cardiomegaly"),
    [
        ("Findings consistent with CHF.", 1.0, -1.0),
        ("Mild congestive heart failure.", 1.0, -1.0),
        ("Possible CHF.", -1.0, -1.0),
        ("CHF with moderate cardiomegaly.", 1.0, 1.0),  # a positive mention stays positive
        ("CHF. Heart size is normal.", 1.0, -1.0),  # the rule's uncertain beats the negative
        ("No evidence of CHF.", 0.0, None),  # negated heart failure implies nothing
    ],
)
def test_heart_failure_makes_cardiomegaly_at_least_uncertain(text: str, edema: float, cardiomegaly: float | None) -> None:
    result = label_report(text, sections="report")
    assert result["Edema"].value == edema
    assert result["Cardiomegaly"].value == cardiomegaly
    if cardiomegaly == -1.0:
        assert result["Cardiomegaly"].reason == "heart failure mentioned: at least uncertain"
        assert result["Cardiomegaly"].mentions[-1].trigger is not None
        assert result["Cardiomegaly"].mentions[-1].trigger.kind == "rule"


@pytest.mark.parametrize(
    ("text", "absent", "present"),
    [
        ("Small pericardial effusion.", "Pleural Effusion", None),
        ("Calcified nodule in the right upper lobe, a granuloma.", "Lung Lesion", None),
        ("Nipple markers overlie the lower chest.", "Support Devices", None),
        ("The trachea is midline.", "Support Devices", None),
        ("Kerley B lines.", "Support Devices", "Edema"),
        ("Fracture of the uppermost sternotomy wire.", "Fracture", "Support Devices"),
        ("Subcutaneous edema of the chest wall.", "Edema", None),
    ],
)
def test_look_alikes_are_not_mentions(text: str, absent: str, present: str | None) -> None:
    found = labels(text)
    assert absent not in found
    if present is not None:
        assert found[present] == 1.0


def test_compound_phrases_mention_both_observations() -> None:
    assert labels("Nodular opacity in the left upper lobe.") == {"Lung Opacity": 1.0, "Lung Lesion": 1.0}
    assert labels("Small right hydropneumothorax.") == {"Pneumothorax": 1.0, "Pleural Effusion": 1.0}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Heart size is normal.", 0.0),
        ("Normal heart size.", 0.0),
        ("The heart is not enlarged.", 0.0),
        ("The heart is mildly enlarged.", 1.0),
        ("Heart size is at the upper limits of normal.", 0.0),
        ("Borderline heart size.", -1.0),
        ("The heart may be mildly enlarged.", -1.0),
        ("Heart size is stable.", None),  # a structure named only as stable says nothing
    ],
)
def test_structures_need_a_word_for_normal_or_abnormal(text: str, value: float | None) -> None:
    assert label_report(text, sections="report")["Cardiomegaly"].value == value


# --- sections and sentences ----------------------------------------------------------------------

REPORT = """EXAMINATION: CHEST (PA AND LAT)
INDICATION: Cough, evaluate for pneumonia.
COMPARISON: ___
FINDINGS: Heart size is normal. There is a small left pleural effusion.
IMPRESSION: Small left pleural effusion. No pneumonia."""


def test_sections_are_found_and_chosen() -> None:
    assert [s.kind for s in find_sections(REPORT)] == ["context", "context", "context", "findings", "impression"]
    impression = label_report(REPORT, sections="impression")
    assert impression.section == "impression"
    assert impression.labels["Cardiomegaly"] is None and impression.labels["Pneumonia"] == 0.0
    findings = label_report(REPORT, sections="findings")
    assert findings.labels["Cardiomegaly"] == 0.0 and findings.labels["Pneumonia"] is None
    # the indication's "evaluate for pneumonia" is never read as an uncertain pneumonia
    whole = label_report(REPORT, sections="report")
    assert whole.labels["Pneumonia"] == 0.0 and whole.labels["Cardiomegaly"] == 0.0


def test_a_missing_section_falls_back() -> None:
    findings_only = "FINDINGS: Mild pulmonary edema."
    assert label_report(findings_only, sections="impression").section == "findings"
    assert label_report(findings_only, sections="impression").labels["Edema"] == 1.0
    assert label_report("Mild pulmonary edema.", sections="impression").section == "report"
    impression_only = "IMPRESSION: Mild pulmonary edema."
    assert label_report(impression_only, sections="findings").section == "impression"


@pytest.mark.parametrize(
    "text",
    [
        "Findings: Small effusion. Impression: Effusion.",  # mixed case
        "Small effusion.\nIMPRESSION\nEffusion.",  # heading alone on its line
        "FINDINGS:Small effusion.IMPRESSION:Effusion.",  # no spaces
    ],
)
def test_heading_forms(text: str) -> None:
    section, spans = select(text, "impression")
    assert section == "impression"
    assert [text[a:b] for a, b in spans] == ["Effusion."]


def test_subheadings_stay_in_their_section() -> None:
    text = "FINDINGS: Lungs: Clear. Heart: Normal size. Lines/tubes: None. IMPRESSION: Normal."
    assert [s.kind for s in find_sections(text)] == ["findings", "impression"]
    assert labels(text, "findings") == {"No Finding": 1.0, "Cardiomegaly": 0.0, "Support Devices": 0.0}


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("1. No effusion. 2. Mild edema.", ["No effusion.", "Mild edema."]),
        ("1. No effusion 2. Mild edema", ["No effusion 2.", "Mild edema"]),
        ("No effusion.Mild edema.", ["No effusion.", "Mild edema."]),
        ("NO EFFUSION.MILD EDEMA.", ["NO EFFUSION.", "MILD EDEMA."]),
        ("Atelectasis vs. pneumonia. A 1.5 cm nodule.", ["Atelectasis vs. pneumonia.", "A 1.5 cm nodule."]),
        ("Opacity, ? pneumonia. Pneumonia? No.", ["Opacity, ? pneumonia.", "Pneumonia?", "No."]),
        ("- No effusion\n- Mild edema", ["No effusion", "Mild edema"]),
        ("The right lung\nbase is clear\nNo effusion", ["The right lung\nbase is clear", "No effusion"]),
        ("(1) No effusion (2) mild edema", ["No effusion", "mild edema"]),
    ],
)
def test_sentence_splitting(text: str, sentences: list[str]) -> None:
    assert [text[a:b] for a, b in split(text)] == sentences


def test_a_numbered_list_does_not_carry_a_negation_over() -> None:
    assert labels("IMPRESSION: 1. No pneumothorax 2. Moderate right effusion", "impression") == {"Pneumothorax": 0.0, "Pleural Effusion": 1.0}
    assert labels("No pneumothorax.Moderate right effusion.") == {"Pneumothorax": 0.0, "Pleural Effusion": 1.0}


# --- mentions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "observation"),
    [
        ("Small right PTX.", "Pneumothorax"),
        ("ETT 4 cm above the carina.", "Support Devices"),
        ("NG tube in the stomach.", "Support Devices"),
        ("Right IJ central line.", "Support Devices"),
        ("Bibasilar atelectatic changes.", "Atelectasis"),
        ("Mild pulmonary oedema.", "Edema"),  # British spelling
        ("Patchy air-space disease.", "Lung Opacity"),  # hyphenated
        ("Patchy airspace disease.", "Lung Opacity"),
        ("Bilateral pleural effusions.", "Pleural Effusion"),  # plural
        ("Small bilateral pneumothoraces.", "Pneumothorax"),  # irregular plural
        ("Right lower lobe pnuemonia.", "Pneumonia"),  # letters swapped
        ("Small left pleural efusion.", "Pleural Effusion"),  # a letter missing
        ("Bibasilar atelectisis.", "Atelectasis"),  # a vowel for another
        ("Healed left rib fractures.", "Fracture"),
        ("Left apical pleural thickening.", "Pleural Other"),
        ("Spiculated mass in the right upper lobe.", "Lung Lesion"),
        ("Widened mediastinum.", "Enlarged Cardiomediastinum"),
        ("Dense retrocardiac consolidation.", "Consolidation"),
    ],
)
def test_vocabulary(text: str, observation: str) -> None:
    assert labels(text)[observation] == 1.0


def test_vocabulary_is_consistent() -> None:
    vocabulary = terms()
    assert all(o in OBSERVATIONS or o == OTHER for term in vocabulary.values() for o in term.observations)
    assert "No Finding" not in {o for term in vocabulary.values() for o in term.observations}
    # every derived form leads back to a listed phrase of the same meaning
    assert vocabulary["effusions"] is vocabulary["effusion"]
    assert vocabulary["oedema"] is vocabulary["edema"]


def test_phrase_matcher_takes_the_longest_phrase_and_whole_words() -> None:
    matcher = PhraseMatcher({"effusion": 1, "pericardial effusion": 2, "line": 3})
    found = [(m.group(), matcher.value(m)) for m in matcher.finditer("pericardial effusion; effusion; linear; midline; line")]
    assert found == [("pericardial effusion", 2), ("effusion", 1), ("line", 3)]


# --- negation and uncertainty --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a negation covers the list after it
        (
            "No focal consolidation, pleural effusion, pneumothorax, or pulmonary edema.",
            {"Consolidation": 0.0, "Pleural Effusion": 0.0, "Pneumothorax": 0.0, "Edema": 0.0},
        ),
        # triggers after the mention
        ("Pneumothorax is not seen.", {"Pneumothorax": 0.0}),
        ("The previously seen effusion has resolved.", {"Pleural Effusion": 0.0}),
        ("Pneumonia cannot be excluded.", {"Pneumonia": -1.0}),
        ("Effusion and pneumothorax are not identified.", {"Pleural Effusion": 0.0, "Pneumothorax": 0.0}),
        # terminators end the scope
        ("No effusion, but there is a new right lower lobe consolidation.", {"Pleural Effusion": 0.0, "Consolidation": 1.0}),
        ("No pneumothorax; however, small effusion.", {"Pneumothorax": 0.0, "Pleural Effusion": 1.0}),
        ("No pneumothorax, although a small effusion may be present.", {"Pneumothorax": 0.0, "Pleural Effusion": -1.0}),
        ("No pneumothorax, mild pulmonary edema.", {"Pneumothorax": 0.0, "Edema": 1.0}),
        ("No pneumothorax with small bilateral effusions.", {"Pneumothorax": 0.0, "Pleural Effusion": 1.0}),
        # the nearest trigger decides
        ("No pneumothorax, possible small effusion.", {"Pneumothorax": 0.0, "Pleural Effusion": -1.0}),
        ("Possible small effusion, no pneumothorax.", {"Pneumothorax": 0.0, "Pleural Effusion": -1.0}),
        # pseudo-triggers are no negation
        ("No change in the small left effusion.", {"Pleural Effusion": 1.0}),
        ("No significant interval change in the right effusion.", {"Pleural Effusion": 1.0}),
        ("Not only atelectasis but also consolidation.", {"Atelectasis": 1.0, "Consolidation": 1.0}),
        ("No increase in the right pneumothorax.", {"Pneumothorax": 1.0}),
        # hedges between alternatives
        ("Atelectasis versus pneumonia.", {"Atelectasis": -1.0, "Pneumonia": -1.0}),
        ("Atelectasis or pneumonia.", {"Atelectasis": -1.0, "Pneumonia": -1.0}),
        ("No effusion or pneumothorax.", {"Pleural Effusion": 0.0, "Pneumothorax": 0.0}),
        # the cause is hedged, the finding stated
        ("Left basilar opacity, likely atelectasis.", {"Lung Opacity": 1.0, "Atelectasis": -1.0}),
        ("Consolidation concerning for pneumonia.", {"Consolidation": 1.0, "Pneumonia": -1.0}),
        ("Opacity which may represent pneumonia.", {"Lung Opacity": 1.0, "Pneumonia": -1.0}),
        # a negation carries through "to suggest"
        ("No focal opacity to suggest pneumonia.", {"Lung Opacity": 0.0, "Pneumonia": 0.0}),
        ("Atelectasis rather than pneumonia.", {"Atelectasis": 1.0, "Pneumonia": 0.0}),
        # comparisons
        ("Unchanged small left effusion.", {"Pleural Effusion": 1.0}),
        ("Resolved right pneumothorax.", {"Pneumothorax": 0.0}),
        ("Near complete resolution of the left effusion.", {"Pleural Effusion": 1.0}),
        ("The endotracheal tube has been removed.", {"Support Devices": 0.0}),
        # a hedge on the position of a device is no hedge on the device
        ("The ETT tip is likely in the right mainstem bronchus.", {"Support Devices": 1.0}),
        # a finding that may be an artefact of technique is uncertain
        ("The mediastinum appears widened, which may be related to supine technique.", {"Enlarged Cardiomediastinum": -1.0}),
    ],
)
def test_negation_and_uncertainty(text: str, expected: dict[str, float]) -> None:
    found = labels(text)
    found.pop("No Finding", None)
    assert found == expected


# --- explanations --------------------------------------------------------------------------------


def test_every_label_is_explained_with_offsets_into_the_report() -> None:
    text = "FINDINGS: Small left effusion. No pneumothorax.\n\nIMPRESSION: Left effusion; pneumonia cannot be excluded."
    result = label_report(text, sections="report")
    assert result.section == "report"
    for label in result.observations:
        for mention in label.mentions:
            assert text[mention.span[0] : mention.span[1]] == mention.text
            assert text[mention.sentence_span[0] : mention.sentence_span[1]] == mention.sentence
            assert mention.sentence_span[0] <= mention.span[0] < mention.span[1] <= mention.sentence_span[1]
            if mention.trigger is not None and mention.trigger.kind != "rule":
                assert text[mention.trigger.span[0] : mention.trigger.span[1]] == mention.trigger.text
    pneumothorax = result["Pneumothorax"].mentions[0]
    assert pneumothorax.trigger is not None
    assert (pneumothorax.text, pneumothorax.value, pneumothorax.trigger.text, pneumothorax.trigger.kind) == ("pneumothorax", 0.0, "No", "negation")
    pneumonia = result["Pneumonia"].mentions[0]
    assert pneumonia.trigger is not None
    assert (pneumonia.trigger.text, pneumonia.trigger.kind) == ("cannot be excluded", "uncertainty")
    assert [m.value for m in result["Pleural Effusion"].mentions] == [1.0, 1.0]
    assert result["Pleural Effusion"].mentions[0].trigger is None
    assert result["Edema"].mentions == () and result["Edema"].reason == "not mentioned"


def test_pseudo_triggers_and_look_alikes_are_explained() -> None:
    result = label_report("No change in the small pericardial effusion or in the left pleural effusion.", sections="report")
    mention = result["Pleural Effusion"].mentions[0]
    assert mention.value == 1.0 and mention.trigger is not None and mention.trigger.kind == "pseudo"
    assert [m.text for m in result.excluded] == [] and [m.phrase for m in result.other] == ["pericardial effusion"]
    text = result.explain()
    assert "Pleural Effusion: positive" in text and "pseudo: 'No change in'" in text


def test_the_result_is_a_mapping_of_the_14_observations() -> None:
    result = chexpert.label_report("Mild cardiomegaly.")
    assert list(result) == list(OBSERVATIONS)
    assert result["Cardiomegaly"].code == Code.POSITIVE
    assert result.codes.dtype == np.int8 and result.codes.tolist()[2] == 1
    with pytest.raises(KeyError):
        result["Cardiomegally"]


# --- the Python API ------------------------------------------------------------------------------


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="sections must be one of impression, findings, report"):
        label_report("No effusion.", sections="conclusion")
    with pytest.raises(InvalidArgumentError, match="text must be the text of a report"):
        label_report(None)  # type: ignore[arg-type]  # not a string, on purpose
    with pytest.raises(InvalidArgumentError, match="workers must be an integer >= 1"):
        label_reports(["No effusion."], workers=0)
    with pytest.raises(InvalidArgumentError, match="each report must be a string"):
        label_reports(["No effusion.", float("nan")])  # type: ignore[list-item]  # a float among the reports, on purpose


def test_empty_reports_are_blank_throughout() -> None:
    assert labels("") == {} and labels("   \n") == {}
    assert label_reports(["", "No effusion."]).tolist()[0] == [int(Code.BLANK)] * 14


def test_label_reports_agrees_with_label_report_and_feeds_policies() -> None:
    texts = [REPORT, "Possible CHF.", "", "No pneumothorax. Small left effusion.", "ETT in place."] * 3
    codes = label_reports(texts, sections="report")
    assert codes.shape == (15, 14) and codes.dtype == np.int8
    assert codes.tolist() == [label_report(t, sections="report").codes.tolist() for t in texts]
    targets = chexpert.apply_policy("u-ones", codes)
    assert targets is not None


def test_workers_give_the_same_labels_in_the_same_order() -> None:
    texts = [f"{i} mm nodule. " + ("No effusion." if i % 3 else "Possible effusion.") for i in range(700)]
    one = label_reports(texts, sections="report")
    two = label_reports(texts, sections="report", workers=2)
    assert np.array_equal(one, two)
    blocks = list(label_stream(texts, sections="report", chunk=100))
    assert [len(b) for b in blocks] == [100] * 7


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300))
def test_any_text_is_labelled_with_valid_offsets(text: str) -> None:
    result = label_report(text, sections="report")
    assert len(result.labels) == 14
    assert set(result.labels.values()) <= {1.0, 0.0, -1.0, None}
    for label in result.observations:
        for mention in label.mentions:
            assert text[mention.span[0] : mention.span[1]] == mention.text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "No",
                "effusion",
                "pneumothorax",
                ",",
                ".",
                "possible",
                "or",
                "but",
                "heart",
                "size",
                "normal",
                "enlarged",
                "CHF",
                "IMPRESSION:",
                "\n",
                "1.",
                "cannot be excluded",
                "no change in",
            ]
        ),
        max_size=30,
    )
)
def test_word_salad_never_breaks_the_rules(words: list[str]) -> None:
    text = " ".join(words)
    result = label_report(text, sections="report")
    values = result.labels
    abnormal = any(values[o] in (1.0, -1.0) for o in OBSERVATIONS[1:-1])
    assert values["No Finding"] in (1.0, None)
    if abnormal:
        assert values["No Finding"] is None
    if values["Edema"] in (1.0, -1.0) and any(m.phrase in ("chf",) for m in result["Edema"].mentions if m.value != 0.0):
        assert values["Cardiomegaly"] in (1.0, -1.0)


def test_flatten_keeps_offsets() -> None:
    text = "İpsilateral\tEFFUSION\u00a0noted\n"
    assert len(flatten(text)) == len(text)
    assert "effusion noted " in flatten(text)

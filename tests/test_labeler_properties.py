"""Invariances a reader expects of the labeler (issue 15), stated as properties over generated reports.

- the forms of a negation are interchangeable: "no X" = "there is no X" = "shows no X" = "without X" =
  "negative for X" = "X is absent";
- singular, plural and adjectival forms of a finding mention it alike;
- a negated list negates every item, whatever adjectives the items carry;
- a de-identification token (XXXX, ___), case and whitespace change nothing they do not touch;
- a hedge before or after a finding makes it uncertain alike.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chexpert.labeler import label_report

# One spelling per finding: singular, plural, and an adjective where one names the same finding.
FINDINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Pleural Effusion": ("pleural effusion", ("pleural effusions",)),
    "Consolidation": ("consolidation", ("consolidations",)),
    "Pneumonia": ("pneumonia", ("pneumonias",)),
    "Pneumothorax": ("pneumothorax", ("pneumothoraces",)),
    "Lung Opacity": ("opacity", ("opacities",)),
    "Lung Lesion": ("nodule", ("nodules",)),
    "Atelectasis": ("atelectasis", ("atelectases",)),
    "Edema": ("edema", ()),
    "Pleural Other": ("pleural thickening", ("pleural thickenings",)),
    "Fracture": ("rib fracture", ("rib fractures",)),
    "Cardiomegaly": ("cardiomegaly", ()),
}
ADJECTIVES: dict[str, str] = {
    "Edema": "The lungs are edematous.",
    "Atelectasis": "The lung bases are atelectatic.",
    "Consolidation": "The right lower lobe is consolidated.",
}
NAMES = sorted(FINDINGS)
MODIFIERS = ("", "large ", "small ", "focal ", "mild ", "right ", "bilateral ", "new ", "moderate ", "left-sided ", "acute ")
NEGATIONS = (
    "No {x}.",
    "There is no {x}.",
    "The radiograph shows no {x}.",
    "The chest demonstrates no {x}.",
    "Lungs reveal no {x}.",
    "Without {x}.",
    "Negative for {x}.",
    "{X} is absent.",
    "No evidence of {x}.",
    "{X} is not seen.",
)
PRE_HEDGES = ("Possible {x}.", "Probable {x}.", "Likely {x}.", "Findings may represent {x}.", "Cannot exclude {x}.", "Suspicious for {x}.")
POST_HEDGES = (
    "{X} is possible.",
    "{X} is likely.",
    "{X} is not excluded.",
    "{X} cannot be excluded.",
    "{X} is in the differential.",
    "{X} would be a consideration.",
    "{X} is suspected.",
    "Another consideration is {x}.",
)
TOKENS = ("XXXX", "___", "XXXX XXXX")


def labels(text: str) -> dict[str, float]:
    return {name: value for name, value in label_report(text, sections="report").labels.items() if value is not None}


def fill(template: str, phrase: str) -> str:
    return template.format(x=phrase, X=phrase[0].upper() + phrase[1:])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(NEGATIONS), st.sampled_from(MODIFIERS), st.booleans())
def test_every_form_of_negation_negates(name: str, template: str, modifier: str, plural: bool) -> None:
    singular, plurals = FINDINGS[name]
    phrase = modifier + (plurals[0] if plural and plurals else singular)
    found = labels(fill(template, phrase))
    assert found.get(name) == 0.0, (template, phrase, found)
    assert found.get("No Finding") == 1.0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(MODIFIERS))
def test_singular_plural_and_adjective_mention_alike(name: str, modifier: str) -> None:
    singular, plurals = FINDINGS[name]
    forms = [f"{modifier}{form}." for form in (singular, *plurals)]
    if name in ADJECTIVES and not modifier:
        forms.append(ADJECTIVES[name])
    results = [labels(form[0].upper() + form[1:]) for form in forms]
    for form, found in zip(forms, results):
        assert found.get(name) == 1.0, (form, found)
        assert "No Finding" not in found, (form, found)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from(NAMES), min_size=2, max_size=4, unique=True),
    st.lists(st.sampled_from(MODIFIERS), min_size=4, max_size=4),
    st.sampled_from(("No ", "There is no ", "The radiograph shows no ", "Without ", "Negative for ", "No evidence of ")),
    st.sampled_from((", or ", " or ", ", nor ")),
)
def test_a_negated_list_negates_every_item(names: list[str], modifiers: list[str], lead: str, last: str) -> None:
    items = [modifier + FINDINGS[name][0] for name, modifier in zip(names, modifiers)]
    if last == " or " and any(m.strip() in ("large", "small", "mild", "moderate", "new", "acute") for m in modifiers[1 : len(names)]):
        last = ", or "  # without the serial comma, ", mild edema or ..." may open a new clause (GUIDELINES.md)
    text = lead + ", ".join(items[:-1]) + last + items[-1] + "."
    found = labels(text)
    for name in names:
        assert found.get(name) == 0.0, (text, found)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NEGATIONS + PRE_HEDGES + ("{X}.", "Small {x}."))), min_size=1, max_size=4),
    st.sampled_from(TOKENS),
    st.integers(min_value=0, max_value=10),
)
def test_a_deidentification_token_between_sentences_changes_nothing(parts: list[tuple[str, str]], token: str, where: int) -> None:
    sentences = [fill(template, FINDINGS[name][0]) for name, template in parts]
    at = where % (len(sentences) + 1)
    with_token = [*sentences[:at], f"Comparison {token}.", *sentences[at:]]
    assert labels(" ".join(with_token)) == labels(" ".join(sentences))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(("No {x}.", "No evidence of {x}.", "{X} is not seen.", "Possible {x}.", "{X}.")), st.sampled_from(TOKENS))
def test_a_deidentification_token_inside_a_phrase_changes_nothing(name: str, template: str, token: str) -> None:
    # "no XXXX pneumothorax", "pleural XXXX effusion": a redacted word, not a new one.
    phrase = FINDINGS[name][0]
    words = fill(template, phrase).split(" ")
    expected = labels(" ".join(words))
    for i in range(1, len(words)):
        text = " ".join([*words[:i], token, *words[i:]])
        assert labels(text) == expected, text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NEGATIONS + PRE_HEDGES + POST_HEDGES + ("{X}.",))), min_size=1, max_size=4),
    st.sampled_from(("upper", "lower", "title", "same")),
    st.sampled_from((" ", "  ", "\n", " \t ", "\t", " \n  ")),  # a blank line is a boundary, by design
)
def test_case_and_whitespace_change_nothing(parts: list[tuple[str, str]], case: str, gap: str) -> None:
    if case == "title" and "\n" in gap:
        gap = " "  # a line break before a Capitalised word is a sentence boundary (sentences.py), by design
    text = " ".join(fill(template, FINDINGS[name][0]) for name, template in parts)
    changed = gap.join(text.split(" "))
    changed = {"upper": changed.upper(), "lower": changed.lower(), "title": changed.title(), "same": changed}[case]
    assert labels(changed) == labels(text), changed


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(PRE_HEDGES), st.sampled_from(POST_HEDGES), st.sampled_from(MODIFIERS))
def test_a_hedge_before_or_after_gives_the_same_uncertain_label(name: str, pre: str, post: str, modifier: str) -> None:
    phrase = modifier + FINDINGS[name][0]
    before, after = labels(fill(pre, phrase)), labels(fill(post, phrase))
    assert before.get(name) == -1.0, (pre, phrase, before)
    assert after.get(name) == -1.0, (post, phrase, after)
    assert "No Finding" not in before and "No Finding" not in after


def test_empty_and_blank_reports_are_blank() -> None:
    for text in ("", " ", "\n\n", "\t"):
        result = label_report(text)
        assert all(value is None for value in result.labels.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # verb + "no", "is negative for": the verb never takes the negation away
        ("The radiograph is negative for pneumothorax.", {"No Finding": 1.0, "Pneumothorax": 0.0}),
        # a both-ways trigger followed by a mention with its own negation reads backwards
        ("heart size within normal limits no focal consolidation", {"No Finding": 1.0, "Cardiomegaly": 0.0, "Consolidation": 0.0}),
        # a comma ends the clause of a two-way trigger and of a finding word
        ("Heart size at the upper limits of normal, aortic tortuosity.", {"Cardiomegaly": 0.0}),
        ("Heart size is stable, tortuous aorta.", {}),
        ("The cardiac silhouette is postoperative, with mild widening.", {"Cardiomegaly": 1.0}),
        # resolution over a list, with or without the comma
        ("Consolidation, atelectasis and blunting of the costophrenic angle have cleared.", {"No Finding": 1.0, "Consolidation": 0.0, "Atelectasis": 0.0}),
        # a structure named as a place is not described
        ("Small hiatal hernia posterior to the heart.", {}),
        ("Opacity behind the heart.", {"Lung Opacity": 1.0}),
        # a hedge reads through "resolving"; another consideration is a hedge
        ("Likely resolving atelectasis.", {"Atelectasis": -1.0}),
        ("Atelectasis would be another consideration.", {"Atelectasis": -1.0}),
        # the artefact hedge takes an article before its cause
        ("The heart appears enlarged, but this may be due to the AP projection.", {"Cardiomegaly": -1.0}),
        # volume loss alone names no observation, but is a finding
        ("Left lower lobe volume loss.", {}),
        # vocabulary of the academic style
        ("Elevated pulmonary venous pressure.", {"Edema": 1.0}),
        ("Cardiothymic silhouette is normal.", {"No Finding": 1.0, "Enlarged Cardiomediastinum": 0.0}),
        # broken devices are devices; clips are devices
        ("Fractured right atrial pacer lead.", {"No Finding": 1.0, "Support Devices": 1.0}),
        ("Mediastinal clips.", {"No Finding": 1.0, "Support Devices": 1.0}),
        ("Fracture lines through the left sixth rib.", {"Fracture": 1.0}),
        # old or healed infection is another abnormality, not Pneumonia
        ("Calcified granuloma, sequela of prior granulomatous infection.", {}),
    ],
)
def test_classes_of_errors_seen_outside(text: str, expected: dict[str, float]) -> None:
    assert labels(text) == expected

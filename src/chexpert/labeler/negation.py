"""Negation and uncertainty: scoped triggers before and after a mention, in the style of NegEx.

Every trigger phrase of a sentence is found in one regex pass; each mention then looks back to the
nearest trigger before it and forward to the nearest trigger after it, within the clause:

- a *pre* trigger ("no", "without", "possible", "cannot exclude") acts on the mentions after it,
  until a terminator, another trigger or its word window ends its scope; the nearest one decides,
  so "no pneumothorax, possible small effusion" negates the pneumothorax only;
- a *post* trigger ("is not seen", "has resolved", "cannot be excluded", "?") acts on the
  mentions before it; a trigger that is followed by a mention of its own ("opacity, likely
  atelectasis") is that mention's pre trigger and leaves the earlier one alone;
- *pseudo* triggers look like negations but are not ("no change in the effusion", "not only"),
  and end the scope of a real one;
- *terminators* end every scope: "but", "however", "although", "which", "with", a new clause
  (", there is", ", mild ...", "and the ...");
- "or" and "and/or" between two mentions ("atelectasis or pneumonia") hedge both, unless a
  negation covers them ("no effusion or pneumothorax").

When a mention is in the scope of several triggers the original labeler's order decides:
uncertainty phrased as a negation ("cannot be excluded") first, then negation, then uncertainty.

>>> rules = trigger_rules()
>>> rules["no"].kind, rules["cannot be excluded"].kind, rules["no change"].kind
('negation', 'uncertainty', 'pseudo')
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from chexpert.labeler.phrases import PhraseMatcher

__all__ = ["Rule", "TriggerMatch", "Decision", "trigger_rules", "trigger_matcher", "find_triggers", "decide", "NEGATION", "UNCERTAINTY"]

NEGATION: Final = "negation"
UNCERTAINTY: Final = "uncertainty"
PSEUDO: Final = "pseudo"
TERMINATOR: Final = "terminator"
CHANGE: Final = "change"  # "unchanged", "increased": a statement about the mention before; ends post scopes
VERB: Final = "verb"  # "is", "are", "remains": ends the scope of a pre trigger ("no effusion is seen, tube ...")
FINDING: Final = "finding"  # "enlarged", "widened": what makes "heart size" a finding
STARTER: Final = "starter"  # "mild", "small": a new clause after a comma, nothing otherwise

# Words between a pre trigger and its mention ("no" ... "pulmonary edema" in a list of five).
_PRE_WINDOW: Final = 12
_POST_WINDOW: Final = 8
# "or" hedges only its immediate neighbours ("atelectasis or pneumonia").
_WEAK_WINDOW: Final = 3
# Triggers looked at on each side of a mention: far more than a real sentence holds within the
# windows above, and a bound on the work per mention in a pathological one.
_SCAN: Final = 24


@dataclass(frozen=True, slots=True)
class Rule:
    """What a trigger phrase does."""

    kind: str
    pre: bool = False  # acts on mentions after it
    post: bool = False  # acts on mentions before it
    precedence: int = 0  # 4 hedged negation ("cannot be excluded"), 3 negation, 2 uncertainty, 1 soft negation
    window: int = _PRE_WINDOW
    symmetric: bool = False  # "versus": hedges both sides even when a mention follows
    weak: bool = False  # "or": only between two mentions, never against a negation
    blocks_pre: bool = True  # ends the scope of pre triggers before it
    blocks_post: bool = True  # ends the scope of post triggers after it
    finding: bool = False  # makes an attribute ("heart size") a finding
    attributes_only: bool = False  # a negation for attributes ("heart size is not increased"), else pseudo
    explains: bool = False  # a pseudo trigger worth naming ("no change in" kept a mention positive)
    continues: bool = False  # "to suggest": a negation before it carries on ("no opacity to suggest pneumonia")
    devices_only: bool = False  # "removed", "removal": negates devices only
    starter: bool = False  # after a comma, starts a new clause: ", mild edema"

    @property
    def effective(self) -> bool:
        return self.precedence > 0


class TriggerMatch(NamedTuple):
    """A trigger phrase found in a sentence (offsets within the sentence's text)."""

    start: int
    end: int
    text: str
    rule: Rule


@dataclass(frozen=True, slots=True)
class Decision:
    """How one mention reads: 1.0 positive, 0.0 negative, -1.0 uncertain; the trigger that decided."""

    value: float
    trigger: TriggerMatch | None
    finding: bool  # a finding word or a trigger stands in the mention's clause (for attributes)


def _rule(kind: str, *, pre: bool = False, post: bool = False, **kwargs: object) -> Rule:
    precedence = {NEGATION: 3, UNCERTAINTY: 2}.get(kind, 0)
    blocks = {
        TERMINATOR: (True, True),
        STARTER: (False, False),
        PSEUDO: (True, True),
        CHANGE: (False, True),
        VERB: (True, False),
        FINDING: (False, False),
    }.get(kind, (True, True))
    fields: dict[str, object] = {"blocks_pre": blocks[0], "blocks_post": blocks[1]}
    fields.update(kwargs)
    return Rule(kind, pre, post, precedence, **fields)  # type: ignore[arg-type]


_PRE_NEGATIONS: Final = (
    "no",
    "not",
    "without",
    "w/o",
    "free of",
    "negative for",
    "no evidence of",
    "no evidence for",
    "no radiographic evidence of",
    "no radiographic evidence for",
    "no imaging evidence of",
    "no convincing evidence of",
    "no convincing evidence for",
    "no definite evidence of",
    "no definite",
    "no definitive",
    "no obvious",
    "no clear",
    "no convincing",
    "no signs of",
    "no sign of",
    "no findings of",
    "no findings to suggest",
    "no finding to suggest",
    "no findings suggestive of",
    "no findings suspicious for",
    "no findings concerning for",
    "no evidence to suggest",
    "no features of",
    "nothing to suggest",
    "no suggestion of",
    "no appreciable",
    "no visible",
    "no significant",
    "no substantial",
    "no focal",
    "absence of",
    "resolution of",
    "interval resolution of",
    "complete resolution of",
    "resolved",
    "clear of",
    "clearing of",
    "interval clearing of",
    "removal of",
    "interval removal of",
    "rather than",
    "never",
    "neither",
    "nor",
    "without evidence of",
    "without signs of",
    "without definite",
    "free from",
    "no residual",
    "no new",
    "no recurrent",
    "no recurrence of",
    "no longer",
    "no other",
    "no evident",
    "no detectable",
    "no identifiable",
    "no visualized",
    "no radiographic signs of",
    "not consistent with",
    "interval removal",
    "status post removal of",
    "no suspicious",
    "no definite suspicious",
    "no worrisome",
    "no concerning",
    "previously removed",
    "reexpansion of",
    "re expansion of",
    "interval reexpansion of",
    "interval re expansion of",
    "no longer",
    "is no longer",
    "are no longer",
    "s/p removal of",
    "after removal of",
    "following removal of",
    "resolved",
    "has resolved",
    "no longer any",
    "no findings of",
    "no radiographic findings of",
    "no findings to suggest",
    "ruled out",
)
# Negations that also read backwards ("the effusion is absent", "heart size is normal").
_BOTH_NEGATIONS: Final = (
    "absent",
    "negative",
    "normal",
    "unremarkable",
    "within normal limits",
    "normal in size",
    "of normal size",
    "normal size",
    "normal sized",
    "top normal",
    "top of normal",
    "upper limits of normal",
    "upper limit of normal",
    "upper normal",
    "high normal",
    "upper range of normal",
    "upper limits normal",
    "upper limit normal",
    "at the upper limits of normal",
    "at upper limits of normal",
    "top normal in size",
    "upper normal in size",
    "high normal in size",
    "top normal size",
    "within the upper limits of normal",
    "at the upper limit of normal",
    "low normal",
    "normal caliber",
    "nl",
    "wnl",
)
_POST_NEGATION_VERBS: Final = (
    "seen",
    "identified",
    "visualized",
    "visualised",
    "appreciated",
    "demonstrated",
    "present",
    "evident",
    "detected",
    "noted",
    "visible",
    "apparent",
    "observed",
    "shown",
    "definitely seen",
    "clearly seen",
    "convincingly seen",
    "convincingly identified",
    "definitely identified",
    "definitely visualized",
    "clearly identified",
    "clearly visualized",
    "clearly demonstrated",
    "convincingly demonstrated",
    "definitely demonstrated",
    "radiographically evident",
    "readily apparent",
    "found",
    "recognized",
    "discernible",
    "discerned",
)
_POST_NEGATIONS: Final = (
    "has resolved",
    "have resolved",
    "resolved",
    "has cleared",
    "have cleared",
    "cleared",
    "is gone",
    "are gone",
    "removed",
    "has been removed",
    "have been removed",
    "was removed",
    "were removed",
    "been removed",
    "withdrawn",
    "has been withdrawn",
    "has been discontinued",
    "discontinued",
    "is no longer",
    "are no longer",
    "excluded",
    "is excluded",
    "ruled out",
    "has been ruled out",
    "normalized",
    "has normalized",
    "within normal range",
    "is negative",
    "not enlarged",
    "not widened",
    "not dilated",
    "not significantly enlarged",
    "not grossly enlarged",
    "not appreciably enlarged",
    "not enlarged in size",
    "is normal",
    "are normal",
    "remains normal",
    "remain normal",
    "is unremarkable",
    "are unremarkable",
    "not identified",
    "none",
    "have all been removed",
    "has since been removed",
    "have since been removed",
    "were all removed",
    "all removed",
    "have both been removed",
    "both removed",
    "has been pulled",
    "have been pulled",
    "reexpanded",
    "re expanded",
    "has reexpanded",
    "has re expanded",
    "which has resolved",
    "which have resolved",
    "that has resolved",
    "which has cleared",
    "which have cleared",
    "that has cleared",
    "no longer",
    "is no longer",
    "are no longer",
)
# "The radiograph shows no pneumothorax": a verb of seeing and "no" negate what follows, as "no"
# alone does; written as one phrase, so that the verb never takes "no" away from the mention.
_VERB_NEGATIONS: Final = tuple(
    f"{verb} {no}"
    for verb in (
        "show",
        "shows",
        "showed",
        "shown",
        "demonstrate",
        "demonstrates",
        "demonstrated",
        "reveal",
        "reveals",
        "revealed",
        "display",
        "displays",
        "exhibit",
        "exhibits",
        "has",
        "have",
        "had",
        "with",
        "there is",
        "there are",
        "there has been",
        "there was",
        "there were",
        "contains",
        "contain",
        "is",
        "are",
        "again",
        "otherwise",
        "and",
        "but",
    )
    for no in (
        "no",
        "negative for",
        "no evidence of",
        "no signs of",
        "no sign of",
        "no definite",
        "no focal",
        "no acute",
        "no significant",
        "no new",
        "no other",
        "no obvious",
        "no visible",
        "no residual",
        "no findings of",
    )
)
# "Opacity may be secondary to edema": a hedge on the cause, which "secondary to" alone would end.
_HEDGED_CAUSES: Final = tuple(
    f"{hedge} {link}"
    for hedge in (
        "may be",
        "might be",
        "could be",
        "can be",
        "possibly",
        "probably",
        "likely",
        "presumably",
        "perhaps",
        "most likely",
        "may",
        "could",
        "might",
        "which may be",
        "which could be",
        "which is likely",
        "may also be",
        "may partly be",
        "possibly partly",
        "likely partly",
        "perhaps partly",
        "potentially",
    )
    for link in (
        "secondary to",
        "due to",
        "related to",
        "from",
        "caused by",
        "reflecting",
        "representing",
        "a result of",
        "the result of",
        "attributable to",
        "a sequela of",
        "in the setting of",
        "associated with",
    )
)
# Hedges written after the finding ("pneumonia is in the differential", "another consideration is
# pneumonia" reads forwards).
_POST_HEDGES: Final = (
    "in the differential",
    "is in the differential",
    "are in the differential",
    "remains in the differential",
    "remain in the differential",
    "in the differential diagnosis",
    "is in the differential diagnosis",
    "is a differential consideration",
    "a differential consideration",
    "differential consideration",
    "is also a consideration",
    "also a consideration",
    "another consideration",
    "would be another consideration",
    "is another consideration",
    "another possibility",
    "is another possibility",
    "would be another possibility",
    "are considerations",
    "is a concern",
    "a concern",
    "is of concern",
    "of concern",
    "is a possibility",
    "is also possible",
    "also possible",
    "not excluded",
    "is not excluded",
    "are not excluded",
    "can not be excluded",
    "should be considered",
    "should also be considered",
    "could also be considered",
    "may also be considered",
    "is suggested",
    "are suggested",
    "suspected",
    "is not ruled out",
    "remains possible",
    "remain possible",
    "is questioned",
    "not entirely excluded",
)
_CONSIDERATIONS: Final = (
    "another consideration is",
    "another consideration would be",
    "other considerations include",
    "other considerations are",
    "other considerations would include",
    "a consideration is",
    "considerations include",
    "differential considerations are",
    "differential considerations would include",
    "the differential includes",
    "differential would include",
    "differential also includes",
    "alternatively",
    "alternative consideration",
    "an alternative is",
    "concern is for",
    "concern would be",
    "concern would be for",
    "consideration would be",
    "considerations would include",
    "differential includes",
    "the differential would include",
)

# Negations that only a device can take: "pneumothorax after chest tube removal" keeps the pneumothorax.
_DEVICE_NEGATIONS: Final = (
    "removal",
    "after removal",
    "following removal",
    "since removal",
    "status post removal",
    "removed",
    "has been removed",
    "have been removed",
    "was removed",
    "were removed",
    "been removed",
    "have all been removed",
    "has since been removed",
    "have since been removed",
    "were all removed",
    "all removed",
    "have both been removed",
    "both removed",
    "has been pulled",
    "have been pulled",
    "withdrawn",
    "has been withdrawn",
    "has been discontinued",
    "discontinued",
)
# "Cannot exclude" and its kin: uncertainty triggers before a finding, and hedges that win over a
# negation (_HEDGED_NEGATIONS), one list for both.
_CANNOT_EXCLUDE: Final = (
    "cannot exclude",
    "can not exclude",
    "cannot rule out",
    "can not rule out",
    "can't exclude",
    "can't rule out",
    "cannot be excluded",
    "can not be excluded",
    "cannot be ruled out",
    "can not be ruled out",
    "difficult to exclude",
    "would be difficult to exclude",
    "impossible to exclude",
    "not excluded",
    "not ruled out",
)
_PRE_UNCERTAINTIES: Final = (
    "may",
    "might",
    "could",
    "can represent",
    "may represent",
    "may reflect",
    "may be",
    "could be",
    "might represent",
    "could represent",
    "could reflect",
    "might reflect",
    "may indicate",
    "could indicate",
    "may include",
    "suggest",
    "suggests",
    "suggesting",
    "suggestive of",
    "suggestion of",
    "suggested",
    "suspicious for",
    "suspicious of",
    "suspicion for",
    "suspicion of",
    "suspicious",
    "concern for",
    "concerning for",
    "concerning",
    "worrisome for",
    "worrisome",
    "worrying for",
    "question of",
    "query",
    "r/o",
    "rule out",
    "to rule out",
    "evaluate for",
    "evaluation for",
    "assess for",
    "eval for",
    "to exclude",
    "exclude",
    "differential includes",
    "differential diagnosis includes",
    "differential diagnosis",
    "differential considerations include",
    "to suggest",
    "to indicate",
    "to explain",
    "that would suggest",
    "that would explain",
    "differential",
    "consider",
    "considered",
    "but may",
    "but might",
    "but could",
    "but probably",
    "but likely",
    "but possibly",
    "but may be",
    "but could be",
    "although may be",
    "though may be",
    "consideration of",
    "consideration for",
    "perhaps",
    "maybe",
    "potential",
    "potentially",
    "possibility of",
    "the possibility of",
    "likelihood of",
    "favor",
    "favoring",
    "favour",
    "representing either",
    "either",
    "presumably",
    "presumed",
    "possibly",
    "probably",
    *_CANNOT_EXCLUDE,
    "in the differential",
    "may have",
    "question",
    "questioned",
    "raising the possibility of",
    "raises the possibility of",
    "raise the possibility of",
    "raising concern for",
    "raises concern for",
    "clinical correlation for",
    "correlate clinically for",
    "correlate for",
    "correlation for",
    "recommend correlation for",
    "favored to represent",
    "favored to be",
    "may be due to",
    "could be due to",
    "likely due to",
    "likely represents",
    "likely reflects",
    "likely representing",
    "probably represents",
    "possibly representing",
    "possibly reflecting",
    "suspicious for",
    "highly suspicious for",
)
# Hedges that read both ways ("possible effusion", "effusion is possible").
_BOTH_UNCERTAINTIES: Final = (
    "possible",
    "probable",
    "likely",
    "most likely",
    "more likely",
    "less likely",
    "unlikely",
    "not likely",
    "suspected",
    "suspect",
    "questionable",
    "questionably",
    "equivocal",
    "borderline",
    "indeterminate",
    "uncertain",
    "unclear",
    "?",
    "(?)",
    "favored",
    "favoured",
    "borderline enlarged",
    "borderline enlargement",
    "borderline size",
    "borderline in size",
    "is a consideration",
    "would be a consideration",
    "would be consideration",
    "in the appropriate clinical setting",
    "in the proper clinical setting",
    "in the right clinical setting",
    "in the correct clinical setting",
    "in the appropriate clinical context",
    "in the appropriate setting",
    "a consideration",
    "not entirely excluded",
    "not completely excluded",
    "cannot be entirely excluded",
    "can not be entirely excluded",
    "not be excluded",
    "could not be excluded",
    "difficult to exclude",
    "is difficult to exclude",
    "are difficult to exclude",
    "difficult to rule out",
    "hard to exclude",
    "not definitely excluded",
    "cannot be completely excluded",
    "is not excluded",
    "are not excluded",
    "may also contribute",
    "may contribute",
    "could contribute",
    "may be contributing",
    "could be contributing",
    "may also be contributing",
    "may also be present",
    "possibly contributing",
    "might contribute",
    "may also be seen",
    "could also be present",
    "not totally excluded",
    "not entirely ruled out",
    "is not ruled out",
    "is possible",
    "are possible",
    "is suspected",
    "are suspected",
    "is questioned",
    "is likely",
    "are likely",
    "is probable",
    "is favored",
    "may be present",
    "could be present",
    "might be present",
    "may be seen",
    "is not entirely excluded",
    "cannot be excluded",
    "can not be excluded",
    "cannot be ruled out",
    "can not be ruled out",
    "not excluded",
    "not ruled out",
    "is equivocal",
    "is questionable",
    "can't be excluded",
    "can't be ruled out",
    "is not completely excluded",
    "is a possibility",
    "a possibility",
    "is considered",
    "are considered",
    "could be considered",
    "is uncertain",
    "is unclear",
    "is indeterminate",
    "not clearly excluded",
    "not well excluded",
    "not definitely ruled out",
)
# Hedges phrased as negations: they win over a negation ("no definite effusion, though cannot be excluded").
_HEDGED_NEGATIONS: Final = frozenset(
    {
        *_CANNOT_EXCLUDE,
        "not entirely excluded",
        "not completely excluded",
        "cannot be entirely excluded",
        "can not be entirely excluded",
        "not be excluded",
        "could not be excluded",
        "not definitely excluded",
        "cannot be completely excluded",
        "is not excluded",
        "are not excluded",
        "not totally excluded",
        "not entirely ruled out",
        "is not ruled out",
        "is not entirely excluded",
        "can't be excluded",
        "can't be ruled out",
        "is not completely excluded",
        "not clearly excluded",
        "not well excluded",
        "not definitely ruled out",
        "unlikely",
        "less likely",
        "not likely",
    }
)
_SYMMETRIC: Final = (
    "versus",
    "vs",
    "vs.",
    "v.",
    "favored over",
    "is favored over",
    "are favored over",
    "favoured over",
    "more likely than",
    "less likely than",
)
# Hedges that carry a negation before them on: "no focal opacity to suggest pneumonia".
_CONTINUING: Final = (
    "suggest",
    "suggests",
    "suggesting",
    "suggestive of",
    "to suggest",
    "concerning for",
    "suspicious for",
    "worrisome for",
    "to indicate",
    "to explain",
    "suspicious",
    "concerning",
    "worrisome",
)
# Negations that admit doubt: a hedge in the same scope wins ("questionable line, not clearly seen").
_SOFT: Final = ("clearly", "definitely", "convincingly", "well", "readily", "confidently")
# Hedges that turn a finding into a possible artefact of technique: its existence is uncertain.
_ARTIFACT_HEDGES: Final = (
    "may be",
    "could be",
    "might be",
    "possibly",
    "likely",
    "probably",
    "is likely",
    "is probably",
    "may",
    "could",
    "partly",
    "partially",
    "in part",
    "at least partly",
    "at least in part",
    "presumably",
    "which may be",
    "which could be",
    "which is likely",
    "which is probably",
    "this may be",
    "but this may be",
    "although this may be",
    "though this may be",
    "but this could be",
    "although this could be",
    "but this is likely",
    "possibly partly",
    "likely partly",
    "which may",
    "but this may",
    "although this may",
)
_ARTIFACT_LINKS: Final = (
    "",
    "due to",
    "related to",
    "secondary to",
    "from",
    "caused by",
    "a result of",
    "the result of",
    "reflect",
    "represent",
    "reflecting",
    "representing",
    "explained by",
    "attributable to",
)
_ARTIFACT_CAUSES: Final = (
    "projectional",
    "technical",
    "technique",
    "technical factors",
    "rotation",
    "patient rotation",
    "rotated",
    "positioning",
    "patient positioning",
    "overlying soft tissue",
    "overlapping soft tissue",
    "soft tissue overlap",
    "superimposed soft tissue",
    "low lung volumes",
    "low lung volume",
    "supine technique",
    "supine positioning",
    "supine position",
    "ap technique",
    "portable technique",
    "ap projection",
    "lordotic positioning",
    "lordotic projection",
    "pericardial fat",
    "a pericardial fat pad",
    "fat pad",
    "epicardial fat",
    "mediastinal fat",
    "skin fold",
    "a skin fold",
    "the low lung volumes",
    "the supine technique",
    "the ap technique",
    "the portable technique",
    "the rotation",
    "the projection",
    "projection",
    "shallow inspiration",
    "poor inspiration",
    "low inspiratory volumes",
    "the technique",
    "a nipple shadow",
    "nipple shadow",
    "overlying breast tissue",
    "breast tissue",
    "vascular crowding",
    "crowding of vessels",
    "overlapping vessels",
)
_WEAK: Final = ("or", "and/or", "and or")
_PSEUDOS: Final = (
    "no change",
    "no significant change",
    "no interval change",
    "no substantial change",
    "no appreciable change",
    "no significant interval change",
    "no definite change",
    "no notable change",
    "no evidence of change",
    "no change in",
    "without change",
    "without interval change",
    "without significant change",
    "no increase",
    "no significant increase",
    "no decrease",
    "no significant decrease",
    "no worsening",
    "no significant worsening",
    "accentuated by",
    "exaggerated by",
    "likely accentuated by",
    "likely exaggerated by",
    "possibly accentuated by",
    "partly accentuated by",
    "probably accentuated by",
    "accentuated",
    "exaggerated",
    "age indeterminate",
    "of indeterminate age",
    "indeterminate age",
    "uncertain age",
    "of uncertain age",
    "uncertain chronicity",
    "indeterminate chronicity",
    "of indeterminate chronicity",
    "of uncertain chronicity",
    "of uncertain significance",
    "uncertain significance",
    "of unclear significance",
    "unclear significance",
    "of undetermined significance",
    "clinical significance",
    "uncertain etiology",
    "no improvement",
    "no significant improvement",
    "not only",
    "not changed",
    "not significantly changed",
    "not substantially changed",
    "not appreciably changed",
    "has not changed",
    "have not changed",
    "not increased",
    "not decreased",
    "not worsened",
    "not improved",
    "not significantly increased",
    "not significantly decreased",
    "no further",
    "gram negative",
    "not well seen",
    "not well visualized",
    "not well evaluated",
    "not well assessed",
    "cannot be assessed",
    "can not be assessed",
    "not assessed",
    "cannot be evaluated",
    "not evaluated",
    "partially resolved",
    "nearly resolved",
    "almost resolved",
    "near complete resolution",
    "partial resolution",
    "incompletely resolved",
    "almost completely resolved",
    "largely resolved",
    "mostly resolved",
    "near resolution",
    "near-complete resolution",
    "nearly completely resolved",
    "not completely resolved",
    "not entirely resolved",
    "not fully resolved",
    "not resolved",
    "has not resolved",
    "not larger",
    "is not larger",
    "no larger",
    "no further increase",
    "no further enlargement",
    "has not increased",
    "have not increased",
    "questionable position",
    "questionable positioning",
    "uncertain position",
    "possible malposition",
    "possibly malpositioned",
    "could be advanced",
    "could be withdrawn",
    "could be retracted",
    "could be pulled back",
    "may be advanced",
    "may be withdrawn",
    "may be retracted",
    "may be pulled back",
    "can be advanced",
    "can be withdrawn",
    "should be advanced",
    "should be withdrawn",
    "have not resolved",
    "not been removed",
    "not removed",
    "no gross change",
    "no short interval change",
    "not only",
    "no substantial interval change",
    "no appreciable interval change",
    "no relevant change",
    "unchanged",
    "no significant change in",
    "without appreciable change",
    "no obvious change",
)
_TERMINATORS: Final = (
    "but",
    "however",
    "although",
    "though",
    "except",
    "except for",
    "aside from",
    "apart from",
    "other than",
    "besides",
    "which",
    "whereas",
    "while",
    "yet",
    "nevertheless",
    "nonetheless",
    "otherwise",
    "with",
    "with the exception of",
    "there is",
    "there are",
    "there has been",
    "there have been",
    "there was",
    "there were",
    "due to",
    "secondary to",
    "related to",
    "in addition",
    "additionally",
    "that",
    "who",
    "and the",
    "and a",
    "and an",
    "and there",
    "since",
    "because",
    "given",
    "when",
    "if",
    "where",
    "in the setting of",
    "in setting of",
    "in the context of",
    ";",
    "compared to",
    "compared with",
)
_CHANGES: Final = (
    "resolving",
    "improving",
    "stable",
    "unchanged",
    "decreased",
    "increased",
    "improved",
    "worsened",
    "worsening",
    "persistent",
    "persists",
    "persist",
    "again seen",
    "again noted",
    "redemonstrated",
    "re demonstrated",
    "present",
    "seen",
    "noted",
    "has decreased",
    "has increased",
    "has improved",
    "has worsened",
    "slightly improved",
    "slightly decreased",
    "slightly increased",
    "minimally changed",
    "decreasing",
    "increasing",
    "new",
    "similar",
    "grossly unchanged",
    "essentially unchanged",
    "little changed",
    "enlarging",
    "progressed",
    "has progressed",
    "developed",
    "has developed",
    "identified",
    "demonstrated",
    "visualized",
    "evident",
    "appreciated",
    "again demonstrated",
    "remains",
    "remain",
    "is present",
    "are present",
    "is seen",
    "are seen",
)
# Verbs, and the nouns of a device's position, end the scope of a pre trigger: "no effusion is seen,
# tube in place"; "questionable position of the NG tube" hedges the position, not the tube.
_VERBS: Final = (
    "is",
    "are",
    "was",
    "were",
    "has been",
    "have been",
    "has",
    "have",
    "appears",
    "appear",
    "appeared",
    "seems",
    "measures",
    "measuring",
    "position",
    "positioning",
    "placement",
    "location",
    "malposition",
    "course",
    "fracture of",
    "fractured",
    "but appears",
    "but appear",
    "but is",
    "but are",
    "but seems",
    "but remains",
)
_FINDINGS: Final = (
    "enlarged",
    "enlargement",
    "enlarging",
    "large",
    "larger",
    "widened",
    "widening",
    "wide",
    "prominent",
    "prominence",
    "dilated",
    "dilatation",
    "dilation",
    "globular",
    "big",
    "expanded",
    "engorged",
    "abnormal",
    "mildly enlarged",
    "moderately enlarged",
    "severely enlarged",
    "markedly enlarged",
    "massively enlarged",
    "slightly enlarged",
    "minimally enlarged",
    "increased in size",
    "enlarged in size",
    "increased size",
    "cardiomegaly",
    "elevated",
    "elevation",
    "flattened",
    "flattening",
    "tortuous",
    "tortuosity",
    "unfolded",
    "unfolding",
    "ectatic",
    "calcified",
    "calcification",
    "calcifications",
    "fullness",
    "full",
    "aneurysmal",
)
# A new clause after a comma or "and": ", mild edema", "and small effusion" are not in a negated list.
# (Not laterality, location or pattern words: "no right effusion, left pneumothorax or focal
# consolidation" is one negated list.)
_CLAUSE_STARTERS: Final = (
    "mild",
    "mildly",
    "moderate",
    "moderately",
    "severe",
    "severely",
    "small",
    "large",
    "minimal",
    "minimally",
    "trace",
    "tiny",
    "slight",
    "slightly",
    "subtle",
    "extensive",
    "marked",
    "markedly",
    "moderate sized",
    "small to moderate",
    "moderate to large",
    "persistent",
    "stable",
    "unchanged",
    "increased",
    "increasing",
    "decreased",
    "decreasing",
    "improved",
    "improving",
    "worsened",
    "worsening",
    "new",
    "newly",
    "interval",
    "residual",
    "known",
    "chronic",
    "old",
    "again",
    "there",
    "the",
    "a",
    "an",
    "this",
    "these",
    "those",
    "it",
    "its",
    "they",
    "status post",
    "s/p",
)


def _add(rules: dict[str, Rule], phrase: str, rule: Rule) -> None:
    """Enter ``phrase``; listed twice with the same effect, it reads both ways ("resolved")."""
    old = rules.get(phrase)
    if old is not None and old.kind == rule.kind and old.precedence == rule.precedence:
        rule = replace(rule, pre=rule.pre or old.pre, post=rule.post or old.post, window=min(rule.window, old.window))
    rules[phrase] = rule


# "Heart size at the upper limit of normal to mildly enlarged": a range across the line is a hedge.
_RANGES: Final = tuple(
    f"{lead}{low} {joiner} {high}"
    for lead in ("", "at the ", "at ", "within the ", "is ", "at the upper ")
    for low in ("upper limit of normal", "upper limits of normal", "top normal", "high normal", "normal", "borderline", "upper normal")
    for joiner in ("to", "or", "versus", "vs")
    for high in ("mildly enlarged", "slightly enlarged", "minimally enlarged", "mild cardiomegaly", "enlarged", "mildly increased")
)


@functools.cache
def trigger_rules() -> dict[str, Rule]:
    """Every trigger phrase and its :class:`Rule` (a later table wins over an earlier one).

    >>> rules = trigger_rules()
    >>> rules["resolved"].pre, rules["resolved"].post, rules["cannot be excluded"].precedence
    (True, True, 4)
    """
    rules: dict[str, Rule] = {}
    for phrase in _VERBS:
        rules[phrase] = _rule(VERB)
    for phrase in _CHANGES:
        rules[phrase] = _rule(CHANGE)
    for phrase in _FINDINGS:
        rules[phrase] = _rule(FINDING, finding=True)
    rules["increased"] = _rule(CHANGE, finding=True)
    rules["enlarging"] = _rule(CHANGE, finding=True)
    for phrase in _TERMINATORS:
        rules[phrase] = _rule(TERMINATOR)
    for joiner in ("and", "with", "as well as", "plus"):
        for word in _CLAUSE_STARTERS:
            phrase = f"{joiner} {word}"
            if phrase not in rules:
                rules[phrase] = _rule(TERMINATOR)
    # After a comma these start a clause; find_triggers looks for the comma.
    for word in _CLAUSE_STARTERS:
        rules[word] = replace(rules[word], starter=True) if word in rules else _rule(STARTER, starter=True)
    for phrase in _PRE_NEGATIONS:
        _add(rules, phrase, _rule(NEGATION, pre=True))
    for phrase in _BOTH_NEGATIONS:
        _add(rules, phrase, _rule(NEGATION, pre=True, post=True, window=6))
    for verb in _POST_NEGATION_VERBS:
        for negator in ("not", "no longer", "not been", "never been", "not be", "may not be", "might not be", "cannot be", "can not be"):
            _add(rules, f"{negator} {verb}", _rule(NEGATION, post=True))
    for phrase in _POST_NEGATIONS:
        _add(rules, phrase, _rule(NEGATION, post=True))
    for phrase in _DEVICE_NEGATIONS:
        rules[phrase] = replace(rules.get(phrase, _rule(NEGATION, post=True)), devices_only=True)
    for phrase in ("not increased", "not significantly increased", "not increased in size"):
        rules[phrase] = _rule(NEGATION, post=True, attributes_only=True)
    for phrase in _VERB_NEGATIONS:
        if phrase not in rules or rules[phrase].kind in (VERB, CHANGE, TERMINATOR, STARTER, FINDING):
            rules[phrase] = _rule(NEGATION, pre=True)
    for phrase in _PRE_UNCERTAINTIES + _HEDGED_CAUSES + _CONSIDERATIONS:
        _add(rules, phrase, _rule(UNCERTAINTY, pre=True))
    for phrase in _POST_HEDGES:
        _add(rules, phrase, _rule(UNCERTAINTY, post=True))
    for phrase in _BOTH_UNCERTAINTIES:
        _add(rules, phrase, _rule(UNCERTAINTY, pre=True, post=True))
    for phrase in _SYMMETRIC:
        rules[phrase] = _rule(UNCERTAINTY, pre=True, post=True, symmetric=True)
    for phrase in _WEAK:
        rules[phrase] = _rule(UNCERTAINTY, pre=True, post=True, weak=True, blocks_pre=False, blocks_post=False)
    for phrase in _PSEUDOS:
        rules[phrase] = _rule(PSEUDO)
    for phrase in _RANGES:
        rules[phrase] = _rule(UNCERTAINTY, pre=True, post=True)
    for phrase in _CONTINUING:
        rules[phrase] = replace(rules[phrase], continues=True)
    for phrase, rule in rules.items():
        if phrase in _HEDGED_NEGATIONS:
            rules[phrase] = replace(rule, kind=UNCERTAINTY, precedence=4)
        elif rule.kind == NEGATION and any(word in phrase.split() for word in _SOFT):
            rules[phrase] = replace(rule, precedence=1)  # "not clearly seen": a hedge beside it wins
        elif rule.kind == PSEUDO and phrase.split(" ", 1)[0] in ("no", "not", "without", "has", "have", "cannot", "can"):
            rules[phrase] = replace(rule, explains=True)
    return rules


@functools.cache
def trigger_matcher() -> PhraseMatcher[Rule]:
    """The compiled matcher of :func:`trigger_rules`."""
    return PhraseMatcher(trigger_rules())


def find_triggers(text: str) -> list[TriggerMatch]:
    """The triggers in one sentence's lower-case text, left to right.

    >>> [(t.text, t.rule.kind) for t in find_triggers("no effusion or pneumothorax, mild atelectasis")]
    [('no', 'negation'), ('or', 'uncertainty'), (', mild', 'terminator')]
    """
    matcher = trigger_matcher()
    lookup = matcher.value
    found = [TriggerMatch(m.start(), m.end(), m.group(), lookup(m)) for m in matcher.finditer(text)]
    if any(t.rule.starter for t in found):
        found = [_clause_start(text, t) if t.rule.starter and not _list_goes_on(text, found, k) else t for k, t in enumerate(found)]
        found = [t for t in found if t.rule.kind != STARTER]
    causes, artifacts = _artifact_patterns()
    if causes.search(text):  # rare: only then the slower pattern of hedge, link and cause
        for match in artifacts.finditer(text):
            a, b = match.span()
            found = [t for t in found if t.end <= a or t.start >= b]
            found.append(TriggerMatch(a, b, match.group(), _ARTIFACT))
        found.sort()
    if "," in text:
        found = _comma_clauses(text, found)
    return found


# "The mediastinum appears widened, which may be related to supine technique": a hedge that the
# finding is an artefact is a hedge on the finding, read across the comma and "which" before it.
_ARTIFACT: Final = Rule(UNCERTAINTY, post=True, precedence=2, symmetric=True)


@functools.cache
def _artifact_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    def alternatives(phrases: Sequence[str]) -> str:
        return PhraseMatcher(dict.fromkeys(p for p in phrases if p)).pattern.pattern

    causes = re.compile(alternatives(_ARTIFACT_CAUSES))
    links = alternatives(_ARTIFACT_LINKS)
    artifacts = re.compile(rf"{alternatives(_ARTIFACT_HEDGES)} (?:{links} )?(?:(?:the|a|an) )?{alternatives(_ARTIFACT_CAUSES)}")
    return causes, artifacts


_CLAUSE: Final = Rule(TERMINATOR)


def _list_goes_on(text: str, found: Sequence[TriggerMatch], k: int) -> bool:
    """The item after a comma is one of a list that goes on to ", or" / "nor": "No consolidation,
    large effusion, or pneumothorax" negates all three, whatever adjectives the items carry."""
    for trigger in found[k + 1 : k + 1 + _SCAN]:
        rule = trigger.rule
        if rule.weak or trigger.text == "nor":
            return trigger.text == "nor" or text[: trigger.start].rstrip().endswith(",")
        if rule.kind in (TERMINATOR, PSEUDO, VERB) or (rule.effective and not rule.starter):
            return False
    return False


def _comma_clauses(text: str, found: list[TriggerMatch]) -> list[TriggerMatch]:
    """A comma before a trigger that reads forwards only ("no", "without") ends the clause before it:
    "heart size within normal limits, no mediastinal widening"."""
    out: list[TriggerMatch] = []
    for trigger in found:
        rule = trigger.rule
        if rule.effective and rule.pre and not rule.post and not rule.weak:
            at = trigger.start
            while at > 0 and text[at - 1] == " ":
                at -= 1
            if at > 0 and text[at - 1] == "," and (not out or out[-1].end <= at - 1):
                out.append(TriggerMatch(at - 1, at, ",", _CLAUSE))
        out.append(trigger)
    return out


def _clause_start(text: str, trigger: TriggerMatch) -> TriggerMatch:
    """A starter word after a comma ends the clause before it (", mild edema")."""
    at = trigger.start
    while at > 0 and text[at - 1].isspace():
        at -= 1
    if at > 0 and text[at - 1] == ",":
        return TriggerMatch(at - 1, trigger.end, text[at - 1 : trigger.end], _CLAUSE)
    return trigger


def _words(text: str, start: int, end: int) -> int:
    """Words between two offsets of a flattened sentence (one space per gap, near enough)."""
    return text.count(" ", start, end) if end > start else 0


def decide(
    text: str,
    triggers: Sequence[TriggerMatch],
    mentions: Sequence[tuple[int, int]],
    index: int,
    *,
    attribute: bool = False,
    device: bool = False,
) -> Decision:
    """Read mention ``index`` of ``mentions`` (sorted ``(start, end)`` offsets in ``text``).

    ``text`` is the sentence flattened (lower case, every whitespace character a space) and
    ``triggers`` its :func:`find_triggers`. An attribute mention ("heart size") that no trigger
    covers is a finding only with a finding word in its clause (``Decision.finding``). A hedge
    after a ``device`` is about its position ("the tube tip is likely in the right atrium"), not
    about whether it is there, and is ignored.

    >>> sentence = "no effusion or pneumothorax, possible atelectasis"
    >>> mentions = [(3, 11), (15, 27), (38, 49)]
    >>> [decide(sentence, find_triggers(sentence), mentions, i).value for i in range(3)]
    [0.0, 0.0, -1.0]
    """
    start, end = mentions[index]
    if attribute and _LOCATIVE.search(text, max(0, start - 40), start):
        return Decision(1.0, None, False)  # "posterior to the heart": a place, not the heart described
    candidates: list[TriggerMatch] = []
    stopped: TriggerMatch | None = None  # a pseudo trigger that ended a negation's scope: the explanation
    weak: TriggerMatch | None = None
    # Triggers are sorted and do not overlap: those around the mention, then at most _SCAN on each
    # side are looked at, so that a mention costs the same however long its sentence.
    before = bisect.bisect_right(triggers, start, key=_end)  # triggers[:before] end by the mention's start
    after = bisect.bisect_left(triggers, end, key=_start)  # triggers[after:] start at or after its end
    for trigger in triggers[before:after]:
        if trigger.start <= start and trigger.end >= end and trigger.rule.effective and not trigger.rule.weak:
            candidates.append(trigger)  # "not widened" around "widened"
    # Back to the nearest trigger before the mention.
    for trigger in reversed(triggers[max(before - _SCAN, 0) : before]):
        rule = trigger.rule
        if rule.weak:
            if weak is None and _words(text, trigger.end, start) <= _WEAK_WINDOW and _mention_ends_near(text, mentions, trigger.start):
                weak = trigger
            continue
        if rule.effective and not (rule.attributes_only and not attribute) and not (rule.devices_only and not device):
            # A trigger that reads both ways and ends its clause with a comma belongs to what came
            # before it: "heart size upper limits of normal, aortic tortuosity".
            if rule.pre and _words(text, trigger.end, start) < rule.window and not (rule.post and text.startswith(",", trigger.end)):
                candidates.append(trigger)
            break
        if rule.kind == PSEUDO or rule.attributes_only or rule.devices_only:
            stopped = trigger if rule.explains else None
            if rule.kind == PSEUDO:
                weak = None  # "no change in X or Y": a list, not alternatives
            break
        if rule.blocks_pre:
            break
    # On to the nearest trigger after it.
    for trigger in triggers[after : after + _SCAN]:
        rule = trigger.rule
        if rule.weak:
            if weak is None and _words(text, end, trigger.start) <= _WEAK_WINDOW and _mention_starts_near(text, mentions, trigger.end):
                weak = trigger
            continue
        if rule.effective and not (rule.attributes_only and not attribute) and not (rule.devices_only and not device):
            if device and rule.kind == UNCERTAINTY and rule.precedence == 2 and not rule.symmetric:
                break
            # An attribute is the subject of what follows: "the heart may be enlarged".
            acts_after = rule.post or (attribute and rule.kind == UNCERTAINTY)
            if acts_after and (rule.symmetric or not rule.pre or not _mention_follows(triggers, mentions, trigger, len(text), text)):
                if _words(text, _list_end(text, mentions, index, trigger.start), trigger.start) <= _POST_WINDOW:
                    candidates.append(trigger)
            break  # a pre-only trigger, or a hedge of the next mention ("opacity, likely atelectasis")
        if rule.kind == PSEUDO or rule.attributes_only or rule.devices_only:
            stopped = stopped or (trigger if rule.explains else None)
            break
        if rule.blocks_post:
            break
    if candidates:
        best = max(candidates, key=lambda t: t.rule.precedence)
        if best.rule.continues and (carried := _negation_before(text, triggers, best)) is not None:
            return Decision(0.0, carried, True)
        return Decision(0.0 if best.rule.kind == NEGATION else -1.0, best, True)
    if weak is not None:
        return Decision(-1.0, weak, True)
    if attribute:
        finding = _finding_in_clause(triggers, start, end, text)
        return Decision(1.0, finding, finding is not None)
    return Decision(1.0, stopped, True)


def _negation_before(text: str, triggers: Sequence[TriggerMatch], trigger: TriggerMatch) -> TriggerMatch | None:
    """The negation in force before ``trigger`` in its clause ("no opacity to suggest ...")."""
    before = bisect.bisect_right(triggers, trigger.start, key=_end)
    for other in reversed(triggers[max(before - _SCAN, 0) : before]):
        rule = other.rule
        if rule.weak:
            continue
        if rule.kind == NEGATION and rule.pre and _words(text, other.end, trigger.start) < rule.window:
            return other
        if rule.effective or rule.blocks_pre:
            return None
    return None


def _mention_ends_near(text: str, mentions: Sequence[tuple[int, int]], at: int) -> bool:
    """A mention ends at most _WEAK_WINDOW words before ``at`` (mentions are sorted, disjoint)."""
    i = bisect.bisect_right(mentions, at, key=_second)  # mentions[:i] end by ``at``
    return i > 0 and _words(text, mentions[i - 1][1], at) <= _WEAK_WINDOW


def _mention_starts_near(text: str, mentions: Sequence[tuple[int, int]], at: int) -> bool:
    i = bisect.bisect_left(mentions, at, key=_first)  # mentions[i:] start at or after ``at``
    return i < len(mentions) and _words(text, at, mentions[i][0]) <= _WEAK_WINDOW


# A structure named as a place ("a hernia posterior to the heart", "opacity behind the heart").
_LOCATIVE: Final = re.compile(
    r"(?<![a-z])(?:(?:posterior|anterior|lateral|medial|superior|inferior|adjacent|next|close|deep|left|right) to"
    r"|behind|over|overlying|overlie|overlies|beyond|along|near|above|below|beneath|underneath|through|obscuring|obscures"
    r"|silhouetting|silhouettes|border of|borders of|margin of|into|abutting|abuts|adjacent) (?:the )?$"
)
# What joins the items of a list: "consolidation, atelectasis and blunting have cleared".
_LIST_JOINER: Final = re.compile(r" *,? *(?:(?:and|or|as well as|and/or) )?(?:the )?")


def _list_end(text: str, mentions: Sequence[tuple[int, int]], index: int, limit: int) -> int:
    """The end of the list that mention ``index`` starts (items joined by commas, "and", "or"),
    before ``limit``: a post trigger's window counts from there, so that it covers the whole list."""
    end = mentions[index][1]
    for start, stop in mentions[index + 1 : index + 1 + _SCAN]:
        if stop > limit or _LIST_JOINER.fullmatch(text, end, start) is None:
            break
        end = stop
    return end


def _start(trigger: TriggerMatch) -> int:
    return trigger.start


def _end(trigger: TriggerMatch) -> int:
    return trigger.end


def _first(span: tuple[int, int]) -> int:
    return span[0]


def _second(span: tuple[int, int]) -> int:
    return span[1]


def _mention_follows(triggers: Sequence[TriggerMatch], mentions: Sequence[tuple[int, int]], trigger: TriggerMatch, limit: int, text: str = "") -> bool:
    """A mention after ``trigger`` in its clause (before the next terminator).

    A comma right after the trigger ends its clause: "heart size at the upper limits of normal,
    aortic tortuosity" says normal of the heart, not of the aorta.
    """
    i = bisect.bisect_left(mentions, trigger.end, key=_first)
    if i == len(mentions) or mentions[i][0] >= limit:
        return False
    first = mentions[i][0]
    if text[trigger.end : first].lstrip().startswith(","):
        return False
    for other in triggers[bisect.bisect_left(triggers, trigger.end, key=_start) :]:
        if other.start > first:
            return True
        if other.rule.kind in (TERMINATOR, PSEUDO):
            return False
        if other.rule.effective and other.rule.pre and not other.rule.weak:
            return False  # "within normal limits no focal airspace disease": the mention has its own trigger
    return True


def _finding_in_clause(triggers: Sequence[TriggerMatch], start: int, end: int, text: str = "") -> TriggerMatch | None:
    """A finding word in the clause around an attribute mention ("the heart is mildly enlarged").

    "With" goes on describing the attribute: "the silhouette is postoperative, with mild widening";
    otherwise a comma ends the clause ("heart size is stable, tortuous aorta").
    """
    found = None
    described = False
    low = max(bisect.bisect_right(triggers, start, key=_end) - _SCAN, 0)
    for trigger in triggers[low : bisect.bisect_left(triggers, end, key=_start) + _SCAN]:
        kind = trigger.rule.kind
        if trigger.end <= start:
            if kind in (TERMINATOR, PSEUDO):
                found = None
            elif trigger.rule.finding:
                found = trigger
        elif trigger.start >= end:
            if trigger.text.lstrip(", ").startswith("with"):
                described = True  # ", with mild widening" goes on describing the attribute
            elif kind in (TERMINATOR, PSEUDO) or ("," in text[end : trigger.start] and not described):
                break
            if trigger.rule.finding:
                return trigger
    return found

"""Mentions: every vocabulary phrase of a sentence, found in one pass, longest phrase first.

Exclusions are found by the same pass, so that the mention inside a look-alike ("effusion" in
"pericardial effusion") is never reported; they come back flagged, for the explanation.

>>> flat = "no pericardial effusion. small effusions"
>>> [(flat[a:b], term.observations) for a, b, term in find_mentions(flat)]
[('pericardial effusion', ('Other abnormality',)), ('effusions', ('Pleural Effusion',))]
"""

from __future__ import annotations

import functools
import re
from typing import Final

from chexpert.labeler.phrases import PhraseMatcher
from chexpert.labeler.vocabulary import Term, terms

# "Fracture of the uppermost sternotomy wire", "fractured right ventricular pacemaker lead": a
# broken device, not a broken bone.
_DEVICES: Final = (
    r"(?:wires?|leads?|catheters?|hardware|rods?|plates?|screws?|stents?|tubes?|lines?|ports?"
    r"|devices?|prosthes[ie]s|clips?|coils?|generator|filter)(?![a-z0-9])"
)
_OF_A_DEVICE: Final = re.compile(rf" of (?:[a-z0-9/-]+ ){{0,4}}?{_DEVICES}")
_A_DEVICE: Final = re.compile(rf" (?:[a-z0-9/-]+ ){{0,3}}?{_DEVICES}")
_BROKEN: Final = frozenset({"fractured", "broken"})  # not "fracture": a "fracture line" is a bone's
_LOOK_ALIKE: Final = Term("fracture of a device", ())

__all__ = ["find_mentions", "mention_matcher"]


@functools.cache
def mention_matcher() -> PhraseMatcher[Term]:
    """The compiled matcher of the whole vocabulary (built once per process)."""
    return PhraseMatcher(terms())


def find_mentions(flat: str, start: int = 0, end: int | None = None) -> list[tuple[int, int, Term]]:
    """``(start, end, term)`` of every phrase in flattened ``flat[start:end]``, exclusions included."""
    matcher = mention_matcher()
    lookup = matcher.value
    found = [(m.start(), m.end(), lookup(m)) for m in matcher.finditer(flat, start, end)]
    for i, (a, b, term) in enumerate(found):
        if term.observations == ("Fracture",) and (_OF_A_DEVICE.match(flat, b) or (flat[a:b] in _BROKEN and _A_DEVICE.match(flat, b))):
            found[i] = (a, b, _LOOK_ALIKE)
    return found

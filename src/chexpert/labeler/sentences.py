"""Sentence splitting for radiology reports, by offsets into the report.

Reports break the rules prose keeps: numbered lists ("1. No effusion 2. Mild edema"), bullets,
a missing space after a period ("effusion.Mild edema"), abbreviations with periods ("vs.",
"e.g."), decimals ("1.5 cm"), question marks inside a sentence ("opacity, ? pneumonia"), and
lines without a final period. A sentence boundary is:

- ``.``, ``!`` or ``;``-free end punctuation followed by a space or the end, unless the word
  before it is an abbreviation or a single letter (an initial, "e.g.");
- a period between two words with no space ("effusion.Mild");
- ``?`` followed by the end or a capitalised word ("Pneumonia? No effusion");
- a blank line, a line break before a list item or bullet, a line break between a line that
  ends without punctuation and one that starts with a capitalised word, and an inline list
  marker ("(2)", "2)").

List markers, bullets and spaces are trimmed from the sentences; pieces without a letter go; a
run-on longer than :data:`LONGEST` characters is cut after a comma or at a space.

>>> text = "1. No effusion.2. Mild edema vs. atelectasis, 1.5 cm nodule? pneumonia\\n- Tube in place"
>>> [text[a:b] for a, b in split(text)]
['No effusion.', 'Mild edema vs. atelectasis, 1.5 cm nodule? pneumonia', 'Tube in place']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["split", "LONGEST"]

#: The longest sentence read as one, in characters. Real sentences are a few hundred; a longer run
#: without a full stop (a pasted table, a repeated phrase) is read in clauses of at most this size,
#: so that the scopes of negation, whose work grows with a sentence's triggers times its mentions,
#: stay bounded and labelling stays linear in the length of the report.
LONGEST: Final = 1000

# Every branch starts with a character, not a look-behind or a group, so that the regex engine skips
# to the next candidate character instead of trying every branch at every position; the empty
# named groups at the ends say which branch matched (``match.lastgroup``).
_BOUNDARY: Final = re.compile(
    r"""
      [.!]++(?=[\s"')\]]|$)(?P<stop>)                 # end punctuation before a space
    | \.(?<=[A-Za-z]{2}\.)(?=[A-Za-z])              # "effusion.Mild": the space left out
    | \.(?<=[A-Za-z)%]\.)(?=\d++[.)]?\s*+[A-Za-z])   # "effusion.2. Mild": a list item glued on
    | \?++(?=[ \t\r\f\v]*+(?:$|\n)|\s++[A-Z])          # "Pneumonia? No effusion"
    | \n[ \t]*\n                                    # a blank line
    | \n(?=[ \t]*(?:\(?\d{1,2}[.)]|[-*\u2022])\s)    # a line break before a list item or bullet
    | \n(?=[ \t]*[A-Z][a-z])(?P<wrap>)              # a line break, then a capitalised word (see split)
    | [ \t](?=\(?\d{1,2}\)\s)                      # an inline list marker "(2)" or "2)"
    | [.!]{2,}+(?P<run>) | \?{2,}+(?P<qrun>)        # a run that ends nothing: one match, not one attempt per character
    """,
    re.VERBOSE,
)
_WRAPPED: Final = frozenset(".,;:!?-/(")
# Words whose period is not the end of a sentence.
_ABBREVIATIONS: Final = frozenset(
    {
        "vs",
        "v",
        "e.g",
        "i.e",
        "eg",
        "ie",
        "approx",
        "dr",
        "mr",
        "mrs",
        "ms",
        "st",
        "fig",
        "cf",
        "incl",
        "resp",
        "p.m",
        "a.m",
        "no",
        "nos",
        "ca",
        "sq",
        "esp",
        "etc.,",
        "al",
        "mt",
        "min",
        "max",
        "apprx",
        "appr",
        "b/l",
    }
)
_LEAD: Final = re.compile(r"[\s\-*\u2022]*(?:\(?\d{1,2}[.)](?!\d)[\s]*|[\-*\u2022]\s*)*")
_LETTER: Final = re.compile(r"[A-Za-z]")


def split(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """The sentences of ``text[start:end]`` as ``(start, end)`` offsets into ``text``.

    >>> split("Heart size normal.Lungs clear.  No effusion")
    [(0, 18), (18, 30), (32, 43)]
    """
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    begin = start
    for match in _BOUNDARY.finditer(text, start, end):
        kind = match.lastgroup  # the named branch that matched, if any
        if kind is not None:
            if kind in ("run", "qrun"):
                continue
            if kind == "stop" and match.group() == "." and _abbreviation(text, begin, match.start()):
                continue
            if kind == "wrap" and _continues(text, begin, match.start()):
                continue
        _add(text, begin, match.end(), out)
        begin = match.end()
    _add(text, begin, end, out)
    return out


def _abbreviation(text: str, begin: int, dot: int) -> bool:
    """The word before a period at ``dot`` is an abbreviation or an initial."""
    piece = text[max(begin, dot - 8) : dot].rsplit(None, 1)
    if not piece:
        return False
    word = piece[-1].lstrip("(,;:").lower()
    if len(word) == 1:
        return word.isalpha()
    return word in _ABBREVIATIONS


def _continues(text: str, begin: int, newline: int) -> bool:
    """A line break inside a sentence: the line before ends with punctuation that continues it."""
    at = newline
    while at > begin and text[at - 1] in " \t":
        at -= 1
    return at == begin or text[at - 1] in _WRAPPED or (not text[at - 1].isalnum() and text[at - 1] not in "%)")


def _add(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    lead = _LEAD.match(text, start, end)
    if lead is not None:
        start = lead.end()
    while end > start and text[end - 1].isspace():
        end -= 1
    while end - start > LONGEST:  # a run-on "sentence": cut into clauses, so that work stays linear
        cut = _cut(text, start, start + LONGEST)
        if _LETTER.search(text, start, cut):
            out.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end and _LETTER.search(text, start, end):
        out.append((start, end))


def _cut(text: str, start: int, limit: int) -> int:
    """Where to cut a run-on sentence at or before ``limit``: after a comma, else at a space."""
    for mark in (",", " "):
        at = text.rfind(mark, start + LONGEST // 2, limit)
        if at >= 0:
            return at + 1
    return limit


def sentences(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The sentences of every span, in order."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        out.extend(split(text, start, end))
    return out

"""Many literal phrases found in one regex pass: a trie compiled into one pattern.

A plain alternation of a thousand phrases makes the regex engine try every phrase at every word;
the trie shares prefixes, so each position costs a few character tests whatever the vocabulary's
size. Matches are whole words (no letter or digit on either side), case-insensitive through the
caller lowering the text, and the longest phrase wins at a position, so that "pericardial
effusion" is found as one phrase and "effusion" inside it is not found again.

Inside a phrase, a space stands for any run of whitespace or a hyphen ("air space", "air-space",
"air\\nspace"), so the phrase lists need one spelling per word sequence, and for a de-identification
token or two between words ("costophrenic XXXX blunting", "no ___ pneumothorax").

>>> matcher = PhraseMatcher({"effusion": "E", "pericardial effusion": "X", "no": "N"})
>>> [(m.start(), m.end(), matcher.value(m)) for m in matcher.finditer("no pericardial  effusion; effusion")]
[(0, 2, 'N'), (3, 24, 'X'), (26, 34, 'E')]
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["PhraseMatcher", "normalize", "flatten"]

V = TypeVar("V")

# A space in a phrase matches whitespace, a hyphen, or both ("air - space"). Possessive: the next
# character of a phrase is never a space or a hyphen, so giving spaces back can never help, and a
# long run of spaces after a word costs one pass instead of one per space.
#
# A de-identification token inside a phrase ("costophrenic XXXX blunting", "no ___ pneumothorax",
# where a word was redacted) is part of the gap: one or two of them are skipped, as whitespace is.
_DEID = r"(?:x{3,}|_{2,})"
_SPACE = r"(?:\s*+-\s*+|\s++)"
_GAP = rf"{_SPACE}(?:{_DEID}{_SPACE}){{0,2}}"
_GAPS = re.compile(r"(?:\s*-\s*|\s+)(?:(?:x{3,}|_{2,})(?:\s*-\s*|\s+)){0,2}")
_END = object()
# Every whitespace character becomes a space: gaps are then counted and matched alike.
_SPACES = {ord(c): " " for c in "\t\n\r\x0b\x0c\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(chr(c) for c in range(0x2000, 0x200B))}


def flatten(text: str) -> str:
    """``text`` in lower case with every whitespace character a space, offsets unchanged.

    >>> flatten("No\\tEffusion\\n")
    'no effusion '
    """
    lowered = text.lower()
    if len(lowered) != len(text):  # a letter whose lower case is two characters ("İ")
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    return lowered.translate(_SPACES)


def normalize(phrase: str) -> str:
    """The lookup key of a phrase or of matched text: lower case, every gap one space.

    >>> normalize("Air-Space\\n disease")
    'air space disease'
    """
    return _GAPS.sub(" ", phrase.strip().lower())


class PhraseMatcher(Generic[V]):
    """Find the phrases of a ``{phrase: value}`` mapping in lower-case text, longest first."""

    __slots__ = ("_lookup", "_symbols", "pattern")

    def __init__(self, phrases: Mapping[str, V]) -> None:
        self._lookup: dict[str, V] = {}
        for phrase, value in phrases.items():
            key = normalize(phrase)
            if not key:
                continue
            self._lookup[key] = value
        # Phrases of words get word edges on both sides (by look-around: \b would also cut at an
        # underscore or a non-ASCII letter). Phrases that start with punctuation ("?", ";") need
        # none before them, and go into a regex of their own: one more branch at the top of the
        # words' regex would make the engine three times slower at every position.
        words, open_end, word_end = _trie(), _trie(), _trie()
        for key in self._lookup:
            trie = words if key[0].isalnum() else word_end if key[-1].isalnum() else open_end
            node = trie
            for char in key:
                node = node.setdefault(char, {})
            node[_END] = {}
        self.pattern = re.compile(rf"(?<![a-z0-9])(?:{_compile(words)})(?![a-z0-9])" if len(words) else "(?!)")
        symbols = []
        if len(word_end):
            symbols.append(rf"(?:{_compile(word_end)})(?![a-z0-9])")
        if len(open_end):
            symbols.append(_compile(open_end))
        self._symbols = re.compile("|".join(symbols)) if symbols else None

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[re.Match[str]]:
        """Non-overlapping matches, left to right, in ``text[pos:endpos]`` (lower case)."""
        end = len(text) if endpos is None else endpos
        words = self.pattern.finditer(text, pos, end)
        if self._symbols is None:
            return words
        symbols = list(self._symbols.finditer(text, pos, end))
        if not symbols:
            return words
        return _merge(list(words), symbols)

    def value(self, match: re.Match[str]) -> V:
        """The value of the phrase that ``match`` found."""
        text = match.group()
        value = self._lookup.get(text)  # flattened text: mostly found as it is
        return self._lookup[normalize(text)] if value is None else value

    def __contains__(self, phrase: object) -> bool:
        return isinstance(phrase, str) and normalize(phrase) in self._lookup

    def __len__(self) -> int:
        return len(self._lookup)


def _merge(words: list[re.Match[str]], symbols: list[re.Match[str]]) -> Iterator[re.Match[str]]:
    """Both lists in order of start; a symbol inside a word phrase is left out."""
    merged = sorted(words + symbols, key=lambda m: (m.start(), -m.end()))
    last = -1
    for match in merged:
        if match.start() >= last:
            last = match.end()
            yield match


def _trie() -> dict:  # type: ignore[type-arg]
    return {}


def _compile(node: dict) -> str:  # type: ignore[type-arg]
    """The regex of a trie node: its children in one alternation, optional where a phrase ends.

    The children start with distinct characters, so at most one branch can match at a time; a
    phrase that ends at this node makes the rest optional and greedy, so the engine takes the
    longest phrase and backs off to the shorter one when the longer cannot end on a word edge.
    """
    branches: list[str] = []
    leaves: list[str] = []  # one-character endings, folded into a character class
    for char in sorted(k for k in node if k is not _END):
        child = node[char]
        if char == " ":
            branches.append(_GAP + _compile(child))
            continue
        rest = _compile(child)
        if rest:
            branches.append(re.escape(char) + rest)
        else:
            leaves.append(re.escape(char))
    if leaves:
        branches.append(leaves[0] if len(leaves) == 1 else "[" + "".join(leaves) + "]")
    if not branches:
        return ""
    single = len(branches) == 1 and (len(leaves) == len(branches))
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if _END in node:
        return body + "?" if single else f"(?:{body})?"
    return body

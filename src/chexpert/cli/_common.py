"""What every command shares: the console, argument types that make bad values usage errors.

Output meant for a person goes through :func:`console`, which never wraps lines when the output is
not a terminal: a path or a count split over two lines breaks whatever reads the output, and where
the split falls would depend on the length of the path.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from chexpert.progress import console

__all__ = ["console", "positive_int", "non_negative_int", "int_from"]

def int_from(low: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting whole numbers >= ``low``; anything else is a usage error.

    >>> int_from(1)("4")
    4
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


#: ``--size``, ``--workers``, ``--shard-size`` and other counts that must be at least 1.
positive_int = int_from(1)
#: Counts where 0 means "none" (``--bootstrap 0``, ``--test-patients 0``).
non_negative_int = int_from(0)

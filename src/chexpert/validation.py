"""One validation vocabulary: small ``check_*`` helpers that raise :class:`InvalidArgumentError`.

Every public function validates its arguments up front with these, so that a bad value fails at
once with a message naming the argument and listing what is valid (as torchvision's
``verify_str_arg`` does), and so that callers (the command line among them) need one ``except``.

>>> check_choice("resize", "pad", ("pad", "crop", "squash"))
'pad'
>>> check_int("workers", 0, low=1)
Traceback (most recent call last):
    ...
chexpert.errors.InvalidArgumentError: workers must be an integer >= 1, not 0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np

from chexpert.errors import ImageDecodeError, InvalidArgumentError
from chexpert.schema import MAX_PIXELS

__all__ = ["check_choice", "check_int", "check_number", "check_range", "check_type", "check_pixel_count"]

T = TypeVar("T")


def check_choice(name: str, value: T, valid: Iterable[T], *, what: str | None = None) -> T:
    """``value`` if it is one of ``valid``; else an error listing the valid values.

    ``what`` replaces "``name`` must be one of" with "unknown ``what``" for lookups by name.

    >>> check_choice("policy", "u-twos", ("u-ones", "u-zeros"), what="policy")
    Traceback (most recent call last):
        ...
    chexpert.errors.InvalidArgumentError: unknown policy 'u-twos'; valid: u-ones, u-zeros
    """
    valid = tuple(valid)
    try:
        ok = value in valid
    except TypeError:  # unhashable value against a set-like
        ok = False
    if not ok:
        listed = ", ".join(str(v) for v in valid)
        if what is not None:
            raise InvalidArgumentError(f"unknown {what} {value!r}; valid: {listed}")
        raise InvalidArgumentError(f"{name} must be one of {listed}; got {value!r}")
    return value


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int if it is a whole number (not a bool) within ``[low, high]``.

    >>> check_int("size", 320, low=1)
    320
    >>> check_int("seed", 1.5)
    Traceback (most recent call last):
        ...
    chexpert.errors.InvalidArgumentError: seed must be an integer, not 1.5
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidArgumentError(f"{name} must be an integer{_bounds(low, high)}, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidArgumentError(f"{name} must be an integer{_bounds(low, high)}, not {value!r}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``value`` as a finite float within the given bounds (closed unless ``open_*``).

    >>> check_number("level", 0.95, low=0, high=1, open_low=True, open_high=True)
    0.95
    >>> check_number("level", 1, low=0, high=1, open_low=True, open_high=True)
    Traceback (most recent call last):
        ...
    chexpert.errors.InvalidArgumentError: level must be a number in (0, 1), not 1
    """
    interval = ""
    if low is not None or high is not None:
        interval = (
            f" in {'(' if open_low or low is None else '['}{'-inf' if low is None else _num(low)}, "
            f"{'inf' if high is None else _num(high)}{')' if open_high or high is None else ']'}"
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidArgumentError(f"{name} must be a number{interval}, not {value!r}")
    too_low = low is not None and (number <= low if open_low else number < low)
    too_high = high is not None and (number >= high if open_high else number > high)
    if too_low or too_high:
        raise InvalidArgumentError(f"{name} must be a number{interval}, not {value!r}")
    return number


def check_range(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """``value`` as a ``(lo, hi)`` pair of floats with ``low <= lo <= hi <= high``.

    >>> check_range("scale", (0.9, 1.1), 0.5, 2.0)
    (0.9, 1.1)
    """
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a (lo, hi) pair of numbers, not {value!r}") from None
    if not low <= lo <= hi <= high:
        raise InvalidArgumentError(f"{name} must be (lo, hi) with {low} <= lo <= hi <= {high}, not {tuple(value)!r}")
    return lo, hi


def check_type(name: str, value: T, types: type | tuple[type, ...], expected: str) -> T:
    """``value`` if it is an instance of ``types``; ``expected`` says in words what is wanted.

    >>> check_type("rows", [1, 2], (list, tuple), "a list of row numbers")
    [1, 2]
    """
    if not isinstance(value, types):
        raise InvalidArgumentError(f"{name} must be {expected}, not {type(value).__name__} {value!r}")
    return value


def _bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_pixel_count(height: int, width: int, *, file: str | None = None) -> None:
    """Refuse (ImageDecodeError) an image whose header declares more than :data:`MAX_PIXELS`.

    >>> check_pixel_count(2320, 2828)
    >>> check_pixel_count(65500, 65500)
    Traceback (most recent call last):
        ...
    chexpert.errors.ImageDecodeError: the header declares 65500x65500 pixels, more than any CheXpert image (67,108,864); not decoded
    """
    if height * width > MAX_PIXELS:
        raise ImageDecodeError(f"the header declares {width}x{height} pixels, more than any CheXpert image ({MAX_PIXELS:,}); not decoded", file=file)

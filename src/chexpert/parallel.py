"""Worker processes that leave interrupts to their parent.

Ctrl-C sends SIGINT to every process of the terminal's process group: without care, each worker
of a pool prints its own ``KeyboardInterrupt`` traceback (dozens of lines) while the parent prints
one more. Workers started through :func:`quiet_worker` ignore SIGINT; the parent alone sees the
interrupt, stops handing out work and ends its pool, so the command prints one line.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

__all__ = ["quiet_worker"]


def quiet_worker(initializer: Callable[..., Any] | None = None, *initargs: Any) -> None:
    """Pool initializer: ignore SIGINT and take SIGTERM's default, then run ``initializer``.

    Pass it as the pool's initializer, with the real initializer and its arguments after it::

        ProcessPoolExecutor(n, initializer=quiet_worker, initargs=(_use_release, release))

    >>> quiet_worker()  # doctest: +SKIP  (changes this process's signal handlers)
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker forked from a command inherits its SIGTERM handler (which raises): take the default
    # so that a terminated worker simply ends.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if initializer is not None:
        initializer(*initargs)

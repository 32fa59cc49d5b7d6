"""Worker processes that leave interrupts to their parent.

Ctrl-C sends SIGINT to every process of the terminal's process group: without care, each worker
of a pool prints its own ``KeyboardInterrupt`` traceback (dozens of lines) while the parent prints
one more. Workers started through :func:`quiet_worker` ignore SIGINT; the parent alone sees the
interrupt, stops handing out work and ends its pool, so the command prints one line.

A worker is not quiet from its first instant: between its start and :func:`quiet_worker` it has
its parent's handlers, and a signal landing then prints a traceback. Start pools inside
:func:`signals_deferred`: the workers begin with SIGINT and SIGTERM held, and
:func:`quiet_worker` releases them once it is ready.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["quiet_worker", "signals_deferred"]

_HELD = frozenset({signal.SIGINT, signal.SIGTERM})


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
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)  # held by signals_deferred(), if at all
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM in this thread while a pool starts; they arrive when the block ends.

    Threads and processes started inside inherit the held signals (a pool's helper threads keep
    them held, so workers it starts later begin held too); :func:`quiet_worker` releases them in
    each worker. Where signals cannot be held (Windows) this does nothing.

    >>> with signals_deferred():
    ...     pass
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

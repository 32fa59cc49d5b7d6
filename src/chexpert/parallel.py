"""One way to run chunks of work in worker processes, with one policy for signals and shutdown.

Every pool of the package (verify's decoding, prepare's store writer, Plus verification, synth's
writers, the report labeler's stream) goes through :func:`run_chunks`. The policy, and why:

1. **Workers leave interrupts to their parent.** Ctrl-C sends SIGINT to every process of the
   terminal's process group: without care each worker prints its own ``KeyboardInterrupt``
   traceback. Workers start through :func:`quiet_worker`: they ignore SIGINT and take SIGTERM's
   default (a terminated worker simply ends); the parent alone decides, and the command prints
   one line.
2. **Signals are held while the pool starts** (:func:`signals_held`). A signal in that moment
   would meet a worker before it ignores interrupts (a traceback) and a parent inside the pool's
   constructor, not yet holding the pool it must stop (the workers, left running, keep the exit
   waiting for ever). Two things are needed, because each alone is not enough: the signals are
   *blocked* in the starting thread, so that workers (forked or spawned: the mask survives exec)
   begin with them held until :func:`quiet_worker` releases them; and in the main thread the
   Python handlers are *swapped* for ones that only record, because a process-directed signal may
   be taken by any thread that does not block it (a native library's, such as Arrow's), and the
   handler would then run in the parent at once. When the pool is up the handlers come back and
   what came is raised again, once per signal, to the handler in place.
3. **Stopping is at once.** On an exception in the parent (KeyboardInterrupt, chexpert's SIGTERM
   exception, a failure in a chunk) or when the caller leaves the ``with`` block before the last
   result (a ``break``), the workers are killed (SIGKILL: they hold nothing that needs a clean
   end; the caller's journal does) and the queued chunks dropped, not awaited. ``concurrent.futures.ProcessPoolExecutor`` is used, not
   ``multiprocessing.Pool``, whose ``terminate()`` can wait for ever on a queue lock held by a
   worker that a SIGTERM to the process group ended first. (The report labeler's pool once
   awaited its chunks in flight because cancelling them had broken Python 3.11's executor after
   a SIGTERM to the group; killed first and cancelled after, as here, it ends at once:
   tests/test_parallel.py signals ``chexpert label`` like every other caller.)
4. **Worker state travels once per worker**, not once per chunk: ``setup(state)`` runs in each
   worker (and in this process when there is no pool) and what it returns is passed to every
   ``fn(worker_state, chunk)``.
5. **A stream stays bounded.** Given an iterator of chunks (not a sequence), or ``ahead``, at
   most ``ahead`` chunks (two a worker unless said) are taken from it and not yet returned to the
   caller: the iterator is read no further ahead than that, so that a million reports read from a
   file are labelled in bounded memory. The first ``ahead`` chunks are read before the pool
   starts, so that every worker starts while the signals are held (rule 2), and a stream of one
   chunk runs in this process as a sequence of one does.

>>> with run_chunks(_double, [1, 2, 3], workers=1, state=10) as results:
...     list(results)
[11, 12, 13]
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from chexpert.validation import check_int

__all__ = ["run_chunks", "Chunks", "quiet_worker", "signals_held", "signals_deferred"]

C = TypeVar("C")
R = TypeVar("R")
S = TypeVar("S")

_HELD = frozenset({signal.SIGINT, signal.SIGTERM})


def quiet_worker(initializer: Callable[..., Any] | None = None, *initargs: Any) -> None:
    """Pool initializer: ignore SIGINT and take SIGTERM's default, then run ``initializer``.

    Pass it as the pool's initializer, with the real initializer and its arguments after it::

        ProcessPoolExecutor(n, initializer=quiet_worker, initargs=(_use_release, release))

    Not run as a doctest: it would change the signal handlers of the test process.

    >>> quiet_worker()  # doctest: +SKIP
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


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a pool starts (rule 2 of the module docstring); what came is
    raised again, once per signal, when the block ends.

    >>> with signals_held():
    ...     pass
    """
    main = threading.current_thread() is threading.main_thread()
    came: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in _HELD} if main else {}
    swapped = [sig for sig, handler in previous.items() if handler is not None]  # None: set outside Python, left alone
    for sig in swapped:
        signal.signal(sig, lambda signum, frame: came.append(signum))
    try:
        with signals_deferred():
            yield
        # Leaving signals_deferred delivered what was pending in this thread to the recorders.
    finally:
        for sig in swapped:
            signal.signal(sig, previous[sig])  # type: ignore[arg-type]  # not None, by construction of swapped
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)  # to the handler in place: KeyboardInterrupt, chexpert's SIGTERM, or the default


def _worker_setup(setup: Callable[[Any], Any] | None, state: Any) -> None:
    _STATE[:] = [setup(state) if setup is not None else state]


def _call(fn: Callable[[Any, Any], Any], chunk: Any) -> Any:
    return fn(_STATE[0], chunk)


_STATE: list[Any] = []


def run_chunks(
    fn: Callable[[S, C], R],
    chunks: Iterable[C],
    *,
    workers: int,
    state: Any = None,
    setup: Callable[[Any], S] | None = None,
    teardown: Callable[[S], None] | None = None,
    ordered: bool = True,
    mp_context: str | None = None,
    ahead: int | None = None,
) -> Chunks[R]:
    """``fn(worker_state, chunk)`` for every chunk, in ``workers`` processes: use it in a ``with``
    block and iterate over it for the results.

    ``worker_state`` is ``setup(state)`` (or ``state``), made once per worker. ``fn`` and
    ``setup`` must be module-level functions (they travel to the workers by name). With one
    worker or one chunk everything runs in this process and ``teardown(worker_state)`` runs when
    the block ends. ``ordered=False`` yields results as chunks finish. The pool starts here, not
    on the first result; leaving the block before the last result (an exception, Ctrl-C, a
    ``break``) stops the workers at once. See the module docstring for the whole policy.

    ``chunks`` given as an iterator (a generator, a file read in batches) is streamed: at most
    ``ahead`` chunks (default two a worker) are read from it and not yet returned, so memory
    stays bounded however long it is. A sequence is handed to the pool whole unless ``ahead`` is
    given.

    >>> with run_chunks(_double, [1, 2], workers=1) as results:
    ...     list(results)
    [2, 4]
    >>> with run_chunks(_double, iter(range(5)), workers=2, ahead=2) as results:
    ...     list(results)
    [0, 2, 4, 6, 8]
    """
    if ahead is not None:
        ahead = check_int("ahead", ahead, low=1)
    if isinstance(chunks, Sequence) and ahead is None:
        return _run_sequence(fn, chunks, workers, state, setup, teardown, ordered, mp_context)
    if workers <= 1:
        return _run_here(fn, chunks, state, setup, teardown)
    source = iter(chunks)
    # Read before the pool starts (rule 5): a short stream needs no pool, and every worker then
    # starts inside signals_held, while the first chunks are submitted.
    limit = ahead if ahead is not None else 2 * workers
    first = list(itertools.islice(source, limit))
    if len(first) < min(limit, 2):  # the whole stream, and at most one chunk
        return _run_here(fn, first, state, setup, teardown)
    pool = None
    try:
        context = multiprocessing.get_context(mp_context) if mp_context is not None else None
        with signals_held():
            pool = ProcessPoolExecutor(min(workers, len(first)), mp_context=context, initializer=quiet_worker, initargs=(_worker_setup, setup, state))
            submit = functools.partial(pool.submit, functools.partial(_call, fn))
            pending = deque(submit(chunk) for chunk in first)  # starts the workers
    except BaseException:
        if pool is not None:
            _stop(pool, kill=True)
        raise
    return Chunks(_streamed(submit, pending, source, ordered), pool, None)


def _run_here(fn: Callable[[S, C], R], chunks: Iterable[C], state: Any, setup: Callable[[Any], S] | None, teardown: Callable[[S], None] | None) -> Chunks[R]:
    local = setup(state) if setup is not None else state
    return Chunks((fn(local, chunk) for chunk in chunks), None, (lambda: teardown(local)) if teardown is not None else None)


def _run_sequence(
    fn: Callable[[S, C], R],
    chunks: Sequence[C],
    workers: int,
    state: Any,
    setup: Callable[[Any], S] | None,
    teardown: Callable[[S], None] | None,
    ordered: bool,
    mp_context: str | None,
) -> Chunks[R]:
    if workers <= 1 or len(chunks) <= 1:
        return _run_here(fn, chunks, state, setup, teardown)
    pool = None
    try:
        context = multiprocessing.get_context(mp_context) if mp_context is not None else None
        with signals_held():
            pool = ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context, initializer=quiet_worker, initargs=(_worker_setup, setup, state))
            call = functools.partial(_call, fn)
            if ordered:
                results: Iterator[R] = pool.map(call, chunks)  # starts the workers
            else:
                results = _as_finished([pool.submit(call, chunk) for chunk in chunks])
    except BaseException:
        if pool is not None:
            _stop(pool, kill=True)
        raise
    return Chunks(results, pool, None)


def _streamed(submit: Callable[[C], Future[R]], pending: deque[Future[R]], source: Iterator[C], ordered: bool) -> Iterator[R]:
    """Results of the submitted chunks; one more chunk is read from ``source`` for each result
    taken, so that no more than ``len(pending)`` chunks are ever read and not returned."""
    while pending:
        if ordered:
            future = pending.popleft()
        else:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            future = next(iter(done))
            pending.remove(future)
        result = future.result()
        for chunk in itertools.islice(source, 1):
            pending.append(submit(chunk))
        yield result


class Chunks(Iterator[R]):
    """The results of :func:`run_chunks`; ending the ``with`` block (or :meth:`close`) stops the
    workers: at once (killed) unless every result was read."""

    def __init__(self, results: Iterator[R], pool: ProcessPoolExecutor | None, teardown: Callable[[], None] | None) -> None:
        self._results = results
        self._pool = pool
        self._teardown = teardown
        self._finished = False

    def __iter__(self) -> Chunks[R]:
        return self

    def __next__(self) -> R:
        try:
            return next(self._results)
        except StopIteration:
            self._finished = True
            raise

    def close(self) -> None:
        """Stop the workers (killed unless every result was read) and wait for them to end."""
        pool, self._pool = self._pool, None
        teardown, self._teardown = self._teardown, None
        try:
            if pool is not None:
                _stop(pool, kill=not self._finished)
        finally:
            if teardown is not None:
                teardown()

    def __enter__(self) -> Chunks[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(pool: ProcessPoolExecutor, *, kill: bool) -> None:
    try:
        if kill:
            _kill_workers(pool)
    finally:
        # Queued chunks are cancelled; after a kill the executor notices its broken pool and returns.
        pool.shutdown(wait=True, cancel_futures=True)


def _as_finished(futures: list[Future[R]]) -> Iterator[R]:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            yield future.result()


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's workers at once, whatever they are doing (shutdown would wait for the
    chunks they are on: minutes at full resolution)."""
    kill = getattr(pool, "kill_workers", None)  # Python 3.14
    if kill is not None:
        kill()
        return
    # Before 3.14 the executor offers no way to end busy workers but its table of them.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.pid != os.getpid():
            process.kill()


def _double(state: int | None, value: int) -> int:
    # The docstring's example (a module-level function, as run_chunks needs).
    return value * 2 if state is None else value + state

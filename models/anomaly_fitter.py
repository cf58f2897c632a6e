"""Where the fitted anomaly detectors are fitted: a thread of this process, or a child.

A fit (:func:`~models.anomaly_fitted.fit_detectors`) costs about 35 ms of CPU, and a
key asks for one at its 128th sample and every 2048 samples after. In a thread the
fits share the interpreter lock with the event loop: when many keys start together
(200 links at once: 7 s of fitting), batches wait behind them. :func:`fit_in_process`
moves them to one child process, started on the first fit: the event loop then only
decodes each result (about 2 ms from :meth:`~models.anomaly_fitted.FittedDetectors.to_bytes`,
never a pickle of the detectors), and the fitting runs on another core.

Results are the same either way: the fit is deterministic for its rows and seed, and the
bytes hold the detectors exactly. If the child dies (killed, out of memory), the fits it
held come back as ``None`` from :func:`fit_result`, the caller refits in its own
thread, and the next fit starts a new child. A child whose parent is gone (the worker
killed with ``kill -9``) exits: it watches its parent's pid.

As with any start method but fork, the child imports the parent's main module (not as
``__main__``): a script that calls :func:`fit_in_process` keeps its work under
``if __name__ == "__main__":``. ``novacron worker`` (the console script or
``python -m novacron``) does.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .anomaly_fitted import FittedDetectors, fit_detectors

__all__ = ["fit_in_process", "fit_result", "fitting_in_process", "submit_fit"]

_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomaly-fit")
_lock = threading.Lock()
_process: ProcessPoolExecutor | None = None
_in_process = False


def fit_in_process(enabled: bool = True) -> None:
    """Fit in one child process from now on (``False``: back to the thread)."""
    global _in_process, _process  # noqa: PLW0603 - one fitter per process
    with _lock:
        _in_process = enabled
        if not enabled and _process is not None:
            _process.shutdown(wait=False, cancel_futures=True)
            _process = None


def fitting_in_process() -> bool:
    """Whether fits go to the child process."""
    return _in_process


def submit_fit(X: np.ndarray, seed: int) -> Future[FittedDetectors | bytes]:
    """Start fitting ``X``; :func:`fit_result` reads the future."""
    if _in_process:
        for _ in range(2):
            pool = _pool()
            try:
                return pool.submit(_fit_bytes, X, seed)
            except (BrokenProcessPool, RuntimeError):  # died, or shut down meanwhile
                _drop(pool)
    return _THREAD.submit(fit_detectors, X, seed)


def fit_result(future: Future[FittedDetectors | bytes]) -> FittedDetectors | None:
    """The detectors a fit made, waiting for it; ``None`` when the child process that
    held it died (fit again). A fit's own error is raised."""
    try:
        result = future.result()
    except BrokenProcessPool:
        return None
    if isinstance(result, bytes):
        return FittedDetectors.from_bytes(result)
    return result


def _pool() -> ProcessPoolExecutor:
    global _process  # noqa: PLW0603
    with _lock:
        if _process is None:
            context = multiprocessing.get_context("forkserver")
            # the server preloads only what a fit needs (by default: the parent's main
            # module)
            context.set_forkserver_preload(["models.anomaly_fitted"])
            _process = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_child_start,
                initargs=(os.getpid(),),
            )
        return _process


def _drop(pool: ProcessPoolExecutor) -> None:
    global _process  # noqa: PLW0603
    with _lock:
        if _process is pool:
            _process = None
    pool.shutdown(wait=False, cancel_futures=True)


def _child_start(parent: int) -> None:
    """In the child: Ctrl-C is the parent's to handle, and the child ends with the
    parent. (Its own parent is the fork server, and it holds both ends of its task
    pipe, so nothing else would end it after a ``kill -9`` of the worker.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    try:
        handle = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(0)
    except (OSError, AttributeError):  # no pidfd here: look once a second
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
    select.select([handle], [], [])  # readable once the parent has exited
    os._exit(0)


def _fit_bytes(X: np.ndarray, seed: int) -> bytes:
    """In the child: the fit as bytes."""
    return fit_detectors(X, seed).to_bytes()

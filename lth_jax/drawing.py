"""Figures drawn in helper processes beside the one that trains.

matplotlib holds the GIL while it draws, so threads draw one figure at a time. A
run of many seeds ends with a figure per seed (``find_ticket --config.seeds``: about
0.17 s each on a CPU core, so 512 seeds on an accelerator host would wait a minute
and a half on one core). :class:`Drawers` starts helper interpreters when the run
starts; they import matplotlib (and nothing of JAX) while the run trains, and then
draw a share of the figures each while this process draws its own share.

A figure is ``(plot, args, path)``: ``plots.save(plot(*args), path)``, with ``plot`` a
function of a module (the helpers import it by name, from this process's ``sys.path``)
and ``args`` that pickle.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import Callable, Sequence

__all__ = ["Drawers", "helpers_for"]

FIGURES_PER_HELPER = 8  # a helper's start (~0.5 s of a core) pays for itself from about 3 figures of ~0.17 s
MAX_HELPERS = 8


def helpers_for(figures: int) -> int:
    """How many helpers :class:`Drawers` starts for ``figures`` figures: one per
    ``FIGURES_PER_HELPER`` figures, at most ``MAX_HELPERS``, leaving one core to this process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(figures // FIGURES_PER_HELPER, cores - 1, MAX_HELPERS))


def _save(plot: Callable, args: tuple, path) -> None:
    from lth_jax import plots

    plots.save(plot(*args), path)


class Drawers:
    """``helpers`` helper processes (none: every figure drawn here), started at once.

    Use as a context manager; :meth:`save` draws a list of figures, shared between the
    helpers and this process, and raises the first error met after every figure was
    tried. A helper that dies, or cannot import a figure's function, leaves the rest of
    its share to this process."""

    def __init__(self, helpers: int):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path))  # what this process imports
        self._helpers = []
        for _ in range(helpers):
            try:  # a session of their own: Ctrl-C stops this process, which closes their input and so ends them
                self._helpers.append(subprocess.Popen([sys.executable or "python3", "-c", "from lth_jax.drawing import serve; serve()"],
                                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True))
            except OSError:  # no interpreter to start: this process draws alone
                break

    def __enter__(self) -> "Drawers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def save(self, figures: Sequence[tuple[Callable, tuple, object]]) -> None:
        """Draw and write every ``(plot, args, path)``: ``plots.save(plot(*args), path)``."""
        shares = [list(figures[i :: len(self._helpers) + 1]) for i in range(len(self._helpers) + 1)]
        answers: list[dict] = [{"errors": [], "left": []} for _ in self._helpers]
        talks = [threading.Thread(target=_talk, args=args) for args in zip(self._helpers, shares[1:], answers)]
        for talk in talks:
            talk.start()
        errors = [error for figure in shares[0] for error in _attempt(*figure)]
        for talk in talks:
            talk.join()
        for answer in answers:  # a helper's errors, then what it could not take or answer, drawn here
            errors += answer["errors"] + [error for figure in answer["left"] for error in _attempt(*figure)]
        if errors:
            raise errors[0]

    def close(self) -> None:
        for helper in self._helpers:
            try:
                helper.stdin.close()
            except OSError:
                pass
        for helper in self._helpers:
            try:
                helper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                helper.kill()
            helper.stdout.close()
        self._helpers = []


def _talk(helper: subprocess.Popen, share: list, answer: dict) -> None:
    """Hand ``share`` to ``helper`` and collect its answers (a thread: the pipes block).
    ``answer["left"]``: the figures it did not draw (it died; arguments that do not pickle)."""
    try:
        requests = [pickle.dumps(figure) for figure in share]
    except Exception:  # noqa: BLE001 - whatever pickling raises: the share is drawn by the caller
        answer["left"] = share
        return
    done = 0
    try:
        helper.stdin.write(b"".join(requests))
        helper.stdin.flush()
        while done < len(share):
            error = pickle.load(helper.stdout)
            done += 1
            if error is not None:
                answer["errors"].append(error)
    except (EOFError, OSError, pickle.UnpicklingError):
        answer["left"] = share[done:]


def _attempt(plot, args, path) -> list[BaseException]:
    try:
        _save(plot, args, path)
        return []
    except Exception as error:  # noqa: BLE001 - every figure is tried; the first error is raised after
        return [error]


def serve() -> None:
    """A helper: ``(plot, args, path)`` figures from stdin, each answered on stdout
    (``None``, or the error it raised); ends at the end of stdin."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a figure prints goes to stderr, not into the replies
    requests = sys.stdin.buffer
    from lth_jax import plots  # noqa: F401 - matplotlib, imported while the caller trains

    while True:
        try:
            figure = pickle.load(requests)
        except Exception:  # noqa: BLE001 - the end of the input, or a figure this interpreter cannot import: the caller draws the rest
            return
        errors = _attempt(*figure)
        reply = errors[0] if errors else None
        try:
            data = pickle.dumps(reply)
        except Exception:  # noqa: BLE001 - an error that does not pickle: its text
            data = pickle.dumps(RuntimeError(f"{type(reply).__name__}: {reply}"))
        replies.write(data)
        replies.flush()

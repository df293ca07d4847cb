"""Several IMP runs trained as one (a *pack*): the points of a sweep that share a model.

Runs of one model, objective, data and training recipe that differ only in
their pruning plan, seeds, workdirs and callbacks (the E4 grid's numbers of
levels at one width) go level by level together: level ``l`` of every run's
seeds is one :func:`lth_jax.loop.fit_replicas` call on one executor, so the
replicas of all runs share the compiled program and fill each other's tails
(a run whose seeds stopped early leaves the others more rows). Each seed keeps
its own stages, resume, early stopping and stop rules: the results are those of
:func:`lth_jax.imp.run_imp_seeds` per run. Level 0 of a seed is the same in
every run of one batch order (the same initialization, epoch order and dense
mask), so a seed that starts level 0 afresh in several such runs is trained
once and its result saved by each run.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from lth_jax.errors import UserError
from lth_jax.imp import ImpOptions, ImpResult, _Imp, _replicas
from lth_jax.loop import fit_replicas

__all__ = ["run_imp_pack"]

# What every run of a pack must share: the arguments of run_imp_seeds before the plan, and these options.
_SHARED_OPTIONS = ("rewind", "vmap", "prunable", "mesh", "preprocess", "eval_name", "divergence_loss")


def run_imp_pack(jobs: Sequence[tuple[tuple, dict]], *,
                 on_run_done: Callable[[int, list[ImpResult]], None] | None = None) -> list[list[ImpResult]]:
    """Run the :func:`lth_jax.imp.run_imp_seeds` calls ``jobs`` (``(args, kwargs)`` each) as one.

    The runs must share the model, objective, datasets and training config (the
    arguments before the plan) and the options that change how replicas train
    (rewind, vmap, prunable, mesh, preprocess, eval name, divergence limit).
    Returns each run's results, as :func:`~lth_jax.imp.run_imp_seeds` would.
    ``on_run_done(i, results)`` is called as soon as run ``i`` has no level left to
    train (its last level, or every seed stopped), while the others go on.
    """
    runs = []
    for args, kwargs in jobs:
        kwargs = dict(kwargs)
        seeds = _replicas(kwargs.pop("seeds"), kwargs.pop("workdir", None))
        runs.append((_Imp(*args, ImpOptions(**{"vmap": True, **kwargs})), seeds))
    first = runs[0][0]
    for imp, _ in runs[1:]:
        same = (imp.model, imp.objective, imp.config) == (first.model, first.objective, first.config)
        if not (same and _same_data(imp.train_data, first.train_data) and _same_data(imp.eval_data, first.eval_data)) or any(getattr(imp.options, k) != getattr(first.options, k) for k in _SHARED_OPTIONS):
            raise UserError("the runs of a pack must share the model, data, training config and how replicas train")
    for imp, seeds in runs:  # every run's seeds and levels checked before anything is written
        imp.check(seeds)
    for imp, seeds in runs:
        imp.several = len(seeds) > 1
        imp.setup(seeds)
        imp.tx, imp.executor = first.tx, first.executor  # one program for every run
    if len({imp.rewind_step for imp, _ in runs}) > 1:
        raise UserError("the runs of a pack must rewind to the same step")
    done: set[int] = set()
    for level in range(max(len(imp.counts) for imp, _ in runs)):
        to_train = [(imp, s) for imp, seeds in runs if level < len(imp.counts) for s in seeds
                    if s.stopped_at is None and not imp.read_finished_level(s, level)]
        if to_train:
            _train_level(first, to_train, level)
        for i, (imp, seeds) in enumerate(runs):
            if on_run_done is not None and i not in done and all(level + 1 >= len(imp.counts) or s.stopped_at is not None for s in seeds):
                done.add(i)
                on_run_done(i, [s.result(imp.counts) for s in seeds])
    return [[s.result(imp.counts) for s in seeds] for imp, seeds in runs]


def _same_data(a, b) -> bool:
    """The same dataset, or in-memory datasets with equal arrays."""
    if a is b:
        return True
    arrays = ("x", "y")
    return type(a) is type(b) and all(hasattr(d, k) for d in (a, b) for k in arrays) and all(
        np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays)


def _train_level(first: _Imp, to_train: list, level: int) -> None:
    """Level ``level`` of every ``(run, seed)`` in ``to_train``, in one fit; each saved and reported by its run."""
    started = [imp.start_level(s, level) for imp, s in to_train]
    # a fresh level 0 of a seed is trained once (it is the same in every run of its epoch order)
    shared = level == 0 and all(not imp.options.hooks and imp.options.on_level_start is None for imp, _ in to_train)
    trained: dict = {}
    index = []
    for (imp, s), (replica, _, _) in zip(to_train, started):
        key = (s.seed, replica.data_seed, int(replica.state.step)) if shared and replica.progress is None else (s.seed, id(replica))
        index.append(trained.setdefault(key, len(trained)))
    fitted = [next(started[i][0] for i, j in enumerate(index) if j == k) for k in range(len(trained))]
    began = time.perf_counter()
    results = fit_replicas(fitted, first.executor, first.config, rewind_step=first.rewind_step if level == 0 else None,
                           eval_name=first.options.eval_name, divergence_loss=first.options.divergence_loss, log_fn=first.log)
    seconds = (time.perf_counter() - began) / len(fitted)
    for (imp, s), (replica, stage, mask), k in zip(to_train, started, index):
        result = results[k]
        if replica is not fitted[k]:  # a copy of a level trained for another run: what its callbacks would have seen
            if result.rewind is not None and replica.on_rewind is not None:
                replica.on_rewind(result.rewind)
            for record in result.history:
                for callback in replica.on_epoch:
                    callback(record)
        imp.finish_level(s, level, stage, mask, result, seconds)

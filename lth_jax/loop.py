"""The training loop: replicas trained to the end of their schedule, epoch by epoch.

One loop, :func:`fit_replicas`, owns what every training run needs: the epoch
order of each replica, evaluation, early stopping (the thesis's rule), the
capture of the rewind state, checkpoints, hooks and progress lines. It trains
``R >= 1`` replicas (seeds) of one model; each has its own state, data order,
early stopping and checkpoints. How an epoch is *executed* is the only thing
that differs between models, and is an executor's job (:mod:`lth_jax.executors`):
all replicas in one compiled program (small in-memory models), or each
replica's steps data-parallel over the devices (large models). :func:`fit`
trains one state with given jitted steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from lth_jax.executors import DataParallelEpochs
from lth_jax.train import TrainConfig, TrainState, averages, diverged_loss, early_stopping_update  # noqa: F401 (re-exported)

__all__ = [
    "Replica", "RewindState", "FitProgress", "FitResult", "fit_replicas", "fit", "level_record", "format_level",
    "early_stopping_update", "format_record", "diverged_loss", "resume_stage",
]

Hook = Callable[[TrainState, dict], None]


@dataclasses.dataclass
class RewindState:
    """Host copy of the weights and batch statistics at the rewind step."""

    step: int
    params: Any
    batch_stats: Any


@dataclasses.dataclass
class FitProgress:
    """Bookkeeping of ``fit`` that a checkpoint must carry to resume exactly."""

    history: list = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    patience_counter: int = 0
    stopped_early: bool = False
    diverged: bool = False  # a loss became NaN or infinite: training stopped there

    @property
    def stopped(self) -> bool:
        return self.stopped_early or self.diverged

    def to_dict(self) -> dict:
        return {
            "history": self.history,
            "best_loss": None if math.isinf(self.best_loss) else self.best_loss,
            "patience_counter": self.patience_counter,
            "stopped_early": self.stopped_early,
            "diverged": self.diverged,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FitProgress":
        best = d.get("best_loss")
        return cls(list(d.get("history", [])), math.inf if best is None else float(best), int(d.get("patience_counter", 0)),
                   bool(d.get("stopped_early", False)), bool(d.get("diverged", False)))


@dataclasses.dataclass
class FitResult:
    state: TrainState
    progress: FitProgress
    rewind: RewindState | None

    @property
    def history(self) -> list:
        return self.progress.history

    @property
    def final(self) -> dict:
        """The last evaluated epoch's record."""
        evaluated = [r for r in self.progress.history if r.get("evaluated")]
        return evaluated[-1] if evaluated else {}


def resume_stage(stage, state: TrainState, *, tag: str = "",
                 log_fn: Callable[[str], None] | None = None) -> tuple[TrainState, FitProgress | None, Callable | None]:
    """Where the training of ``stage`` (a :class:`lth_jax.stage.Stage`, or ``None``) starts:
    ``(state, progress, checkpoint)``: ``state`` as the stage last checkpointed it and the
    loop's progress then (``progress`` ``None`` when there is no checkpoint, and for no
    stage), and the :class:`Replica` ``checkpoint`` that saves both to the stage. A resumed
    stage says ``{tag}: resuming from step N`` to ``log_fn``."""
    if stage is None:
        return state, None, None
    state, saved = stage.resume(state)
    progress = None if saved is None else FitProgress.from_dict(saved)
    if progress is not None and log_fn is not None:
        log_fn(f"{tag}: resuming from step {int(state.step)}")
    return state, progress, lambda st, p: stage.save_checkpoint(st, p.to_dict())


def _format_value(value) -> str:
    if isinstance(value, list):
        return "/".join(f"{v:.4f}" for v in value)
    return f"{value:.4f}"


def format_record(record: dict, prefix: str = "") -> str:
    """One progress line of an epoch record."""
    parts = [prefix] if prefix else []
    parts.append(f"epoch {record['epoch']:>4d}")
    parts.append(f"step {record['step']:>7d}")
    for key, value in record.items():
        if key.endswith(("_loss", "_accuracy")):
            parts.append(f"{key} {_format_value(value)}")
    parts.append(f"{record['examples_per_second']:,.0f} ex/s")
    return "  ".join(parts)


def is_eval_epoch(config: TrainConfig, epoch: int, step: int, total_steps: int) -> bool:
    """Whether the epoch ending at ``step`` (``epoch`` counted from 1) is evaluated."""
    return epoch % config.eval_every_epochs == 0 or step == total_steps


def close_epoch(
    progress: FitProgress,
    record: dict,
    config: TrainConfig,
    *,
    eval_metrics: dict | None,
    eval_name: str,
    total_steps: int,
    divergence_loss: float | None = None,
) -> None:
    """Add the eval metrics to ``record``, apply early stopping and the divergence stop (a train
    or eval loss that is NaN, infinite or above ``divergence_loss``), append it to the history."""
    if eval_metrics is not None:
        record.update(eval_metrics)
        record["evaluated"] = True
        if config.early_stopping_patience is not None:
            # early_stopping_update on the host's floats (float32 values: the same result, without device calls)
            loss = record[f"{eval_name}_loss"]
            if loss < progress.best_loss:
                progress.best_loss, progress.patience_counter = float(loss), 0
            else:
                progress.patience_counter += 1
            progress.stopped_early = progress.patience_counter >= config.early_stopping_patience and record["step"] < total_steps
    if any(diverged_loss(record.get(key, 0.0), divergence_loss) for key in ("train_loss", f"{eval_name}_loss")):
        progress.diverged = True
    progress.history.append(record)


def train_record(epoch: int, step: int, train_totals: dict, seconds: float) -> dict:
    """An epoch record from the summed training metrics and the epoch's wall time."""
    record = {"epoch": epoch, "step": step, **averages(train_totals, "train")}
    record["examples_per_second"] = float(train_totals["count"]) / max(seconds, 1e-9)
    return record


def level_record(level: int, counts: dict, result, seconds: float, rewind_step: int) -> dict:
    """The record of a trained level (or ticket): ``counts`` (weights_remaining,
    total_prunable, fraction_remaining), final metrics, epochs, speed. The train metrics
    are the last epoch's, the eval metrics the last evaluated epoch's: the same epoch,
    unless the divergence stop ended training at an epoch that was not evaluated."""
    last = {k: v for k, v in (result.history[-1] if result.history else {}).items() if k.startswith("train_")}
    final = {k: v for k, v in {**result.final, **last}.items() if k.endswith(("_loss", "_accuracy"))}
    speeds = [r["examples_per_second"] for r in result.history]
    return {
        "level": level,
        "weights_remaining": counts["weights_remaining"],
        "fraction_remaining": counts["weights_remaining"] / counts["total_prunable"],
        "total_prunable": counts["total_prunable"],
        **final,
        "epochs": result.history[-1]["epoch"] if result.history else 0,
        "steps": int(result.state.step),
        "rewind_step": rewind_step,
        "stopped_early": result.progress.stopped_early,
        "diverged": result.progress.diverged,
        "examples_per_second": float(np.median(speeds)) if speeds else None,
        "seconds": seconds,
    }


def format_level(record: dict) -> str:
    """One summary line of a level record."""
    parts = [f"level {record['level']:>2d}", f"weights {record['weights_remaining']:>9,d} ({100 * record['fraction_remaining']:6.2f}%)"]
    for key, value in record.items():
        if key.endswith(("_loss", "_accuracy")) and not key.startswith("train_"):
            shown = "/".join(f"{v:.4f}" for v in value) if isinstance(value, list) else f"{value:.4f}"
            parts.append(f"{key} {shown}")
    parts.append(f"epochs {record['epochs']:>4d}{' (early stop)' if record['stopped_early'] else ''}")
    if record.get("diverged"):
        parts.append("DIVERGED")
    return "  ".join(parts)


class CheckpointClock:
    """When ``fit`` writes a checkpoint: every N epochs and/or every S seconds."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.last = time.monotonic()

    def due(self, epoch: int) -> bool:
        by_epochs = self.config.checkpoint_every_epochs and epoch % self.config.checkpoint_every_epochs == 0
        by_time = self.config.checkpoint_every_seconds and time.monotonic() - self.last >= self.config.checkpoint_every_seconds
        return bool(by_epochs or by_time)

    def mark(self) -> None:
        self.last = time.monotonic()


def wants_log(config: TrainConfig, epoch: int, step: int, total_steps: int) -> bool:
    return bool(config.log_every_epochs) and (epoch % config.log_every_epochs == 0 or step == total_steps)


@dataclasses.dataclass
class Replica:
    """One replica's part of a training run: its start state and what to do with it.

    ``checkpoint(state, progress)`` is called when a checkpoint is due (before
    the hooks, so a failing hook loses no work); ``on_rewind(rewind_state)`` when
    the replica passes the rewind step; ``hooks(state, epoch_record)`` after
    every epoch, and ``on_epoch(epoch_record)`` too (a record is cheaper than a
    state: a vmapped run keeps its states stacked on the device). ``progress``
    resumes a checkpointed run.
    """

    state: TrainState
    data_seed: Any = 0
    progress: FitProgress | None = None
    on_rewind: Callable[[RewindState], None] | None = None
    checkpoint: Callable[[TrainState, FitProgress], None] | None = None
    hooks: Sequence[Hook] = ()
    log_prefix: str = ""
    on_epoch: Sequence[Callable[[dict], None]] = ()


def _check_schedule(steps: list[int], total: int, rewind_step: int | None) -> None:
    for r, step in enumerate(steps):
        if step > total:
            raise ValueError(f"replica {r} is at step {step}, past the end of the schedule ({total} steps)")
    if rewind_step is not None and not 0 <= rewind_step <= total:
        raise ValueError(f"rewind_step={rewind_step} is outside the schedule [0, {total}]")


def _chunk_epochs(executor, config: TrainConfig, epoch: int, rewind_step: int | None, later: list[int], hooks: bool) -> int:
    """How many epochs from ``epoch`` the executor runs before the loop needs a state:
    up to the executor's chunk, the rewind step, the next checkpoint epoch, the epoch
    of a replica that waits there (resumed further), one epoch when there are hooks."""
    n = min(getattr(executor, "max_epochs", 1), config.epochs - epoch)
    spe = executor.steps_per_epoch
    if hooks:
        n = 1
    if rewind_step is not None and rewind_step > epoch * spe:
        n = min(n, max(1, rewind_step // spe - epoch))
    if config.checkpoint_every_epochs:
        n = min(n, config.checkpoint_every_epochs - epoch % config.checkpoint_every_epochs)
    if later:
        n = min(n, min(later) - epoch)
    return max(n, 1)


def fit_replicas(
    replicas: Sequence[Replica],
    executor,
    config: TrainConfig,
    *,
    rewind_step: int | None = None,
    eval_name: str = "test",
    divergence_loss: float | None = None,
    stop_step: int | None = None,
    log_fn: Callable[[str], None] = print,
) -> list[FitResult]:
    """Train every replica from its step to the end of the schedule (``config.epochs``).

    Each epoch record holds the training metrics and, on evaluated epochs
    (``config.eval_every_epochs``, and the last), the eval metrics named
    ``{eval_name}_...``. ``rewind_step``: capture the weights and batch
    statistics there (returned in each :class:`FitResult`). A replica whose
    train or eval loss becomes NaN, infinite or larger than ``divergence_loss``
    stops after that epoch (``progress.diverged``), like an early stop.
    ``stop_step`` (an epoch boundary): train only up to there, on the schedule
    of ``config.epochs`` (a prefix of the run; resume it by passing the states on).
    """
    spe = executor.steps_per_epoch
    total = config.epochs * spe
    n = len(replicas)
    progresses = [FitProgress() if r.progress is None else r.progress for r in replicas]
    steps = [int(r.state.step) for r in replicas]
    _check_schedule(steps, total, rewind_step)
    if stop_step is not None and (stop_step % spe or not 0 <= stop_step <= total):
        raise ValueError(f"stop_step={stop_step} is not an epoch boundary of the schedule ({spe} steps per epoch, {total} steps)")
    end = total if stop_step is None else stop_step
    executor.check_rewind(rewind_step)
    rewinds: list[RewindState | None] = [None] * n

    def capture(r: int, state: TrainState) -> None:
        rewinds[r] = RewindState(int(state.step), *jax.device_get((state.params, state.batch_stats)))
        if replicas[r].on_rewind is not None:
            replicas[r].on_rewind(rewinds[r])

    carry = executor.start([r.state for r in replicas])
    for r in range(n):
        if rewind_step is not None and steps[r] == rewind_step:
            capture(r, executor.state(carry, r))
    clock = CheckpointClock(config)
    while True:
        running = [steps[r] < end and not progresses[r].stopped for r in range(n)]
        if not any(running):
            break
        epoch = min(steps[r] // spe for r in range(n) if running[r])
        starts = [steps[r] if running[r] and steps[r] // spe == epoch else None for r in range(n)]
        later = [steps[r] // spe for r in range(n) if running[r] and starts[r] is None]
        n_epochs = _chunk_epochs(executor, config, epoch, rewind_step, later, any(replicas[r].hooks for r in range(n) if starts[r] is not None))
        n_epochs = min(n_epochs, end // spe - epoch)
        stopping = ([p.best_loss for p in progresses], [p.patience_counter for p in progresses], config.early_stopping_patience,
                    divergence_loss)
        carry, chunk, seconds = executor.epochs(
            carry, epoch, n_epochs, starts, [r.data_seed for r in replicas],
            evaluated=[is_eval_epoch(config, e + 1, (e + 1) * spe, total) for e in range(epoch, epoch + n_epochs)],
            stopping=stopping, rewind_step=rewind_step, capture=capture,
        )
        ran = [sum(train[r] is not None for train, _ in chunk) for r in range(n)]  # epochs each replica ran
        due = [clock.due(epoch + ran[r]) if ran[r] else False for r in range(n)]
        for j, (train_sums, eval_sums) in enumerate(chunk):
            for r in (r for r in range(n) if train_sums[r] is not None):
                if progresses[r].stopped:  # the executor freezes a replica after its stop
                    raise RuntimeError(f"replica {r} trained past its early stop or divergence in epoch {epoch + j}")
                last = j == ran[r] - 1
                steps[r] = (epoch + j + 1) * spe
                record = train_record(epoch + j + 1, steps[r], train_sums[r], seconds[r])
                eval_metrics = averages(eval_sums[r], eval_name) if eval_sums[r] is not None else None
                close_epoch(progresses[r], record, config, eval_metrics=eval_metrics, eval_name=eval_name, total_steps=total,
                            divergence_loss=divergence_loss)
                if wants_log(config, epoch + j + 1, steps[r], total):
                    log_fn(format_record(record, replicas[r].log_prefix))
                for callback in replicas[r].on_epoch:
                    callback(record)
                wants_checkpoint = last and due[r] and replicas[r].checkpoint is not None and steps[r] < total and not progresses[r].stopped
                at_rewind = rewind_step is not None and steps[r] == rewind_step
                if not (at_rewind or wants_checkpoint or replicas[r].hooks):
                    continue
                if not last:
                    raise RuntimeError(f"epoch {epoch + j + 1} needs replica {r}'s state inside a chunk")
                state = executor.state(carry, r)
                if at_rewind:
                    capture(r, state)
                if wants_checkpoint:
                    replicas[r].checkpoint(state, progresses[r])
                for hook in replicas[r].hooks:
                    hook(state, record)
        if any(due):
            clock.mark()
    return [FitResult(executor.state(carry, r), progresses[r], rewinds[r]) for r in range(n)]


def fit(
    state: TrainState,
    *,
    train_step_fn,
    eval_step_fn,
    train_data,
    eval_data,
    config: TrainConfig,
    mesh=None,
    data_seed=None,
    rewind_step: int | None = None,
    on_rewind: Callable[[RewindState], None] | None = None,
    hooks: Sequence[Hook] = (),
    checkpoint_fn: Callable[[TrainState, FitProgress], None] | None = None,
    progress: FitProgress | None = None,
    eval_name: str = "test",
    log_prefix: str = "",
    log_fn: Callable[[str], None] = print,
) -> FitResult:
    """Train one ``state`` from its step to the end of the schedule with the given
    jitted steps, data-parallel over ``mesh`` (default: all devices).

    :func:`fit_replicas` with one replica and :class:`DataParallelEpochs`. The
    epoch order comes from ``data_seed`` (default ``config.data_seed``; an int
    or a tuple of ints). Resumes mid-epoch from any step: pass the restored
    state and its ``progress``.
    """
    executor = DataParallelEpochs(train_step_fn, eval_step_fn, train_data, eval_data, config, mesh=mesh)
    replica = Replica(state, config.data_seed if data_seed is None else data_seed, progress, on_rewind, checkpoint_fn, tuple(hooks), log_prefix)
    return fit_replicas([replica], executor, config, rewind_step=rewind_step, eval_name=eval_name, log_fn=log_fn)[0]

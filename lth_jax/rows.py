"""The rows of studies: what ``metrics.jsonl`` holds, and how reports read it.

A transfer workdir's ``metrics.jsonl`` has one row per trained ticket on a
*target* (dataset, optimizer): the *source* the ticket came from, the kind of
ticket (``winning``, ``random``, ``target_own``, ``dense``), its IMP level, the
seed, the fraction of weights remaining and the test accuracy and loss
(:data:`ROW_KEYS`). :func:`load_rows` reads such workdirs, and find_ticket
workdirs as the dataset's own tickets; :func:`group_rows` groups them (one
ticket, level and seed each); :func:`aggregate` summarises each group over its
seeds: mean, sample std and the Student-t 95% interval of the mean.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Sequence

import numpy as np
from etils import epath

from lth_jax.errors import UserError
from lth_jax.results import read_json, read_jsonl, read_jsonl_prefix, write_jsonl
from lth_jax.stats import t_interval

__all__ = ["TICKET_KINDS", "GROUP_KEYS", "ROW_KEYS", "workdir_list", "load_rows", "study_row", "StudyMetrics", "group_rows",
           "aggregate"]

TICKET_KINDS = ("winning", "random", "target_own", "dense")
GROUP_KEYS = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level")
REQUIRED_KEYS = GROUP_KEYS + ("fraction_remaining", "test_accuracy", "test_loss", "seed", "model")


ROW_KEYS = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level", "fraction_remaining",
            "weights_remaining", "test_accuracy", "test_loss", "train_loss", "epoch", "seed", "model", "ticket_dir")
_ROW_ID = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level", "seed")


def _check_row(row: dict, where: str) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    if row["ticket"] not in TICKET_KINDS:
        raise UserError(f"{where} has an unknown ticket kind {row['ticket']!r}; known kinds: {', '.join(TICKET_KINDS)}")


def workdir_list(workdirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    workdirs = [workdirs] if isinstance(workdirs, (str, os.PathLike)) else list(workdirs)
    if not workdirs:
        raise UserError("no workdirs given")
    return [str(workdir) for workdir in workdirs]


def load_rows(workdirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """The rows of every workdir's ``metrics.jsonl``, each with a ``workdir`` key
    (the workdir as given, so ``ticket_dir`` can be resolved against it).

    An experiment that several workdirs hold (the same group and seed: e.g. the
    dense and own tickets of a target that two studies, one per source, both
    trained) counts once, from the first workdir that has it.
    """
    workdirs = workdir_list(workdirs)
    rows, seen = [], set()
    for workdir in workdirs:
        path = epath.Path(workdir) / "metrics.jsonl"
        if not path.is_file():
            raise UserError(f"workdir {workdir} has no metrics.jsonl ({path} does not exist)")
        for i, row in enumerate(_as_study_rows(epath.Path(workdir), read_jsonl(path))):
            _check_row(row, f"row {i} of {path}")
            key = tuple(row[k] for k in GROUP_KEYS) + (row["seed"],)
            if key not in seen:
                seen.add(key)
                rows.append({**row, "workdir": workdir})
    if not rows:
        raise UserError(f"no rows in the metrics.jsonl of {', '.join(workdirs)}")
    return rows


def _as_study_rows(workdir: epath.Path, rows: list[dict]) -> list[dict]:
    """The rows of a transfer study as they are; those of a find_ticket run (one row
    per level) as the target's own tickets on its dataset, level 0 also as dense."""
    if not rows or "ticket" in rows[0] or not (workdir / "config.json").exists():
        return rows
    c = read_json(workdir / "config.json").get("config", {})
    names = dict(source=c.get("dataset"), source_optimizer=c.get("optimizer", {}).get("name"), target=c.get("dataset"),
                 target_optimizer=c.get("optimizer", {}).get("name"))
    out = []
    for record in rows:
        record = {**record, "epochs": record.get("epoch")}
        ticket_dir = workdir / f"level_{record['level']:02d}" / "ticket"
        for kind in ("dense", "target_own") if record["level"] == 0 else ("target_own",):
            out.append(study_row(record, kind, c.get("seed", 0), c.get("model"), ticket_dir, workdir, **names))
    return out


def study_row(record: dict, ticket_kind: str, seed: int, model: str, ticket_dir, workdir, **names) -> dict:
    """A ``metrics.jsonl`` row of a transfer study from a trained ticket's record."""
    row = {**names, "ticket": ticket_kind, "level": record["level"], "epoch": record["epochs"], "seed": seed, "model": model}
    row.update({k: record.get(k) for k in ("fraction_remaining", "weights_remaining", "test_accuracy", "test_loss", "train_loss")})
    row["ticket_dir"] = None if ticket_dir is None else os.path.relpath(os.fspath(ticket_dir), os.fspath(workdir))
    return {k: row[k] for k in ROW_KEYS}


class StudyMetrics:
    """``metrics.jsonl``, rewritten after every stage; rows of earlier runs are kept."""

    def __init__(self, path, log_fn=print):
        self.path = path
        rows, damaged = read_jsonl_prefix(path)
        if damaged is not None:
            log_fn(f"note: {path} was cut short at line {damaged}: the {len(rows)} complete rows before it are kept, "
                   "and the rows of this run's tickets are rebuilt from their stages")
        self.rows = {tuple(r[k] for k in _ROW_ID): r for r in rows}

    def add(self, row: dict) -> None:
        self.rows[tuple(row[k] for k in _ROW_ID)] = row
        write_jsonl(self.path, self.all())

    def all(self) -> list[dict]:
        return [self.rows[k] for k in sorted(self.rows, key=lambda key: tuple(map(str, key[:5])) + key[5:])]


def _describe(group: tuple) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in zip(GROUP_KEYS, group))


def group_rows(rows: Sequence[dict]) -> dict[tuple, list[dict]]:
    """The rows by group (the values of :data:`GROUP_KEYS`), each group's rows in seed
    order (so what follows does not depend on the order the rows came in). A row
    that lacks a key or names an unknown ticket kind, and a seed that appears twice
    in a group (it would count twice), are errors."""
    if not rows:
        raise UserError("no rows to aggregate")
    groups: dict[tuple, list[dict]] = {}
    for i, row in enumerate(rows):
        _check_row(row, f"row {i}")
        groups.setdefault(tuple(row[key] for key in GROUP_KEYS), []).append(row)
    for group, members in groups.items():
        members.sort(key=lambda row: row["seed"])
        seeds = [row["seed"] for row in members]
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            raise UserError(f"seed {repeated[0]} appears more than once for {_describe(group)}")
    return groups


def _summarize(group: tuple, members: list[dict]) -> dict:
    """Mean, sample std and t interval over the seeds of one group (rows in seed order)."""
    models = sorted({row["model"] for row in members})
    if len(models) > 1:
        raise UserError(f"several models ({', '.join(models)}) for {_describe(group)}: report one model at a time")
    accuracies = [row["test_accuracy"] for row in members]
    interval = t_interval(accuracies)
    return {
        **dict(zip(GROUP_KEYS, group)),
        "fraction_remaining": float(np.mean([row["fraction_remaining"] for row in members])),
        "test_accuracy_mean": interval.mean,
        "test_accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else math.nan,
        "test_accuracy_low": interval.low,
        "test_accuracy_high": interval.high,
        "test_loss_mean": float(np.mean([row["test_loss"] for row in members])),
        "seeds": [row["seed"] for row in members],
        "n": len(members),
    }


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """One row per (source, source_optimizer, target, target_optimizer, ticket, level):
    those keys, ``fraction_remaining`` (mean), ``test_accuracy_mean``,
    ``test_accuracy_std`` (the sample std, ddof=1; NaN for one seed),
    ``test_accuracy_low`` and ``test_accuracy_high`` (the 95% Student-t interval of
    the mean, :func:`lth_jax.stats.t_interval`; −inf and inf for one seed),
    ``test_loss_mean``, ``seeds`` (sorted) and ``n``; sorted by the group keys.
    Bad rows are errors (:func:`group_rows`)."""
    groups = group_rows(rows)
    return [_summarize(group, groups[group]) for group in sorted(groups)]

"""A claims study: several transfer studies and IMP curves, then one claims report.

A claims config (``experiments/configs/transfer_claims_digits.py``) names
``models`` (find_ticket recipes by key), the ``seeds``, the IMP ``levels``, the
``parts`` and the ``claims``. Each part is a transfer study
(:func:`lth_jax.transfer.run_transfer_study`) into ``WORKDIR/<part>``, or, without
targets, the source's IMP curve alone (:func:`lth_jax.find_ticket.find_ticket`);
a part may transfer the source tickets of an earlier part (``source_from``). Every
part resumes where it stopped. :func:`write_claims_report` then measures each
claim (:mod:`lth_jax.claims`) and writes ``WORKDIR/report``: ``claims.md``,
``claims.csv``, ``paired.csv``, one figure per target and one of the IMP curves.

Claim levels may be given as ``"high"`` (every transferred level at or beyond
90% pruned) or ``"cliff"`` (the level nearest 90% pruned, then the study's
``levels``, the deepest level of its transfers; curves that go deeper are drawn
to their end).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Sequence

import ml_collections
import numpy as np
from etils import epath

from lth_jax import plots
from lth_jax.claims import Claim, claims_rows, claims_table, evaluate_claims
from lth_jax.errors import UserError
from lth_jax.find_ticket import find_ticket
from lth_jax.paired import paired_rows, paired_table
from lth_jax.recipe import with_optimizer
from lth_jax.report import plot_target
from lth_jax.results import read_json, write_csv
from lth_jax.rows import load_rows, study_row
from lth_jax.stage import Stage
from lth_jax.stats import t_interval
from lth_jax.transfer import run_transfer_study
from lth_jax.transfer_study import TransferStudy

__all__ = ["Part", "ClaimsConfig", "run", "run_claims", "claims_rows_of", "write_claims_report"]

HIGH_SPARSITY = 0.9  # "high": transferred levels at or beyond this fraction pruned


@dataclasses.dataclass(frozen=True)
class Part:
    """One transfer study of a claims study (or an IMP curve alone: no ``targets``)."""

    name: str
    source: str
    targets: tuple[str, ...] = ()
    model: str = "vgg"
    source_optimizer: str = "sgd"
    target_optimizer: str = "sgd"
    baselines: tuple[str, ...] = ("random", "target_own")
    source_levels: int | None = None  # IMP levels of the source run (default: the study's levels; "deep": deep_levels)
    source_from: str | None = None  # transfer the source tickets of this earlier part
    source_epochs: int | None = None  # epochs of the source's training (default: the model's recipe), e.g. as many steps on a smaller source


@dataclasses.dataclass(frozen=True)
class ClaimsConfig:
    models: dict
    seeds: tuple[int, ...]
    levels: int
    transfer_levels: tuple[int, ...]
    parts: tuple[Part, ...]
    claims: tuple[dict, ...]
    optimizers: dict = dataclasses.field(default_factory=dict)  # name -> optimizer fields (default: the presets)

    @classmethod
    def from_config(cls, c) -> "ClaimsConfig":
        seeds = tuple(int(s) for s in c.seeds)
        levels = int(c.levels)
        if levels < 1:
            raise UserError(f"levels={levels}: a claims study needs at least one pruned level")
        if len(seeds) < 2:
            raise UserError(f"seeds={list(seeds)}: intervals over seeds need at least two")
        transfer = tuple(sorted({*range(0, levels + 1, int(c.transfer_every)), levels})) if c.transfer_every else tuple(range(levels + 1))
        parts = tuple(Part(**{k: _part_value(k, v, c) for k, v in dict(p).items()}) for p in c.parts)
        names = [p.name for p in parts]
        for i, p in enumerate(parts):
            if p.model not in c.models:
                raise UserError(f"part {p.name}: model {p.model!r} is not one of the config's models ({', '.join(c.models)})")
            if p.source_from is not None and p.source_from not in names[:i]:
                raise UserError(f"part {p.name}: source_from={p.source_from!r} names no earlier part")
        if len(set(names)) != len(names):
            raise UserError(f"parts have repeated names: {', '.join(names)}")
        optimizers = {k: dict(v) for k, v in (c.get("optimizers") or {}).items()}
        return cls({k: c.models[k] for k in c.models}, seeds, levels, transfer, parts, tuple(dict(claim) for claim in c.claims), optimizers)

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def source_levels(self, part: Part) -> int:
        return self.levels if part.source_levels is None else int(part.source_levels)

    def recipe(self, part: Part, optimizer: str, dataset: str, levels: int, epochs: int | None = None) -> ml_collections.ConfigDict:
        if optimizer in self.optimizers:  # the study's own optimizer settings, else lth_jax.recipe.OPTIMIZER_PRESETS
            c = ml_collections.ConfigDict(self.models[part.model].to_dict())
            c.optimizer.update(self.optimizers[optimizer])
        else:
            c = with_optimizer(self.models[part.model], optimizer)
        c.dataset, c.seed, c.seeds = dataset, self.seeds[0], self.seeds
        c.pruning.levels = levels
        if epochs is not None:  # the test set is read at the end of training, as the recipe's
            c.training.update(epochs=int(epochs), eval_every_epochs=int(epochs))
        return c


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> epath.Path:
    """The claims experiment (``experiments/transfer_claims.py``): :func:`run_claims`."""
    return run_claims(c, workdir, log_fn=log_fn)


def _part_value(key: str, value, c):
    if key == "source_levels" and value == "deep":  # the config's deep_levels
        return int(c.deep_levels)
    return tuple(value) if isinstance(value, list) else value


def _source_dir(workdir: epath.Path, cc: ClaimsConfig, part: Part) -> epath.Path:
    """Where a part's source IMP runs are (``seed_<s>`` below)."""
    if part.source_from is not None:
        return _source_dir(workdir, cc, cc.part(part.source_from))
    return workdir / part.name / "source" / f"{part.source}_{part.source_optimizer}"


def run_claims(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> epath.Path:
    """Run (or resume) every part of claims config ``c`` into ``workdir``; write the report; return its directory."""
    cc, workdir = ClaimsConfig.from_config(c), epath.Path(workdir)
    for i, part in enumerate(cc.parts):
        log_fn(f"[{i + 1}/{len(cc.parts)}] {part.name}: {part.source} ({part.source_optimizer})"
               + (f" → {', '.join(part.targets)} ({part.target_optimizer})" if part.targets else ", IMP curve"))
        source = cc.recipe(part, part.source_optimizer, part.source, cc.source_levels(part), part.source_epochs)
        if not part.targets:
            find_ticket(source, _source_dir(workdir, cc, part), log_fn=log_fn, progress=False)
            continue
        study = TransferStudy(
            source=part.source, targets=part.targets, levels=cc.transfer_levels, baselines=part.baselines, seeds=cc.seeds,
            source_workdir=None if part.source_from is None else os.fspath(_source_dir(workdir, cc, part)),
        )
        target = cc.recipe(part, part.target_optimizer, part.targets[0], cc.levels)
        run_transfer_study(source, study, workdir / part.name, target_config=target, log_fn=log_fn)
    return write_claims_report(c, workdir)


def _source_rows(workdir: epath.Path, cc: ClaimsConfig, part: Part) -> list[dict]:
    """The IMP curve of a part's own source run, one row per seed and level, as ticket kind ``source``."""
    base, out = _source_dir(workdir, cc, part), []
    model = cc.models[part.model].model
    names = dict(source=part.source, source_optimizer=part.source_optimizer, target=part.source, target_optimizer=part.source_optimizer)
    for seed in cc.seeds:
        for level in range(cc.source_levels(part) + 1):
            record = base / f"seed_{seed}" / f"level_{level:02d}" / Stage.RECORD
            if record.exists():
                out.append({**study_row(read_json(record), "source", seed, model, None, workdir, **names), "part": part.name})
    return out


def claims_rows_of(c, workdir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``(transfer rows, source-curve rows)`` of a claims study's workdir."""
    cc, workdir = ClaimsConfig.from_config(c), epath.Path(workdir)
    transfer_dirs = [workdir / p.name for p in cc.parts if p.targets and (workdir / p.name / "metrics.jsonl").exists()]
    transfer = load_rows([os.fspath(d) for d in transfer_dirs]) if transfer_dirs else []
    sources = [row for p in cc.parts if p.source_from is None for row in _source_rows(workdir, cc, p)]
    return transfer, sources


def _resolve_levels(spec, cc: ClaimsConfig, rows: Sequence[dict], curves: Sequence) -> tuple[int, ...]:
    if not isinstance(spec, str):
        return tuple(int(level) for level in spec)
    grid = {int(r["level"]): float(r["fraction_remaining"]) for r in rows if any(curve.matches(r) for curve in curves)}
    if not grid:  # no rows: the claim reads "cannot tell"
        return (0, cc.levels) if spec == "cliff" else (cc.levels,)
    if spec == "high":
        high = [level for level in cc.transfer_levels if level in grid and 1 - grid[level] >= HIGH_SPARSITY - 1e-9]
        return tuple(high) or (max(grid),)
    if spec == "cliff":  # from ~90% pruned to the study's deepest level (deeper curves reach chance: drawn, not read)
        near = min(grid, key=lambda level: abs(math.log(grid[level]) - math.log(1 - HIGH_SPARSITY)))
        deepest = cc.levels if cc.levels in grid else max(grid)
        return (near, deepest) if deepest > near else (near, near + 1)
    raise UserError(f"claim levels {spec!r} is not a list of levels, 'high' or 'cliff'")


def _claims(cc: ClaimsConfig, rows: Sequence[dict]) -> list[Claim]:
    out = []
    for spec in cc.claims:
        claim = Claim.from_dict({**spec, "levels": (0, 1)})  # resolved below
        out.append(dataclasses.replace(claim, levels=_resolve_levels(spec["levels"], cc, rows, (claim.a, claim.b))))
    return out


def plot_source_curves(rows: Sequence[dict]):
    """Test accuracy of each source's IMP run against % pruned (log axis), mean and 95% t interval over seeds."""
    fig = plots.figure((8, 4.5))
    ax = fig.subplots()
    curves: dict[tuple, dict[int, list[dict]]] = {}
    for row in rows:
        curves.setdefault((row["part"], row["model"], row["source"], row["source_optimizer"]), {}).setdefault(int(row["level"]), []).append(row)
    for (part, model, source, optimizer), levels in sorted(curves.items()):
        points = []
        for level, members in sorted(levels.items()):
            interval = t_interval([100 * m["test_accuracy"] for m in members])
            points.append({"fraction_remaining": float(np.mean([m["fraction_remaining"] for m in members])), "mean": interval.mean,
                           "low": interval.low, "high": interval.high})
        plots.interval_curve(ax, points, mean="mean", low="low", high="high", limits=(0.0, 100.0), label=f"{model} on {source} ({optimizer})")
    seeds = len({row["seed"] for row in rows})
    plots.sparsity_axis(ax, [row["fraction_remaining"] for row in rows])
    ax.set(ylabel="test accuracy (%)", title=f"IMP on the source (mean and 95% t interval over {seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def write_claims_report(c, workdir: str | os.PathLike, out: str | os.PathLike | None = None) -> epath.Path:
    """``claims.md`` (the claims table, the paired differences, the figures), ``claims.csv``,
    ``paired.csv`` and the PNGs, into ``out`` (default ``WORKDIR/report``), from what the
    workdir holds (claims without rows read "cannot tell")."""
    cc, workdir = ClaimsConfig.from_config(c), epath.Path(workdir)
    out = epath.Path(out) if out is not None else workdir / "report"
    out.mkdir(parents=True, exist_ok=True)
    transfer, sources = claims_rows_of(c, workdir)
    results = evaluate_claims(transfer + sources, _claims(cc, transfer + sources))
    write_csv(out / "claims.csv", claims_rows(results))
    figures = []
    for target, optimizer in sorted({(r["target"], r["target_optimizer"]) for r in transfer}):
        name = f"accuracy_{target}_{optimizer}.png"
        plots.save(plot_target(transfer, target, optimizer), out / name)
        figures.append((f"Tickets trained on {target} with {optimizer}", name))
    if sources:
        plots.save(plot_source_curves(sources), out / "imp_sources.png")
        figures.append(("IMP on each source", "imp_sources.png"))
    paired = paired_rows(transfer) if transfer else []
    if paired:
        write_csv(out / "paired.csv", paired)
    seeds = len(cc.seeds)
    lines = [
        "# Morcos et al.'s claims, measured",
        "",
        f"Workdir `{os.fspath(workdir)}`; {seeds} seeds; IMP to level {cc.levels} "
        f"({100 * (1 - 0.8 ** cc.levels):.2f}% pruned at 20% a level); transferred levels {', '.join(map(str, cc.transfer_levels))}.",
        "Effects are in test-accuracy points, per seed, with the Student-t 95% interval of their mean over seeds.",
        "",
        claims_table(results),
        "",
    ]
    lines += [f"## {title}\n\n![{title}]({name})\n" for title, name in figures]
    if paired:
        lines += ["## Paired differences over seeds (every transferred level)", "",
                  "Transferred − own and transferred − random, accuracy points, mean [95% t interval] (seeds paired).", "",
                  paired_table(paired), ""]
    (out / "claims.md").write_text("\n".join(lines))
    return out

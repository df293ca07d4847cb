"""What a transfer study (Morcos et al. 2019) transfers where: :class:`TransferStudy`, and the
ml_collections config of the transfer experiment (:func:`default_config`). :mod:`lth_jax.transfer`
runs it."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import ml_collections
from ml_collections import config_dict

from lth_jax.data.registry import get_spec
from lth_jax.errors import UserError
from lth_jax.recipe import OPTIMIZER_PRESETS
from lth_jax.recipe import default_config as recipe_config

__all__ = ["BASELINES", "TransferStudy", "default_config"]

BASELINES = ("random", "target_own")


def _names(values) -> list[str]:
    """Names from a list, a tuple or comma-separated strings (as config overrides give them)."""
    values = [values] if isinstance(values, str) else list(values or ())
    return [name.strip() for value in values for name in str(value).split(",") if name.strip()]


@dataclasses.dataclass(frozen=True)
class TransferStudy:
    """What to transfer where.

    Attributes:
      source: the source dataset (ignored with ``source_workdir``: the tickets say).
      targets: target datasets.
      levels: source levels to transfer (default: every level of the source run).
      baselines: any of ``"random"`` and ``"target_own"``.
      seeds: replicates; seed ``s`` finds the source tickets, initialises and trains with ``s``.
      source_optimizer / target_optimizer: a key of ``OPTIMIZER_PRESETS`` or ``"config"``.
      source_workdir: reuse the tickets of an existing find_ticket workdir
        (``seed_<s>`` subdirectories, or the workdir itself for one seed).
      random_scope: ``"layer"`` (per-layer counts of the winning ticket) or ``"global"``.
      reinit_head: re-initialise the output layer even when its shape matches.
      prune_head: prune a fresh output layer to the ticket's sparsity (default: dense).
      shared_init: the target's own IMP run starts from the source's initialization of the seed
        (default: from a stream of its own, ``Streams.init("target_own")``, so that "transferred as
        good as own" is not true by construction). Random tickets always draw their own.
    """

    source: str | None
    targets: Sequence[str]
    levels: Sequence[int] | None = None
    baselines: Sequence[str] = ("random",)
    seeds: Sequence[int] = (0,)
    source_optimizer: str = "config"
    target_optimizer: str = "config"
    source_workdir: str | None = None
    random_scope: str = "layer"
    reinit_head: bool = False
    prune_head: bool = False
    shared_init: bool = False

    @classmethod
    def from_config(cls, c) -> "TransferStudy":
        """The study of a transfer config (:func:`default_config`; names may be
        given comma-separated, as ``--config.targets=cifar10,svhn_cropped``)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(c) - fields - {"recipe"})
        if unknown:
            raise UserError(f"the config has fields a transfer study does not know: {', '.join(unknown)}")
        values = {k: v for k, v in c.items() if k in fields}
        values["source"] = values.get("source") or c.recipe.dataset
        values["targets"] = _names(values.get("targets"))
        values["baselines"] = _names(values.get("baselines"))
        values["seeds"] = tuple(int(s) for s in values.get("seeds", (0,)))
        if values.get("levels") is not None:
            values["levels"] = tuple(int(level) for level in values["levels"])
        return cls(**values)

    def check(self) -> None:
        """One-line ``UserError``s for settings that cannot work, before anything trains."""
        if not self.targets:
            raise UserError("targets is empty: name at least one target dataset")
        for name in ([self.source] if self.source_workdir is None else []) + list(self.targets):
            get_spec(name)
        for which, preset in (("source_optimizer", self.source_optimizer), ("target_optimizer", self.target_optimizer)):
            if preset != "config" and preset not in OPTIMIZER_PRESETS:
                raise UserError(f"{which}={preset!r} is not one of config, {', '.join(OPTIMIZER_PRESETS)}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise UserError(f"unknown baseline {unknown[0]!r}; known baselines: {', '.join(BASELINES)}")
        if not self.seeds:
            raise UserError("seeds is empty: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds={list(self.seeds)} holds duplicates")
        if self.random_scope not in ("layer", "global"):
            raise UserError(f"random_scope={self.random_scope!r} is not one of layer, global")


def default_config(recipe=None) -> ml_collections.ConfigDict:
    """Every field of a transfer study: ``recipe``, the source's recipe (a find_ticket
    config, by default :func:`lth_jax.recipe.default_config`), and the fields
    of :class:`TransferStudy`."""
    c = ml_collections.ConfigDict()
    c.recipe = recipe_config() if recipe is None else recipe
    c.source = config_dict.placeholder(str)  # default: the recipe's dataset
    c.targets = ()  # target datasets (comma-separated on the command line)
    c.levels = config_dict.placeholder(tuple)  # default: every level of the source run
    c.baselines = ("random",)  # random, target_own
    c.seeds = (0,)
    c.source_optimizer = "config"  # config (the recipe's), sgd or adam
    c.target_optimizer = "config"
    c.source_workdir = config_dict.placeholder(str)  # reuse the tickets of a find_ticket workdir
    c.random_scope = "layer"  # layer: per-layer counts; global: the total only
    c.reinit_head = False  # re-initialise the output layer even when its shape matches
    c.prune_head = False  # prune a fresh output layer to the ticket's sparsity
    c.shared_init = False  # the target's own tickets from the source's initialization (default: an independent stream)
    return c

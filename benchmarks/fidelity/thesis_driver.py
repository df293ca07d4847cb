"""Runs points of the thesis's experiments through the thesis's own PyTorch code.

This script is not part of lth_jax and imports none of it: it runs in a
virtualenv of its own (CPU torch, numpy, scikit-learn, sympy, networkx, tqdm)
against a checkout of the thesis's repository
(``maxburger4real/structure-of-lottery-tickets``), whose ``project/`` modules it
imports unchanged. Only the side effects that need a network or write files
are replaced: wandb (its runner logs every level there), networkx's GraphML
dump of every level into the working directory, and the plotly figures drawn at
the split level. Everything that decides a result (data, model, initialisation,
optimizer, early stopping, pruning, trajectory, structure analysis, stop
rules) is the thesis's code.

    THESIS=/path/to/structure-of-lottery-tickets
    $VENV/bin/python benchmarks/fidelity/thesis_driver.py --thesis_repo=$THESIS \\
        --point=w38_L10 --seeds=0-15 --out=runs/fidelity/thesis.jsonl

Points: ``extN`` (extension level N of the (4, 8, 8, 2) base, the thesis's
``extend-model-till-20.py``), ``e2_extN`` (base (4, 20, 2)) and ``wW_LN``
(width W, N levels pruned to 112 weights, ``levels-vs-size.py``). Each finished
(point, seed) is one JSON line appended to ``--out`` (per level: weights,
untapped potential, active/inactive/zombie weights, test loss per task,
accuracy, epochs trained; and the kernel masks of each level in an ``.npz``
beside it); a rerun skips the pairs already there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np


def _stub_modules() -> None:
    """Modules the thesis imports for logging and figures only (no network, no files)."""
    wandb = types.ModuleType("wandb")
    wandb.log = lambda *a, **k: None
    sys.modules["wandb"] = wandb
    plotly = types.ModuleType("plotly")
    go = types.ModuleType("plotly.graph_objects")
    go.Figure = go.Scatter = go.Layout = object  # names used in annotations and figure code only
    plotly.graph_objects = go
    sys.modules["plotly"], sys.modules["plotly.graph_objects"] = plotly, go
    # torchvision is imported by datasets.py for MNIST only; PyPI's build does not load beside CPU torch.
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    try:
        import matplotlib.colors  # noqa: F401
    except ImportError:
        mpl = types.ModuleType("matplotlib")
        mpl.colors = types.ModuleType("matplotlib.colors")
        sys.modules["matplotlib"], sys.modules["matplotlib.colors"] = mpl, mpl.colors


def parse_point(name: str) -> dict:
    """Sweep parameters of a point, as the thesis's sweep configs set them."""
    if name.startswith("w"):
        width, levels = name[1:].split("_L")
        return {"config": "levels-vs-size.py", "model_shape": [4, int(width), int(width), 2], "pruning_levels": int(levels)}
    if name.startswith("e2_ext"):
        return {"config": "extend-model-till-20.py", "base_model_shape": [4, 20, 2], "extension_levels": int(name[6:])}
    if name.startswith("ext"):
        return {"config": "extend-model-till-20.py", "base_model_shape": [4, 8, 8, 2], "extension_levels": int(name[3:])}
    raise SystemExit(f"error: unknown point {name!r}; expected extN, e2_extN or wW_LN")


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


class Capture:
    """What the thesis's IMP routine reports per level, read from its own objects."""

    def __init__(self):
        self.rows, self.masks, self.epochs = [], [], 0


def fast_tensor_batches() -> None:
    """Index a TensorDataset once per batch instead of once per example.

    The DataLoader's sampler (and so the batch order, drawn from torch's global
    generator) is untouched; only the fetch changes, from stacking B indexed
    rows to one indexing with the B indices: the same tensors bit for bit
    (``--exact_loader`` runs the per-example fetch: compare the two outputs), and
    a third less time per epoch.
    """
    import torch
    from torch.utils.data import TensorDataset
    from torch.utils.data._utils import fetch

    original = fetch._MapDatasetFetcher.fetch

    def batched_fetch(self, possibly_batched_index):
        if self.auto_collation and isinstance(self.dataset, TensorDataset):
            index = torch.as_tensor(possibly_batched_index, dtype=torch.long)
            return [t[index] for t in self.dataset.tensors]
        return original(self, possibly_batched_index)

    fetch._MapDatasetFetcher.fetch = batched_fetch


def batched_test_loader() -> None:
    """The test loader of the thesis's code when its grids were run (commit 8745f36, February 2024):
    batches of the training batch size, and early stopping on the unweighted mean of the batch means
    (15 batches of 64 and one of 40 for Moons+Circles); its last version evaluates one batch of 1000."""
    from torch.utils.data import DataLoader
    from training import datasets

    original = datasets.make_dataloaders

    def make_dataloaders(x_train, y_train, x_test, y_test, batch_size):
        train, test = original(x_train, y_train, x_test, y_test, batch_size)
        return train, DataLoader(test.dataset, batch_size=batch_size)

    datasets.make_dataloaders = make_dataloaders


def install_hooks(capture: Capture):
    import networkx as nx
    from training import pruning  # noqa: F401  (first, as the thesis's runner does: its imports are circular)
    from utils import logger, nxutils

    import factory

    nx.write_graphml = lambda *a, **k: None  # the thesis dumps two GraphML files per level into the cwd
    nxutils.GraphManager.fig = lambda self, *a, **k: None  # plotly figures of the split ticket

    def commit(self):
        if self.logdict:
            capture.rows.append(dict(self.logdict))
        self.logdict = {}

    logger.Logger.commit = commit
    original_update = nxutils.GraphManager.update

    def update(self, model, iteration):
        original_update(self, model, iteration)
        capture.masks.append([m.weight_mask.detach().numpy().astype(bool).T for m in model.layers])  # (fan_in, fan_out)
        capture.last_manager = self

    nxutils.GraphManager.update = update
    original_call = factory.EarlyStopper.__call__

    def call(self, loss):
        capture.epochs += 1
        return original_call(self, loss)

    factory.EarlyStopper.__call__ = call


def run_point(repo: str, point: dict, seed: int, capture: Capture) -> dict:
    from training.config import import_config
    from training.pruning import update_pruning_config
    from training.routines import start_routine

    config, _ = import_config(os.path.join(repo, "project", "configs", point["config"]))
    config.model_seed = seed
    for key in ("model_shape", "pruning_levels", "base_model_shape", "extension_levels"):
        if key in point:
            setattr(config, key, point[key])
    if "model_shape" in point:
        config.pruning_rate = None
        # levels-vs-size.py leaves base_model_shape unset; update_pruning_config counts it.
        config.base_model_shape = point["model_shape"]
    config = update_pruning_config(config)
    capture.rows, capture.masks = [], []
    epochs_per_level = []

    original = capture.epochs
    start = time.perf_counter()
    import factory

    make_stopper = factory.Factory.make_stopper

    def counting_stopper(self):
        epochs_per_level.append(capture.epochs)
        return make_stopper(self)

    factory.Factory.make_stopper = counting_stopper
    try:
        start_routine(config)
    finally:
        factory.Factory.make_stopper = make_stopper
    epochs_per_level.append(capture.epochs)
    epochs = np.diff(epochs_per_level).tolist()
    levels = []
    for row in capture.rows:
        if "graph/untapped-potential" not in row:
            continue  # the initial evaluation before training
        levels.append(
            {
                "level": len(levels),
                "weights": int(row["meta/pparams"]),
                "untapped_potential": float(row["graph/untapped-potential"]),
                "active_edges": int(row["graph/active-weights-abs"]),
                "inactive_edges": int(row["graph/inactive-weights-abs"]),
                "zombie_edges": int(row["graph/zombious-weights-abs"]),
                "pruned_edges": int(row["graph/pruned-weights-abs"]),
                "test_loss": float(row["performance/val_loss"]),
                # The thesis's logger files per-task values under keys that grow with each task name.
                "accuracy": [float(v) for k, v in row.items() if k.startswith("tasks_performance/accuracy")],
                "test_loss_per_task": [float(v) for k, v in row.items() if k.startswith("tasks_performance/val_loss")],
                "epochs": int(epochs[len(levels)]),
            }
        )
    manager = capture.last_manager
    return {
        "trajectory": [int(t) for t in config.param_trajectory],
        "shape": [int(s) for s in config.model_shape],
        "split_level": None if manager.split_iteration is None else int(manager.split_iteration + config.extension_levels),
        "degradation_level": None if manager.degradation_iteration is None else int(manager.degradation_iteration + config.extension_levels),
        "levels": levels,
        "seconds": time.perf_counter() - start,
        "total_epochs": capture.epochs - original,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thesis_repo", required=True, help="a checkout of maxburger4real/structure-of-lottery-tickets")
    parser.add_argument("--point", action="append", required=True, help="extN, e2_extN or wW_LN (repeatable)")
    parser.add_argument("--seeds", default="0-3", help="e.g. 0-15 or 0,2,5")
    parser.add_argument("--out", required=True, help="JSON-lines file the results are appended to")
    parser.add_argument("--exact_loader", action="store_true", help="keep the DataLoader's per-example fetch (slower; same numbers)")
    parser.add_argument("--test_loader", choices=("full", "batched"), default="full",
                        help="full: one test batch (the published code); batched: the batch size, as when the grids were run")
    args = parser.parse_args(argv)
    project = os.path.join(os.path.abspath(args.thesis_repo), "project")
    if not os.path.isdir(os.path.join(project, "training")):
        raise SystemExit(f"error: --thesis_repo={args.thesis_repo} holds no project/training/ (is it a checkout of the thesis's repository?)")

    import torch

    torch.set_num_threads(1)
    import functools

    import tqdm

    tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)  # a progress bar per level
    _stub_modules()
    if not args.exact_loader:
        fast_tensor_batches()
    sys.path.insert(0, project)
    capture = Capture()
    install_hooks(capture)
    if args.test_loader == "batched":
        batched_test_loader()
    import sklearn

    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {(r["point"], r["seed"]) for r in map(json.loads, f) if r}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    mask_dir = os.path.splitext(args.out)[0] + "_masks"
    os.makedirs(mask_dir, exist_ok=True)
    cwd = os.getcwd()
    for name in args.point:
        point = parse_point(name)
        for seed in parse_seeds(args.seeds):
            if (name, seed) in done:
                continue
            os.chdir(mask_dir)  # anything the thesis still writes lands here, not in the repository
            try:
                result = run_point(os.path.abspath(args.thesis_repo), point, seed, capture)
            finally:
                os.chdir(cwd)
            np.savez_compressed(
                os.path.join(mask_dir, f"{name}_seed{seed}.npz"),
                **{f"level{l}_layer{i}": m for l, masks in enumerate(capture.masks) for i, m in enumerate(masks)},
            )
            record = {"system": "thesis_code", "point": name, "seed": seed, "test_loader": args.test_loader, **result,
                      "versions": {"torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__}}
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{name} seed {seed}: split {result['split_level']} degraded {result['degradation_level']} "
                  f"({len(result['levels'])} levels, {result['total_epochs']} epochs, {result['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

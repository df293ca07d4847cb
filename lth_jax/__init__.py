"""lth_jax: lottery tickets in JAX.

Experiments (each with ``run(config, workdir)``, a script ``experiments/X.py`` and
presets ``experiments/configs/X_*.py``):
  find_ticket     winning tickets on image classifiers with a paper's recipe
  transfer        Morcos et al.'s ticket transfer across datasets and optimizers
  parallel_tasks  the thesis: do parallel tasks get separate subnetworks?
  thesis_sweep    the thesis's grids E1-E4
  imp_mlp         a small IMP example on Moons+Circles
  report          figures and tables of transfer studies (with overlap, plots)

The engine and the exact core (import what you need):
  masks       mask algebra over parameter pytrees (init, apply, prune, random, overlap)
  trajectory  pruning trajectories, the pruning plan, the thesis's network extension
  optim       optimizers from a recipe, wrapped so pruned weights get zero updates
  objectives  losses and metrics on logits (softmax, per-task sigmoid / softmax)
  train       TrainState, jitted data-parallel train/eval steps, the training recipe
  loop        the training loop over R >= 1 replicas (evaluation, early stopping, rewind, checkpoints)
  executors   how an epoch runs: on a device mesh, or every replica in one compiled program
  imp         iterative magnitude pruning with late resetting, resumable
  tickets     what a ticket records; transfer, random tickets, training a ticket
  stage       the run-directory contract (settings compared on resume, atomic writes)
  structure   the structure of MLP tickets on parallel tasks
  rng         named random streams of a seed
  checkpoint, results, errors, models, data
"""

__version__ = "0.1.0"

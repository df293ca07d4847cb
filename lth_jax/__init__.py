"""lth_jax: lottery tickets in JAX.

Modules (import what you need):
  masks       mask algebra over parameter pytrees (init, apply, prune, random, overlap)
  trajectory  pruning trajectories and the thesis's network extension
  optim       optimizers from a recipe, wrapped so pruned weights get zero updates
  objectives  losses and metrics on logits (softmax, per-task sigmoid / softmax)
  train       TrainState, train/eval steps (data-parallel), the fit loop
  imp         iterative magnitude pruning with late resetting, resumable
  checkpoint  tickets and train states on disk (orbax + JSON)
  models      the model zoo, starting with the thesis MLP
  data        in-memory datasets and the synthetic data of the thesis
"""

__version__ = "0.1.0"

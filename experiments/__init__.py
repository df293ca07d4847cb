"""Experiment entry points: thin absl scripts over the lth_jax library."""

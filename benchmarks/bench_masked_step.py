"""Overhead of the mask: the masked train step against the same step without masking.

    python benchmarks/bench_masked_step.py [--repeats 7] [--steps 50]

Both steps are jitted, take the same batch, use the same model and optimizer
(SGD, momentum 0.9, weight decay 1e-4) and compute the same metrics; the
unmasked one is ``train_step`` with every mask operation taken out. ``masked``
is the default step (mask applied before the forward pass and after the
update); ``masked_fast`` is ``mask_forward=False``, the step the IMP engine
uses (pruned weights are already 0, so only the fused post-update mask runs). Printed per model: seconds
per step of each and the overhead ratio (masked / unmasked), measured
interleaved in one process.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, interleaved, machine, unmasked_step_fn  # noqa: E402

from lth_jax import masks, objectives  # noqa: E402
from lth_jax.models import get_model  # noqa: E402
from lth_jax.optim import OptimizerRecipe, make_optimizer  # noqa: E402
from lth_jax.train import create_train_state, init_variables, make_train_step  # noqa: E402


def bench(name, model, x, y, repeats, steps):
    recipe = OptimizerRecipe(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4)
    objective = objectives.softmax_classification()
    params, _ = init_variables(model, jax.random.PRNGKey(0), x[:1])
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.8)
    tx = make_optimizer(recipe, 1, steps)
    masked_step = make_train_step(model, tx, objective, donate=True)
    fast_step = make_train_step(model, tx, objective, donate=True, mask_forward=False)
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    state = [create_train_state(params, tx, mask=mask)]
    fast_state = [create_train_state(params, tx, mask=mask)]
    plain_tx, plain_step = unmasked_step_fn(model, objective, recipe, steps)
    plain = [params, {}, plain_tx.init(params), jnp.asarray(0, jnp.int32)]

    def runner(step_fn, holder):
        def run():
            s = holder[0]
            for _ in range(steps):
                s, sums = step_fn(s, batch)
            jax.block_until_ready(s.params)
            holder[0] = s

        return run

    def run_plain():
        p, b, o, k = plain
        for _ in range(steps):
            p, b, o, k, sums = plain_step(p, b, o, k, batch)
        jax.block_until_ready(p)
        plain[:] = [p, b, o, k]

    t = interleaved(
        {"masked": runner(masked_step, state), "masked_fast": runner(fast_step, fast_state), "unmasked": run_plain},
        repeats=repeats,
    )
    emit(
        {
            "bench": "masked_train_step",
            "model": name,
            "batch": int(x.shape[0]),
            "params": int(sum(np.size(p) for p in jax.tree.leaves(params))),
            "masked_ms_per_step": round(1000 * t["masked"] / steps, 3),
            "masked_fast_ms_per_step": round(1000 * t["masked_fast"] / steps, 3),
            "unmasked_ms_per_step": round(1000 * t["unmasked"] / steps, 3),
            "overhead_ratio": round(t["masked"] / t["unmasked"], 3),
            "overhead_ratio_fast": round(t["masked_fast"] / t["unmasked"], 3),
            **machine(),
        }
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    y = rng.integers(0, 10, 128).astype(np.int32)
    bench("lenet_300_100 (MLP 784-300-100-10)", get_model("lenet_300_100", 10), x, y, args.repeats, args.steps)
    x = rng.standard_normal((32, 16, 16, 3)).astype(np.float32)
    y = rng.integers(0, 10, 32).astype(np.int32)
    bench("conv2 (16x16x3)", get_model("conv_2", 10), x, y, args.repeats, max(5, args.steps // 5))


if __name__ == "__main__":
    main()

"""Data parallelism on 8 simulated CPU devices (in a subprocess: XLA_FLAGS must precede jax)."""

import json

from conftest import run_python

SCRIPT = """
import json, sys
import jax, numpy as np
sys.path.insert(0, "tests")
from helpers import ConvBN, image_data, vector_data
from lth_jax import masks, objectives, parallel
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe, make_optimizer
from lth_jax.loop import fit
from lth_jax.train import TrainConfig, create_train_state, init_variables, make_eval_step, make_train_step

assert len(jax.devices()) == 8, jax.devices()
one = parallel.data_mesh(jax.devices()[:1])
eight = parallel.data_mesh()

def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

out = {}
# One step of a conv net with BatchNorm: params and batch statistics.
model, data = ConvBN(), image_data(n=64)
params, stats = init_variables(model, jax.random.PRNGKey(0), data.x[:1])
mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.5)
tx = make_optimizer(OptimizerRecipe(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4), 1, 10)
objective = objectives.softmax_classification()
batch = next(iter(data.batches(64, seed=0)))
results = {}
for name, mesh in (("one", one), ("eight", eight)):
    state = parallel.put_replicated(create_train_state(params, tx, mask=mask, batch_stats=stats), mesh)
    step = make_train_step(model, tx, objective, mesh=mesh)
    for _ in range(3):
        state, sums = step(state, parallel.put_batch(batch, mesh))
    results[name] = jax.device_get(state)
    out[name + "_shards"] = len(parallel.put_batch(batch, mesh)["x"].addressable_shards)
out["conv_params"] = max_diff(results["one"].params, results["eight"].params)
out["conv_stats"] = max_diff(results["one"].batch_stats, results["eight"].batch_stats)
out["conv_moved"] = max_diff(results["one"].params, params)
out["conv_pruned_zero"] = bool(all(np.all(np.asarray(p)[~np.asarray(m)] == 0) for p, m in zip(jax.tree.leaves(results["eight"].params), jax.tree.leaves(mask))))

# A whole fit of the MLP (padded last batch included): same params.
model = MLP((4, 16, 2))
train, test = vector_data(n=100), vector_data(n=40, seed=1)
params, _ = init_variables(model, jax.random.PRNGKey(1), train.x[:1])
config = TrainConfig(epochs=3, batch_size=16, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-2), log_every_epochs=0)
fits = {}
for name, mesh in (("one", one), ("eight", eight)):
    tx = make_optimizer(config.optimizer, 7, 21)
    objective = objectives.sigmoid_tasks(2)
    fits[name] = fit(create_train_state(params, tx), train_step_fn=make_train_step(model, tx, objective, mesh=mesh),
                     eval_step_fn=make_eval_step(model, objective, mesh=mesh), train_data=train, eval_data=test, config=config, mesh=mesh)
out["mlp_params"] = max_diff(fits["one"].state.params, fits["eight"].state.params)
out["mlp_loss"] = abs(fits["one"].final["test_loss"] - fits["eight"].final["test_loss"])
try:
    parallel.check_batch_size(12, eight)
except ValueError as e:
    out["bad_batch"] = str(e)
print(json.dumps(out))
"""


def test_eight_devices_match_one_device():
    proc = run_python(SCRIPT, devices=8)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["one_shards"] == 1 and out["eight_shards"] == 8
    assert out["conv_moved"] > 1e-3  # the steps did something
    assert out["conv_params"] < 1e-5
    assert out["conv_stats"] < 1e-5  # BatchNorm statistics over the global batch
    assert out["conv_pruned_zero"]
    assert out["mlp_params"] < 1e-5
    assert out["mlp_loss"] < 1e-5
    assert out["bad_batch"] == "batch_size=12 is not divisible by the 8 devices of the mesh"

"""Many seeds at once: vmapped seeds equal seeds run one at a time."""

import jax
import numpy as np
import pytest

from lth_jax import objectives
from lth_jax.data.synthetic import moons_circles
from lth_jax.imp import PruningPlan, run_imp, run_imp_seeds
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe
from lth_jax.train import TrainConfig

DATA = moons_circles()
CONFIG = TrainConfig(
    epochs=25,
    batch_size=64,
    optimizer=OptimizerRecipe(name="adam", learning_rate=3e-2),
    early_stopping_patience=3,
    log_every_epochs=0,
    checkpoint_every_epochs=1,
)
PLAN = PruningPlan(rate=0.4, levels=2)
MODEL = MLP((4, 12, 12, 2))


def run_seeds(seeds, **kwargs):
    kwargs.setdefault("log_fn", lambda line: None)
    return run_imp_seeds(MODEL, objectives.sigmoid_tasks(2), DATA.train, DATA.test, CONFIG, PLAN, seeds=seeds, **kwargs)


def assert_same_runs(a, b):
    assert [r["weights_remaining"] for r in a.records] == [r["weights_remaining"] for r in b.records]
    for ra, rb in zip(a.records, b.records):
        assert ra["epochs"] == rb["epochs"] and ra["stopped_early"] == rb["stopped_early"]
        assert ra["test_loss"] == pytest.approx(rb["test_loss"], rel=1e-4, abs=1e-6)
        assert ra["test_accuracy"] == pytest.approx(rb["test_accuracy"], abs=1e-3)
    for level in range(len(a.tickets)):
        for x, y in zip(jax.tree.leaves(a.tickets[level].mask), jax.tree.leaves(b.tickets[level].mask)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_vmapped_seeds_equal_sequential_seeds():
    seeds = [0, 1, 2]
    together = run_seeds(seeds, vmap=True)
    one_by_one = run_seeds(seeds, vmap=False)
    singles = [
        run_imp(MODEL, objectives.sigmoid_tasks(2), DATA.train, DATA.test, CONFIG, PLAN, seed=s, log_fn=lambda line: None)
        for s in seeds
    ]
    for t, o, s in zip(together, one_by_one, singles):
        assert_same_runs(t, s)
        assert_same_runs(o, s)
    # the seeds really differ: initializations, early stopping and masks
    epochs = {tuple(r["epochs"] for r in t.records) for t in together}
    assert len(epochs) > 1, "early stopping should end the seeds at different epochs"
    first = [np.asarray(jax.tree.leaves(t.tickets[2].mask)[1]) for t in together]
    assert not np.array_equal(first[0], first[1])


def test_a_seed_that_stops_leaves_the_others_running(tmp_path):
    stops = lambda r: r.seed == 1 and r.level == 1  # noqa: E731
    results = run_seeds([0, 1], vmap=True, workdir=tmp_path, level_callback=stops)
    assert [len(r.records) for r in results] == [3, 2]
    assert results[1].stopped_at_level == 1 and results[0].stopped_at_level is None
    assert (tmp_path / "seed_0" / "level_02" / "record.json").exists()
    assert not (tmp_path / "seed_1" / "level_02").exists()
    assert results[0].tickets[2].info["seed"] == 0


class Interrupt(Exception):
    pass


def test_vmapped_seeds_resume_mid_level(tmp_path):
    reference = run_seeds([3, 4], vmap=True)

    def interrupt(state, record):
        if record["level"] == 1 and record["epoch"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_seeds([3, 4], vmap=True, workdir=tmp_path, hooks=[interrupt])
    assert [p.name for p in (tmp_path / "seed_3" / "level_01" / "checkpoints").iterdir()]  # a mid-level checkpoint
    lines = []
    resumed = run_seeds([3, 4], vmap=True, workdir=tmp_path, log_fn=lines.append)
    assert any("resuming from step" in line for line in lines)
    for a, b in zip(resumed, reference):
        assert_same_runs(a, b)


def test_bad_seed_lists():
    with pytest.raises(ValueError, match="seeds is empty"):
        run_seeds([])
    with pytest.raises(ValueError, match=r"seeds=\[1, 1\] holds duplicates"):
        run_seeds([1, 1])


def test_the_two_executors_agree_with_batchnorm_augmentation_and_late_resetting():
    """The one training loop executes epochs either way; the vmapped executor on a
    BatchNorm model with on-device augmentation and a rewind to the end of epoch 1
    gives the data-parallel executor's tickets."""
    from helpers import ConvBN, image_data

    from lth_jax.data.augment import image_preprocess

    train, test = image_data(n=48, size=8), image_data(n=16, size=8, seed=1)
    config = TrainConfig(epochs=3, batch_size=16, optimizer=OptimizerRecipe(name="sgd", learning_rate=0.05, momentum=0.9),
                         drop_remainder=True, log_every_epochs=0)
    common = dict(seeds=[0, 1], rewind="1ep", preprocess=image_preprocess((0.0, 0.0), (1.0, 1.0), crop_padding=2, flip=True),
                  log_fn=lambda line: None)
    args = (ConvBN(), objectives.softmax_classification(), train, test, config, PruningPlan(rate=0.5, levels=2))
    together, one_by_one = run_imp_seeds(*args, vmap=True, **common), run_imp_seeds(*args, vmap=False, **common)
    for t, o in zip(together, one_by_one):
        assert t.rewind.step == o.rewind.step == 3
        for x, y in zip(jax.tree.leaves(t.rewind.batch_stats), jax.tree.leaves(o.rewind.batch_stats)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)  # BatchNorm statistics at the rewind step
        assert_same_runs(t, o)


def test_vmapped_seeds_refuse_streaming_data_with_one_line():
    class Streaming:  # a dataset without in-memory arrays
        def __init__(self, data):
            self.data = data

        def batches(self, *args, **kwargs):
            return self.data.batches(*args, **kwargs)

        def steps_per_epoch(self, *args):
            return self.data.steps_per_epoch(*args)

    from lth_jax.errors import UserError

    with pytest.raises(UserError, match="vmapped seeds need in-memory datasets"):
        run_imp_seeds(MODEL, objectives.sigmoid_tasks(2), Streaming(DATA.train), DATA.test, CONFIG, PLAN, seeds=[0, 1], vmap=True)

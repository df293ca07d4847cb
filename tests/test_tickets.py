"""lth_jax.tickets: what a ticket records, transferred start states, random tickets, fit checks; training a ticket."""

import jax
import numpy as np
import pytest

from lth_jax import masks
from lth_jax import tickets as tickets_lib
from lth_jax.data.arrays import ArrayDataset
from lth_jax.errors import UserError
from lth_jax.models import get_model
from lth_jax.objectives import softmax_classification
from lth_jax.optim import OptimizerRecipe
from lth_jax.pytree import named_leaves
from lth_jax.tickets import (
    Ticket,
    check_fits,
    head_info,
    level_ticket_dir,
    random_ticket,
    save_ticket,
    ticket_counts,
    ticket_levels,
    ticket_trainer,
    train_ticket,
    transfer_ticket,
)
from lth_jax.train import TrainConfig, init_variables

X = np.zeros((1, 16, 16, 3), np.float32)


def vgg(classes, seed):
    return init_variables(get_model("cifar_vgg_11", classes, width_multiplier=1 / 16), jax.random.PRNGKey(seed), X)


def source_ticket(classes=100, fraction=0.3):
    """A ticket as IMP writes it: a global magnitude mask, θ_k ⊙ m, batch statistics at k."""
    params, batch_stats = jax.device_get(vgg(classes, seed=0))
    batch_stats = jax.tree.map(lambda s: s + 0.5, batch_stats)  # "statistics at step k", unlike a fresh init's
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=1 - fraction)
    info = {"model": "cifar_vgg_11", "dataset": "cifar100", "classes": classes, "level": 3, "fraction_remaining": fraction,
            "head": head_info(params, "fc"), "prunable": {"exclude": []}}
    return Ticket(jax.device_get(mask), jax.device_get(masks.apply_mask(params, mask)), batch_stats, info)


def leaves(tree, head):
    return {"/".join(p): np.asarray(x) for p, x in named_leaves(tree)[0] if (p[0] == "fc") == head}


def test_transfer_to_other_classes_keeps_the_source_mask_and_weights_with_a_fresh_dense_head():
    ticket = source_ticket()
    fresh, _ = vgg(10, seed=1)
    start = transfer_ticket(ticket, fresh)
    for path, m in leaves(start.mask, head=False).items():
        np.testing.assert_array_equal(m, leaves(ticket.mask, head=False)[path], err_msg=path)
        np.testing.assert_array_equal(leaves(start.params, head=False)[path], leaves(ticket.params, head=False)[path], err_msg=path)
    for path, m in leaves(start.mask, head=True).items():
        assert m.all(), path  # fresh and dense
        np.testing.assert_array_equal(leaves(start.params, head=True)[path], leaves(fresh, head=True)[path])
    assert start.mask["fc"]["kernel"].shape == (32, 10)
    jax.tree.map(np.testing.assert_array_equal, start.batch_stats, ticket.batch_stats)
    assert start.info["head_state"] == "fresh" and start.info["classes"] == 10 and start.info["source_classes"] == 100
    assert start.info["head"] == {"path": "fc", "shape": [32, 10]}
    kept = np.concatenate([m.ravel() for m in leaves(start.mask, head=False).values()])
    assert 0.2 < kept[kept.size // 2 :].mean() < 0.9  # the source sparsity really is there


def test_transfer_with_matching_classes_keeps_the_head_unless_asked():
    ticket = source_ticket(classes=10)
    fresh, _ = vgg(10, seed=1)
    kept = transfer_ticket(ticket, fresh)
    np.testing.assert_array_equal(kept.mask["fc"]["kernel"], ticket.mask["fc"]["kernel"])
    np.testing.assert_array_equal(kept.params["fc"]["kernel"], ticket.params["fc"]["kernel"])
    assert kept.info["head_state"] == "kept"
    again = transfer_ticket(ticket, fresh, reinit_head=True)
    np.testing.assert_array_equal(again.params["fc"]["kernel"], np.asarray(fresh["fc"]["kernel"]))
    assert again.mask["fc"]["kernel"].all()


def test_a_fresh_head_can_be_pruned_to_the_tickets_sparsity():
    ticket = source_ticket(fraction=0.3)
    fresh, _ = vgg(10, seed=1)
    start = transfer_ticket(ticket, fresh, prune_head=True)
    head = start.mask["fc"]["kernel"]
    assert head.sum() == round(0.3 * head.size) and start.mask["fc"]["bias"].all()
    magnitudes = np.abs(np.asarray(fresh["fc"]["kernel"]))
    assert magnitudes[head].min() >= magnitudes[~head].max()  # by magnitude of the fresh weights
    assert (start.params["fc"]["kernel"][~head] == 0).all()
    assert start.info["head_state"] == "fresh, pruned"


def test_random_ticket_keeps_per_layer_counts_with_another_mask_and_a_fresh_init():
    ticket = source_ticket()
    fresh, _ = vgg(10, seed=1)
    start = transfer_ticket(ticket, fresh)
    params, batch_stats = jax.device_get(vgg(10, seed=7))
    rand = random_ticket(start, params, batch_stats, jax.random.PRNGKey(3))
    won, got = masks.sparsity_report(start.mask), masks.sparsity_report(rand.mask)
    assert [layer["remaining"] for layer in got["layers"]] == [layer["remaining"] for layer in won["layers"]]
    assert masks.mask_overlap(start.mask, rand.mask)["iou"] < 0.8  # another mask
    jax.tree.map(np.testing.assert_array_equal, rand.params, jax.device_get(masks.apply_mask(params, rand.mask)))  # fresh ⊙ random mask
    both = rand.mask["conv_3"]["kernel"] & start.mask["conv_3"]["kernel"]
    assert not np.allclose(rand.params["conv_3"]["kernel"][both], start.params["conv_3"]["kernel"][both])  # independent init
    jax.tree.map(np.testing.assert_array_equal, rand.batch_stats, batch_stats)
    assert rand.info["ticket"] == "random"
    spread = random_ticket(start, params, batch_stats, jax.random.PRNGKey(3), scope="global")
    assert masks.count_remaining(spread.mask) == masks.count_remaining(start.mask)
    assert [layer["remaining"] for layer in masks.sparsity_report(spread.mask)["layers"]] != [layer["remaining"] for layer in won["layers"]]


def test_a_ticket_of_another_architecture_is_refused_by_path_and_shapes():
    ticket = source_ticket()
    conv2, _ = init_variables(get_model("conv_2", 10, width_multiplier=1 / 16), jax.random.PRNGKey(0), X)
    with pytest.raises(UserError, match=r"^the ticket does not fit the target model: conv_1/bias is \(8,\) in the ticket and \(4,\) in the target$"):
        transfer_ticket(ticket, conv2)
    wider, _ = init_variables(get_model("cifar_vgg_11", 100, width_multiplier=1 / 8), jax.random.PRNGKey(0), X)
    with pytest.raises(UserError, match=r"bn_0/bias is \(4,\) in the ticket and \(8,\) in the target"):
        check_fits(ticket.params, wider)


def test_levels_of_a_run_and_a_level_that_does_not_exist(tmp_path):
    ticket = source_ticket()
    for level in (0, 2):
        save_ticket(tmp_path / f"level_{level:02d}" / "ticket", ticket)
    (tmp_path / "level_01").mkdir()  # an unfinished level has no ticket.json
    assert ticket_levels(tmp_path) == [0, 2]
    assert level_ticket_dir(tmp_path, 2) == tmp_path / "level_02" / "ticket"
    with pytest.raises(UserError, match=r"level 5 has no ticket in .*; levels with a ticket: 0, 2"):
        level_ticket_dir(tmp_path, 5)


def test_train_ticket_trains_from_step_zero_and_is_a_resumable_stage(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 16, 3)).astype(np.float32)
    y = (x[:, :8].mean(axis=(1, 2, 3)) > 0).astype(np.int32)
    data = ArrayDataset(x, y)
    ticket = source_ticket(classes=100)
    fresh, _ = vgg(2, seed=1)
    start = transfer_ticket(ticket, fresh)
    config = TrainConfig(epochs=2, batch_size=16, drop_remainder=True, log_every_epochs=0,
                         optimizer=OptimizerRecipe(name="sgd", learning_rate=0.05, momentum=0.9, weight_decay=1e-4))
    trainer = ticket_trainer(get_model("cifar_vgg_11", 2, width_multiplier=1 / 16), softmax_classification(), data, data, config)
    seen = []
    real_fit = tickets_lib.fit_replicas

    def spy(replicas, *args, **kwargs):
        seen.append(replicas[0].state)
        return real_fit(replicas, *args, **kwargs)

    tickets_lib.fit_replicas = spy
    try:
        record = train_ticket(start, trainer, seed=0, workdir=tmp_path / "stage", log_fn=lambda line: None)
        again = train_ticket(start, trainer, seed=0, workdir=tmp_path / "stage")
    finally:
        tickets_lib.fit_replicas = real_fit
    assert int(seen[0].step) == 0  # trains from step 0 of the target's schedule
    assert record["steps"] == 8 and record["level"] == 3 and 0 <= record["test_accuracy"] <= 1
    assert record["weights_remaining"] == masks.count_remaining(start.mask)
    assert (tmp_path / "stage" / "ticket" / "ticket.json").exists() and (tmp_path / "stage" / "history.jsonl").exists()
    assert again == record and len(seen) == 1  # done: not retrained
    pruned = transfer_ticket(ticket, fresh, prune_head=True)  # another start in the same stage: refused
    with pytest.raises(UserError, match=r"stage holds a run with ticket\.\w+=.*; this run asks ticket\."):
        train_ticket(pruned, trainer, seed=0, workdir=tmp_path / "stage")


def conv_and_head(kept_in_conv=30):
    """A conv layer (3x3x4x8 = 288 weights) with ``kept_in_conv`` kept, and a fresh dense 8x10 head."""
    rng = np.random.default_rng(0)
    params = {"conv": {"kernel": rng.standard_normal((3, 3, 4, 8)).astype(np.float32), "bias": np.zeros(8, np.float32)},
              "fc": {"kernel": rng.standard_normal((8, 10)).astype(np.float32), "bias": np.zeros(10, np.float32)}}
    conv = np.zeros(288, bool)
    conv[rng.permutation(288)[:kept_in_conv]] = True
    mask = {"conv": {"kernel": conv.reshape(3, 3, 4, 8), "bias": np.ones(8, bool)}, "fc": {"kernel": np.ones((8, 10), bool), "bias": np.ones(10, bool)}}
    info = {"model": "toy", "classes": 10, "level": 5, "head": head_info(params, "fc"), "prunable": {"exclude": []}, "head_state": "fresh"}
    return Ticket(mask, masks.apply_mask(params, mask), {}, info), params


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_random_tickets_keep_a_fresh_dense_head_dense(scope):
    """Global random tickets once shuffled over the default rule: the dense 80-weight
    head kept 25 of 80 weights and the conv layer 85 of 288 instead of 30."""
    start, params = conv_and_head()
    rand = random_ticket(start, params, {}, jax.random.PRNGKey(0), scope=scope)
    assert rand.mask["fc"]["kernel"].all() and int(np.sum(rand.mask["conv"]["kernel"])) == 30
    assert ticket_counts(rand) == ticket_counts(start) == {"weights_remaining": 110, "total_prunable": 368, "fraction_remaining": 110 / 368}
    assert not np.array_equal(rand.mask["conv"]["kernel"], start.mask["conv"]["kernel"])


def test_random_tickets_keep_excluded_layers_and_count_with_the_tickets_rule():
    start, params = conv_and_head()
    start.info.update(prunable={"exclude": ["^fc/"]}, head_state="kept")
    start.mask["fc"]["kernel"][:, :5] = True  # excluded layers are dense anyway
    for scope in ("layer", "global"):
        rand = random_ticket(start, params, {}, jax.random.PRNGKey(1), scope=scope)
        assert rand.mask["fc"]["kernel"].all() and int(np.sum(rand.mask["conv"]["kernel"])) == 30
        assert rand.info["weights_remaining"] == 30 and rand.info["total_prunable"] == 288


def test_layer_scope_draws_do_not_depend_on_the_excluded_layers():
    start, params = conv_and_head()
    default = random_ticket(start, params, {}, jax.random.PRNGKey(2))
    start.info["prunable"] = {"exclude": ["^fc/"]}
    excluded = random_ticket(start, params, {}, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(default.mask["conv"]["kernel"], excluded.mask["conv"]["kernel"])


def test_the_head_is_swapped_by_its_shape_and_missing_metadata_is_an_error():
    ticket = source_ticket(classes=10)
    fresh, _ = vgg(10, seed=1)
    listed = Ticket(ticket.mask, ticket.params, ticket.batch_stats, {**ticket.info, "classes": [5, 5]})  # a thesis-style class list
    assert transfer_ticket(listed, fresh).info["head_state"] == "kept"  # same head shape: kept, whatever classes says
    for key in ("head", "prunable"):
        bare = Ticket(ticket.mask, ticket.params, ticket.batch_stats, {k: v for k, v in ticket.info.items() if k != key})
        with pytest.raises(UserError, match=f"the ticket does not record '{key}'"):
            transfer_ticket(bare, fresh)
    bare = Ticket(ticket.mask, ticket.params, ticket.batch_stats, {k: v for k, v in ticket.info.items() if k != "prunable"})
    with pytest.raises(UserError, match="the ticket does not record 'prunable'"):
        random_ticket(bare, fresh, {}, jax.random.PRNGKey(0))


def test_a_transferred_ticket_counts_with_the_targets_rule():
    ticket = source_ticket(classes=100, fraction=0.3)
    fresh, _ = vgg(10, seed=1)
    default = transfer_ticket(ticket, fresh)
    excluded = transfer_ticket(ticket, fresh, exclude=["^fc/"])
    head = fresh["fc"]["kernel"].size
    assert excluded.info["prunable"] == {"exclude": ["^fc/"]} and default.info["prunable"] == {"exclude": []}
    assert default.info["total_prunable"] == excluded.info["total_prunable"] + head
    assert default.info["weights_remaining"] == excluded.info["weights_remaining"] + head  # the fresh dense head
    assert ticket_counts(excluded) == {k: excluded.info[k] for k in ("weights_remaining", "total_prunable", "fraction_remaining")}

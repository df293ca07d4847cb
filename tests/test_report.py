"""lth_jax.report and experiments/report.py on a hand-made transfer study (two targets, two workdirs)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import REPO, script_env
from helpers import assert_one_line_error
from matplotlib.figure import Figure

from lth_jax import overlap, plots, report, sparsity_axes
from lth_jax.errors import UserError
from lth_jax.results import write_jsonl
from lth_jax.rows import GROUP_KEYS
from lth_jax.tickets import Ticket, save_ticket

SEEDS = (0, 1)
LEVELS = (0, 1, 2, 3)
SOURCES = {"src_a": ("sgd", 10), "src_b": ("adam", 5)}  # dataset: (optimizer, classes); src_b's head differs
TARGETS = {"tgt_x": 10, "tgt_y": 10}  # trained with sgd
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_mask(rng, classes, level):
    """Each kernel keeps round(0.8**level × size) random weights; biases are all kept."""
    shapes = {"conv_0": (3, 3, 2, 4), "conv_1": (3, 3, 4, 4), "fc": (4, classes)}
    mask = {}
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        kept = np.zeros(size, bool)
        kept[rng.permutation(size)[: round(0.8**level * size)]] = True
        mask[name] = {"kernel": kept.reshape(shape), "bias": np.ones(shape[-1], bool)}
    return mask


def save_tickets(root, dataset, classes, dataset_index):
    masks = {}
    for seed in SEEDS:
        rng = np.random.default_rng([seed, dataset_index])
        for level in LEVELS:
            mask = tiny_mask(rng, classes, level)
            params = {layer: {k: v.astype(np.float32) for k, v in leaves.items()} for layer, leaves in mask.items()}
            info = {"dataset": dataset, "level": level, "fraction_remaining": 0.8**level, "model": "tiny", "seed": seed,
                    "init_stream": "target_own" if dataset in TARGETS else "source"}
            save_ticket(root / dataset / f"seed_{seed}" / f"level_{level:02d}", Ticket(mask, params, {}, info))
            masks[(dataset, seed, level)] = mask
    return masks


def accuracy(target, ticket, source, seed, level):
    base = {"winning": 0.9, "target_own": 0.95, "random": 0.7, "dense": 0.96}[ticket]
    return round(base - 0.03 * level - 0.04 * (source == "src_b") - 0.01 * (target == "tgt_y") + 0.013 * seed * (1 + level), 6)


def row(target, ticket, source, source_optimizer, seed, level, ticket_dir):
    fraction = 0.8**level
    return {
        "source": source, "source_optimizer": source_optimizer, "target": target, "target_optimizer": "sgd",
        "ticket": ticket, "level": level, "fraction_remaining": fraction, "weights_remaining": round(fraction * 264),
        "test_accuracy": accuracy(target, ticket, source, seed, level), "test_loss": 0.1 * level + 0.01 * seed,
        "seed": seed, "model": "tiny", "ticket_dir": ticket_dir,
    }


def target_rows(target):
    rows = [row(target, "dense", target, "sgd", seed, 0, None) for seed in SEEDS]
    for seed in SEEDS:
        for level in LEVELS:
            where = f"seed_{seed}/level_{level:02d}"
            rows.append(row(target, "target_own", target, "sgd", seed, level, f"../tickets/{target}/{where}"))
            for source, (optimizer, _) in SOURCES.items():
                rows.append(row(target, "winning", source, optimizer, seed, level, f"../tickets/{source}/{where}"))
                rows.append(row(target, "random", source, optimizer, seed, level, f"random/{source}/{where}"))  # never loaded
    return rows


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """``tickets/<dataset>/seed_S/level_LL`` and one workdir per target that names them relatively."""
    root = tmp_path_factory.mktemp("study")
    masks = {}
    datasets = [*((source, classes) for source, (_, classes) in SOURCES.items()), *TARGETS.items()]
    for index, (dataset, classes) in enumerate(datasets):
        masks.update(save_tickets(root / "tickets", dataset, classes, index))
    workdirs = []
    for target in TARGETS:
        write_jsonl(root / f"transfer_{target}" / "metrics.jsonl", target_rows(target))
        workdirs.append(root / f"transfer_{target}")
    return {"root": root, "workdirs": workdirs, "masks": masks, "rows": report.load_rows(workdirs)}


def iou(a, b):
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


# --------------------------------------------------------------------------- rows


def test_load_rows_adds_the_workdir_and_names_a_missing_metrics_file(study, tmp_path):
    rows = study["rows"]
    assert len(rows) == 2 * (2 + 2 * 4 * 5)
    assert {r["workdir"] for r in rows} == {str(w) for w in study["workdirs"]}
    with pytest.raises(UserError, match=f"workdir {tmp_path} has no metrics.jsonl"):
        report.load_rows([study["workdirs"][0], tmp_path])
    (tmp_path / "metrics.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no rows in the metrics.jsonl of"):
        report.load_rows(tmp_path)


def test_an_experiment_in_two_workdirs_counts_once(study, tmp_path):
    first = study["workdirs"][0]
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "metrics.jsonl").write_text((first / "metrics.jsonl").read_text())  # e.g. the same dense baseline, trained by two studies
    rows = report.load_rows([first, twin])
    assert len(rows) == len(report.load_rows([first])) and {r["workdir"] for r in rows} == {str(first)}
    assert report.aggregate(rows) == report.aggregate(report.load_rows([first]))


T95 = {1: 12.706204736174707, 2: 4.302652729749464}  # Student-t 0.975 quantiles by degrees of freedom (tables)


def hand_rows(ticket, accuracies, level=2, source="src", source_optimizer="sgd", target="tgt"):
    """Rows of one ticket and level, ``{seed: accuracy}``."""
    return [{**row(target, ticket, source, source_optimizer, seed, level, None), "test_accuracy": accuracy} for seed, accuracy in accuracies.items()]


def test_aggregate_is_mean_sample_std_and_t_interval_over_seeds(study):
    (got,) = report.aggregate(hand_rows("winning", {2: 0.86, 0: 0.80, 1: 0.83}))
    # mean 0.83; sample std sqrt((0.03² + 0 + 0.03²) / 2) = 0.03; half width t(0.975, 2) × 0.03 / √3
    half = T95[2] * 0.03 / np.sqrt(3)
    assert got["test_accuracy_mean"] == pytest.approx(0.83) and got["test_accuracy_std"] == pytest.approx(0.03)
    assert (got["test_accuracy_low"], got["test_accuracy_high"]) == pytest.approx((0.83 - half, 0.83 + half))
    assert half == pytest.approx(0.0745242, abs=1e-7)  # the hand-computed number itself
    assert got["n"] == 3 and got["seeds"] == [0, 1, 2]

    rows = study["rows"]
    summary = report.aggregate(rows)
    assert len(summary) == 2 * (1 + 4 * 5)
    group = {"source": "src_b", "source_optimizer": "adam", "target": "tgt_y", "target_optimizer": "sgd", "ticket": "winning", "level": 2}
    (got,) = [s for s in summary if all(s[k] == v for k, v in group.items())]
    members = sorted((r for r in rows if all(r[k] == v for k, v in group.items())), key=lambda r: r["seed"])
    assert [r["test_accuracy"] for r in members] == [0.79, 0.829]  # 0.9 - 0.06 - 0.04 - 0.01 (+ 0.039 for seed 1)
    # two seeds: std |a - b| / √2 = 0.039 / √2; half width t(0.975, 1) × std / √2 = 12.706 × 0.0195
    assert got == {
        **group,
        "fraction_remaining": pytest.approx(0.64),
        "test_accuracy_mean": pytest.approx(0.8095),
        "test_accuracy_std": pytest.approx(0.039 / np.sqrt(2)),
        "test_accuracy_low": pytest.approx(0.8095 - T95[1] * 0.0195),
        "test_accuracy_high": pytest.approx(0.8095 + T95[1] * 0.0195),
        "test_loss_mean": pytest.approx(0.205),
        "seeds": [0, 1],
        "n": 2,
    }
    keys = [tuple(s[k] for k in GROUP_KEYS) for s in summary]
    assert keys == sorted(keys)
    assert report.aggregate(rows[::-1]) == summary  # deterministic whatever the row order
    (one_seed,) = report.aggregate([r for r in members if r["seed"] == 1])
    assert np.isnan(one_seed["test_accuracy_std"]) and one_seed["seeds"] == [1] and one_seed["n"] == 1  # no spread from one seed
    assert (one_seed["test_accuracy_low"], one_seed["test_accuracy_high"]) == (-np.inf, np.inf)


def test_aggregate_rejects_bad_rows(study):
    rows = study["rows"]
    with pytest.raises(ValueError, match="no rows"):
        report.aggregate([])
    with pytest.raises(ValueError, match="seed 0 appears more than once for source='tgt_x'"):
        report.aggregate(rows + [rows[0]])
    with pytest.raises(ValueError, match="row 3 lacks test_accuracy"):
        report.aggregate(rows[:3] + [{k: v for k, v in rows[3].items() if k != "test_accuracy"}])
    with pytest.raises(ValueError, match="unknown ticket kind 'lucky'; known kinds: winning, random"):
        report.aggregate([{**rows[0], "ticket": "lucky"}])


# --------------------------------------------------------------------------- transfer table


def cell(rows, target, ticket, source, level):
    """The hand-computed cell of two seeds: "mean [low, high]" in percent."""
    a, b = [100 * r["test_accuracy"] for r in rows if (r["target"], r["ticket"], r["source"], r["level"]) == (target, ticket, source, level)]
    mean, half = (a + b) / 2, T95[1] * abs(a - b) / 2
    return f"{mean:.1f} [{mean - half:.1f}, {mean + half:.1f}]"


def test_transfer_table_reads_the_exact_level_or_a_dash(study):
    rows = [r for r in study["rows"] if not (r["ticket"] == "random" and r["source"] == "src_a" and r["level"] == 3 and r["target"] == "tgt_y")]
    rows = [r for r in rows if not (r["ticket"] == "target_own" and r["level"] == 1 and r["seed"] == 0 and r["target"] == "tgt_x")]
    lines = report.transfer_table(rows, [3, 1]).splitlines()
    assert lines[2] == "| ticket | tgt_x L1 20% | tgt_x L3 49% | tgt_y L1 20% | tgt_y L3 49% |"  # levels sorted; % pruned of 0.8 and 0.512
    assert "**sgd**" in lines[0] and "95% Student-t interval" in lines[0]
    labels = [line.split(" | ")[0][2:] for line in lines[4:]]
    assert labels == ["src_a (sgd)", "src_b (adam)", "target's own", "random (src_a (sgd))", "random (src_b (adam))"]
    by_label = dict(zip(labels, lines[4:]))
    assert by_label["src_b (adam)"] == (
        f"| src_b (adam) | {cell(rows, 'tgt_x', 'winning', 'src_b', 1)} | {cell(rows, 'tgt_x', 'winning', 'src_b', 3)} "
        f"| {cell(rows, 'tgt_y', 'winning', 'src_b', 1)} | {cell(rows, 'tgt_y', 'winning', 'src_b', 3)} |"
    )
    # src_b, tgt_x, level 3: 0.9 - 0.09 - 0.04 = 0.77 and 0.77 + 0.052: mean 79.6, half width 12.706 × 2.6
    assert cell(rows, "tgt_x", "winning", "src_b", 3) == "79.6 [46.6, 112.6]"
    assert by_label["random (src_a (sgd))"].split(" | ")[4] == "– |"  # no row at that level: a dash, not a neighbour
    own = [r["test_accuracy"] for r in rows if (r["target"], r["ticket"], r["level"]) == ("tgt_x", "target_own", 1)]
    assert by_label["target's own"].split(" | ")[1] == f"{100 * own[0]:.1f} [–, –]"  # one seed: a mean, no interval


def test_tables_asked_by_sparsity_read_the_nearest_level_of_the_grid(study):
    rows = study["rows"]
    # remaining 0.5 → level 3 (0.512); 0.7 → level 2 (0.64); 0.1 → the deepest level, 3; 0.718 → level 1 in log scale
    assert report.nearest_levels(rows, [0.5, 0.3, 0.9]) == [2, 3]
    assert report.nearest_levels(rows, [0.282, 0.0]) == [0, 1]
    assert report.transfer_table(rows, sparsities=[0.5, 0.3, 0.9]) == report.transfer_table(rows, [2, 3])
    assert report.transfer_table(rows) == report.transfer_table(rows, [3])  # DEFAULT_SPARSITIES: all beyond level 3
    cells = report.transfer_table_rows(rows, [2])
    assert len(cells) == 5 * 2  # tickets × targets
    (got,) = [c for c in cells if (c["ticket"], c["target"]) == ("src_b (adam)", "tgt_y")]
    (summary,) = [s for s in report.aggregate(rows) if (s["ticket"], s["source"], s["target"], s["level"]) == ("winning", "src_b", "tgt_y", 2)]
    assert got == {"target_optimizer": "sgd", "ticket": "src_b (adam)", "target": "tgt_y", "level": 2,
                   **{k: summary[k] for k in ("fraction_remaining", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_low",
                                              "test_accuracy_high", "n")}}
    with pytest.raises(ValueError, match="sparsity 1.0 is not a fraction pruned"):
        report.transfer_table(rows, sparsities=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"level 0.5 is not an IMP level \(an integer >= 0\); to ask by fraction pruned, pass sparsities="):
        report.transfer_table(rows, [0.5])
    with pytest.raises(ValueError, match="no rows at level 7; levels: 0, 1, 2, 3"):
        report.transfer_table_rows(rows, [1, 7])
    with pytest.raises(ValueError, match="ask for levels or for sparsities, not both"):
        report.transfer_table(rows, [1], sparsities=[0.5])


def test_transfer_table_has_one_table_per_target_optimizer(study):
    adam_rows = [{**r, "target_optimizer": "adam"} for r in study["rows"] if r["target"] == "tgt_x"]
    tables = report.transfer_table(study["rows"] + adam_rows, [3]).split("Trained on the target with ")[1:]
    assert len(tables) == 2
    assert "**adam**" in tables[0] and "tgt_y" not in tables[0]
    assert "**sgd**" in tables[1] and "tgt_y" in tables[1]


# --------------------------------------------------------------------------- paired differences


def test_paired_differences_of_three_seeds_match_the_hand_computed_interval():
    rows = (hand_rows("winning", {0: 0.80, 1: 0.84, 2: 0.83, 4: 0.10})  # seed 4: transferred only
            + hand_rows("target_own", {0: 0.78, 1: 0.80, 2: 0.83}, source="tgt")
            + hand_rows("random", {0: 0.70, 1: 0.75, 2: 0.71, 3: 0.99})  # seed 3: random only
            + hand_rows("dense", {0: 0.9}, level=0, source="tgt"))
    (got,) = report.paired_rows(rows)
    assert {k: got[k] for k in ("target", "target_optimizer", "source", "source_optimizer", "level", "vs_own_n", "vs_random_n")} == {
        "target": "tgt", "target_optimizer": "sgd", "source": "src", "source_optimizer": "sgd", "level": 2, "vs_own_n": 3, "vs_random_n": 3}
    # − own, points: 2, 4, 0 → mean 2, sample std 2; − random: 10, 9, 12 → mean 31/3, sample std √(7/3)
    own_half, random_half = T95[2] * 2 / np.sqrt(3), T95[2] * np.sqrt(7 / 3) / np.sqrt(3)
    assert (got["vs_own_mean"], got["vs_own_low"], got["vs_own_high"]) == pytest.approx((2, 2 - own_half, 2 + own_half))
    assert (got["vs_random_mean"], got["vs_random_low"], got["vs_random_high"]) == pytest.approx(
        (31 / 3, 31 / 3 - random_half, 31 / 3 + random_half))
    assert own_half == pytest.approx(4.968275, abs=1e-6) and random_half == pytest.approx(3.794583, abs=1e-6)
    table = report.paired_table([got])
    assert "| tgt (sgd) | src (sgd) | 2 | 36% | +2.0 [-3.0, +7.0] | 3 | +10.3 [+6.5, +14.1] | 3 |" in table.splitlines()
    assert "95% Student-t interval" in table


def test_paired_rows_leave_out_unpaired_seeds_and_missing_baselines(study):
    rows = hand_rows("winning", {0: 0.80, 1: 0.84}) + hand_rows("random", {1: 0.74, 2: 0.5}) + hand_rows("winning", {0: 0.6}, level=3)
    by_level = {r["level"]: r for r in report.paired_rows(rows)}
    assert by_level[2]["vs_random_n"] == 1 and by_level[2]["vs_random_mean"] == pytest.approx(10.0)  # seed 1 only
    assert (by_level[2]["vs_random_low"], by_level[2]["vs_random_high"]) == (-np.inf, np.inf)
    assert [by_level[level][f"vs_own_{k}"] for level in (2, 3) for k in ("mean", "low", "high", "n")] == [None, None, None, 0] * 2
    assert "| tgt (sgd) | src (sgd) | 2 | 36% | – | 0 | +10.0 [–, –] | 1 |" in report.paired_table(list(by_level.values()), [2])
    assert report.paired_table(list(by_level.values()), [0]) == "No transferred winning ticket at these levels: nothing to pair."
    paired = report.paired_rows(study["rows"])
    assert len(paired) == 2 * 2 * 4 and all(r["vs_own_n"] == r["vs_random_n"] == 2 for r in paired)  # targets × sources × levels
    got = next(r for r in paired if (r["target"], r["source"], r["level"]) == ("tgt_y", "src_b", 2))
    # winning − own: 0.9 - 0.95 - 0.04 = -9 points at both seeds (the seed terms cancel): no spread
    assert (got["vs_own_mean"], got["vs_own_low"], got["vs_own_high"]) == pytest.approx((-9, -9, -9))
    assert got["vs_random_mean"] == pytest.approx(20)


# --------------------------------------------------------------------------- overlaps


def test_overlaps_match_numpy_skip_the_differing_head_and_count_each_ticket_once(study, monkeypatch):
    loaded = []
    load_ticket = overlap.load_ticket
    monkeypatch.setattr(overlap, "load_ticket", lambda directory: loaded.append(directory) or load_ticket(directory))
    overlaps = overlap.ticket_overlaps(study["rows"])
    assert len(loaded) == len(set(loaded)) == 4 * len(SEEDS) * len(LEVELS)  # sources used by both targets: loaded once
    names = ["src_a (sgd)", "src_b (adam)", "tgt_x (sgd, own)", "tgt_y (sgd, own)"]
    pairs = [(o["a"], o["b"], o["level"], o["seed"]) for o in overlaps]
    assert len(pairs) == len(set(pairs)) == 6 * len(SEEDS) * len(LEVELS)
    assert {(a, b) for a, b, _, _ in pairs} == {(a, b) for i, a in enumerate(names) for b in names[i + 1 :]}

    masks = study["masks"]
    by_key = {(o["a"], o["b"], o["level"], o["seed"]): o for o in overlaps}
    a, b = masks[("src_a", 1, 2)], masks[("src_b", 1, 2)]
    mixed = by_key[("src_a (sgd)", "src_b (adam)", 2, 1)]
    assert mixed["skipped"] == ["fc/kernel"]
    assert [layer["path"] for layer in mixed["layers"]] == ["conv_0/kernel", "conv_1/kernel"]
    for layer in mixed["layers"]:
        name = layer["path"].split("/")[0]
        assert layer["iou"] == pytest.approx(iou(a[name]["kernel"], b[name]["kernel"]))
    convs = lambda m: np.concatenate([m["conv_0"]["kernel"].ravel(), m["conv_1"]["kernel"].ravel()])  # noqa: E731
    assert mixed["iou"] == pytest.approx(iou(convs(a), convs(b)))
    assert mixed["fraction_remaining"] == pytest.approx((convs(a).mean() + convs(b).mean()) / 2)

    own = masks[("tgt_x", 1, 2)]
    same_head = by_key[("src_a (sgd)", "tgt_x (sgd, own)", 2, 1)]
    assert same_head["skipped"] == []
    whole = lambda m: np.concatenate([convs(m), m["fc"]["kernel"].ravel()])  # noqa: E731
    assert same_head["iou"] == pytest.approx(iou(whole(a), whole(own)))
    assert 0 < same_head["iou"] < 1
    assert all(o["iou"] == 1.0 for o in overlaps if o["level"] == 0)  # level 0 keeps everything


def test_a_ticket_named_as_source_and_as_own_ticket_is_one_ticket(study):
    # src_a is also a target here: its own-ticket rows name the same directories as its source rows
    own_rows = [{**r, "ticket": "target_own", "target": "src_a", "source": "src_a"} for r in study["rows"] if r["ticket"] == "winning" and r["source"] == "src_a"]
    overlaps = overlap.ticket_overlaps(study["rows"] + own_rows)
    assert {o["a"] for o in overlaps} | {o["b"] for o in overlaps} == {"src_a (sgd)", "src_b (adam)", "tgt_x (sgd, own)", "tgt_y (sgd, own)"}


def test_overlaps_of_rows_without_a_workdir_key(study):
    bare = [{k: v for k, v in r.items() if k != "workdir"} for r in study["rows"]]
    with pytest.raises(ValueError, match="rows lack a 'workdir' key"):
        overlap.ticket_overlaps(bare)
    overlaps = overlap.ticket_overlaps(bare, lambda r: study["root"] / f"transfer_{r['target']}")
    assert overlaps == overlap.ticket_overlaps(study["rows"])


def test_overlap_table_and_chance(study):
    overlaps = overlap.ticket_overlaps(study["rows"])
    table = overlap.overlap_table(overlaps)
    assert overlap.chance_iou(1.0) == 1.0 and overlap.chance_iou(0.5) == pytest.approx(1 / 3)
    line = next(line for line in table.splitlines() if line.startswith("| src_a (sgd) vs src_b (adam) (shared init) | 3 |"))
    members = [o for o in overlaps if (o["a"], o["b"], o["level"]) == ("src_a (sgd)", "src_b (adam)", 3)]
    fraction = np.mean([o["fraction_remaining"] for o in members])
    ious = [o["iou"] for o in members]
    # two sources of a seed share its initialization: no chance line; a source against a target's own: chance
    assert line == (f"| src_a (sgd) vs src_b (adam) (shared init) | 3 | {100 * fraction:.2f} | {np.mean(ious):.3f} ± {np.std(ious):.3f} "
                    f"| – | 0, 1 |")
    assert "- src_a (sgd) vs src_b (adam) (shared init): fc/kernel" in table
    assert "tgt_x (sgd, own) vs tgt_y (sgd, own) (shared init): " not in table  # same heads: nothing skipped
    own = next(line for line in table.splitlines() if line.startswith("| src_a (sgd) vs tgt_x (sgd, own) | 3 |"))
    members = [o for o in overlaps if (o["a"], o["b"], o["level"]) == ("src_a (sgd)", "tgt_x (sgd, own)", 3)]
    fraction = np.mean([o["fraction_remaining"] for o in members])
    assert own.split(" | ")[4] == f"{fraction / (2 - fraction):.3f}"
    assert {(o["a"], o["b"], o["init"]) for o in overlaps if o["level"] == 3} == {
        ("src_a (sgd)", "src_b (adam)", "shared"), ("tgt_x (sgd, own)", "tgt_y (sgd, own)", "shared"),
        *((s, t, "independent") for s in ("src_a (sgd)", "src_b (adam)") for t in ("tgt_x (sgd, own)", "tgt_y (sgd, own)"))}
    csv_rows = {(r["a"], r["b"], r["level"]): r for r in overlap.overlap_rows(overlaps)}
    assert csv_rows[("src_a (sgd)", "src_b (adam)", 3)]["chance_iou"] is None
    assert csv_rows[("src_a (sgd)", "tgt_x (sgd, own)", 3)]["chance_iou"] == pytest.approx(fraction / (2 - fraction))


def test_init_relation_reads_seed_and_stream():
    assert overlap.init_relation({"seed": 0, "init_stream": "source"}, {"seed": 0}) == "shared"  # unrecorded: source
    assert overlap.init_relation({"seed": 0, "init_stream": "source"}, {"seed": 0, "init_stream": "target_own"}) == "independent"
    assert overlap.init_relation({"seed": 0, "init_stream": "target_own"}, {"seed": 1, "init_stream": "target_own"}) == "independent"


# --------------------------------------------------------------------------- figures and report


def test_figures_are_figures_that_save_as_pngs(study, tmp_path):
    rows = study["rows"]
    for name, fig in (("x", report.plot_target(rows, "tgt_x")), ("y", report.plot_target(rows, "tgt_y", target_optimizer="sgd")),
                      ("overlap", overlap.plot_overlaps(overlap.ticket_overlaps(rows)))):
        assert isinstance(fig, Figure)
        assert_png(plots.save(fig, tmp_path / f"{name}.png"))
    with pytest.raises(ValueError, match="no rows for target 'tgt_z'; targets: tgt_x, tgt_y"):
        report.plot_target(rows, "tgt_z")
    assert report.plot_target([r for r in rows if r["seed"] == 0], "tgt_x").axes[0].get_title().endswith("(1 seed: no interval)")
    with pytest.raises(ValueError, match="optimizer 'adam'; its optimizers: sgd"):
        report.plot_target(rows, "tgt_x", target_optimizer="adam")
    with pytest.raises(ValueError, match="no mask overlaps"):
        overlap.plot_overlaps([])


def test_figure_bands_are_the_t_intervals_of_the_means(study):
    ax = report.plot_target(study["rows"], "tgt_x").axes[0]
    assert ax.get_title() == "Tickets trained on tgt_x with sgd (mean and 95% t interval over 2 seeds)"
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    first = [s for s in report.aggregate(study["rows"]) if (s["target"], s["ticket"], s["source"]) == ("tgt_x", "winning", "src_a")]
    band = ax.collections[0].get_paths()[0].vertices  # the first curve's band: src_a's winning ticket
    # drawn within what an accuracy can be: two seeds' t intervals run past 100%
    assert band[:, 1].max() == pytest.approx(min(100.0, 100 * max(s["test_accuracy_high"] for s in first)))
    assert band[:, 1].min() == pytest.approx(max(0.0, 100 * min(s["test_accuracy_low"] for s in first)))
    assert 100 * (first[3]["test_accuracy_high"] - first[3]["test_accuracy_mean"]) == pytest.approx(T95[1] * 100 * 0.052 / 2)


def test_percent_pruned_labels_and_ticks():
    assert [plots.percent_pruned(f) for f in (1.0, 0.8, 0.1, 0.01, 0.001, 0.0005)] == ["0%", "20%", "90%", "99%", "99.9%", "99.95%"]
    ticks, end = sparsity_axes._pruned_ticks(0.8**30)  # the paper's 30 levels end on the 99.9% tick
    assert [plots.percent_pruned(t) for t in ticks] == ["0%", "50%", "90%", "95%", "99%", "99.5%", "99.9%"] and end == 0.001
    ticks, end = sparsity_axes._pruned_ticks(0.8**3)
    assert [plots.percent_pruned(t) for t in ticks] == ["0%", "20%", "50%"] and 0.47 < end < 0.5
    ax = plots.figure((4, 3)).subplots()
    plots.sparsity_axis(ax, [1.0, 0.8**30])
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()  # sparsity grows to the right
    assert [label.get_text() for label in ax.get_xticklabels()][-1] == "99.9%"
    assert [plots.pruned_label(0.8**k) for k in (0, 1, 3, 7, 30)] == ["0%", "20%", "49%", "79%", "99.88%"]


def test_write_report_embeds_every_figure_and_is_deterministic(study, tmp_path):
    path = report.write_report(study["workdirs"], tmp_path / "one")
    again = report.write_report(study["workdirs"], tmp_path / "two")
    text = path.read_text()
    for target in TARGETS:
        assert f"**{target}**, trained with sgd" in text
        assert f"![accuracy on {target} with sgd](accuracy_{target}_sgd.png)" in text
        assert_png(path.parent / f"accuracy_{target}_sgd.png")
    assert "![mask overlap](overlap.png)" in text
    assert_png(path.parent / "overlap.png")
    assert all(f"`{w}`" in text for w in study["workdirs"])
    assert "| ticket | tgt_x L3 49% | tgt_y L3 49% |" in text  # the default sparsities are all nearest level 3
    assert "## Paired differences over seeds" in text and "95% Student-t interval" in text
    assert "| tgt_y (sgd) | src_b (adam) | 3 | 49% | -9.0 [-9.0, -9.0] | 2 |" in text
    assert "| src_a (sgd) vs src_b (adam) (shared init) | 3 |" in text and "no chance line" in text
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["accuracy_tgt_x_sgd.png", "accuracy_tgt_y_sgd.png", "overlap.csv", "overlap.png", "paired.csv", "report.md",
                     "transfer_table.csv"]
    table = list(csv.DictReader(open(path.parent / "transfer_table.csv")))  # every Markdown table is also CSV
    cell = next(r for r in table if r["ticket"] == "src_a (sgd)" and r["target"] == "tgt_x")
    assert cell["level"] == "3" and cell["n"] == "2"
    mean, low, high = (100 * float(cell[f"test_accuracy_{k}"]) for k in ("mean", "low", "high"))
    assert f"| src_a (sgd) | {mean:.1f} [{low:.1f}, {high:.1f}] |" in text
    paired = list(csv.DictReader(open(path.parent / "paired.csv")))
    assert len(paired) == 16 and {r["level"] for r in paired} == {"0", "1", "2", "3"}  # every level, not only the table's
    pairs = [(r["a"], r["b"], r["level"]) for r in csv.DictReader(open(path.parent / "overlap.csv"))]
    assert pairs == [(r["a"], r["b"], str(r["level"])) for r in overlap.overlap_rows(overlap.ticket_overlaps(study["rows"]))] and pairs
    assert all((path.parent / f).read_bytes() == (again.parent / f).read_bytes() for f in files)


def test_write_report_fails_before_writing_when_a_ticket_is_missing(study, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "workdir"} for r in study["rows"] if r["target"] == "tgt_x"]
    last_winning = max(i for i, r in enumerate(rows) if r["ticket"] == "winning")
    rows[last_winning] = {**rows[last_winning], "ticket_dir": "../tickets/nowhere"}
    write_jsonl(study["root"] / "broken" / "metrics.jsonl", rows)
    with pytest.raises(UserError, match="nowhere is not a ticket directory"):
        report.write_report([study["root"] / "broken"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- script


def run_script(*args):
    return subprocess.run([sys.executable, "-m", "experiments.report", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=script_env(PATH=os.environ.get("PATH", "/usr/bin:/bin")))


def test_script_writes_the_report_into_the_first_workdir(study):
    proc = run_script("--workdirs=" + ",".join(str(w) for w in study["workdirs"]), "--levels=3,1")
    assert proc.returncode == 0, proc.stderr
    written = Path(study["workdirs"][0]) / "report" / "report.md"
    assert proc.stdout.strip() == f"wrote {written}"
    assert "| tgt_y L1 20% | tgt_y L3 49% |" in written.read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "error: workdir {empty} has no metrics.jsonl"),
        (["--sparsities=0.5,x"], "error: --sparsities=0.5,x is not a comma-separated list of numbers"),
        (["--sparsities=1.5"], "error: sparsity 1.5 is not a fraction pruned in [0, 1)"),
        (["--levels=1,x"], "error: --levels=1,x is not a comma-separated list of integers"),
        (["--levels=9"], "error: no rows at level 9; levels: 0, 1, 2, 3"),
    ],
)
def test_bad_input_is_one_line(study, tmp_path, args, message):
    workdirs = [tmp_path] if not args else study["workdirs"]
    proc = run_script("--workdirs=" + ",".join(str(w) for w in workdirs), f"--out={tmp_path / 'out'}", *args)
    assert_one_line_error(proc, message.format(empty=tmp_path))
    assert not (tmp_path / "out").exists()

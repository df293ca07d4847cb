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

from lth_jax import overlap, plots, report
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
            info = {"dataset": dataset, "level": level, "fraction_remaining": 0.8**level, "model": "tiny", "seed": seed}
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


def test_aggregate_is_mean_and_population_std_over_seeds(study):
    rows = study["rows"]
    summary = report.aggregate(rows)
    assert len(summary) == 2 * (1 + 4 * 5)
    group = {"source": "src_b", "source_optimizer": "adam", "target": "tgt_y", "target_optimizer": "sgd", "ticket": "winning", "level": 2}
    (got,) = [s for s in summary if all(s[k] == v for k, v in group.items())]
    members = sorted((r for r in rows if all(r[k] == v for k, v in group.items())), key=lambda r: r["seed"])
    accuracies = np.array([r["test_accuracy"] for r in members])
    assert got == {
        **group,
        "fraction_remaining": float(np.mean([r["fraction_remaining"] for r in members])),
        "test_accuracy_mean": float(np.mean(accuracies)),
        "test_accuracy_std": float(np.std(accuracies)),
        "test_loss_mean": float(np.mean([r["test_loss"] for r in members])),
        "seeds": [0, 1],
        "n": 2,
    }
    assert got["test_accuracy_std"] > 0
    keys = [tuple(s[k] for k in GROUP_KEYS) for s in summary]
    assert keys == sorted(keys)
    assert report.aggregate(rows[::-1]) == summary  # deterministic whatever the row order
    (one_seed,) = report.aggregate([r for r in members if r["seed"] == 1])
    assert one_seed["test_accuracy_std"] == 0.0 and one_seed["seeds"] == [1]


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
    accuracies = [r["test_accuracy"] for r in rows if (r["target"], r["ticket"], r["source"], r["level"]) == (target, ticket, source, level)]
    assert len(accuracies) == 2
    return f"{100 * np.mean(accuracies):.1f} ± {100 * np.std(accuracies):.1f}"


def test_transfer_table_takes_the_nearest_level_or_a_dash(study):
    rows = study["rows"]
    # remaining 0.5 → level 3 (0.512); 0.7 → level 2 (0.64, nearer than 0.8); 0.1 → nothing within 25%
    table = report.transfer_table(rows, [0.5, 0.3, 0.9])
    lines = table.splitlines()
    assert lines[2] == "| ticket | tgt_x 50% | tgt_x 30% | tgt_x 90% | tgt_y 50% | tgt_y 30% | tgt_y 90% |"
    labels = [line.split(" | ")[0][2:] for line in lines[4:]]
    assert labels == ["src_a (sgd)", "src_b (adam)", "target's own", "random (src_a (sgd))", "random (src_b (adam))"]
    by_label = dict(zip(labels, lines[4:]))
    assert by_label["src_b (adam)"] == (
        f"| src_b (adam) | {cell(rows, 'tgt_x', 'winning', 'src_b', 3)} | {cell(rows, 'tgt_x', 'winning', 'src_b', 2)} | – "
        f"| {cell(rows, 'tgt_y', 'winning', 'src_b', 3)} | {cell(rows, 'tgt_y', 'winning', 'src_b', 2)} | – |"
    )
    assert by_label["target's own"].split(" | ")[4] == cell(rows, "tgt_y", "target_own", "tgt_y", 3)
    assert "**sgd**" in lines[0]
    with pytest.raises(ValueError, match="sparsity 1.0 is not a fraction pruned"):
        report.transfer_table(rows, [0.5, 1.0])


def test_transfer_table_has_one_table_per_target_optimizer(study):
    adam_rows = [{**r, "target_optimizer": "adam"} for r in study["rows"] if r["target"] == "tgt_x"]
    tables = report.transfer_table(study["rows"] + adam_rows, [0.5]).split("Trained on the target with ")[1:]
    assert len(tables) == 2
    assert "**adam**" in tables[0] and "tgt_y" not in tables[0]
    assert "**sgd**" in tables[1] and "tgt_y" in tables[1]


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
    line = next(line for line in table.splitlines() if line.startswith("| src_a (sgd) vs src_b (adam) | 3 |"))
    members = [o for o in overlaps if (o["a"], o["b"], o["level"]) == ("src_a (sgd)", "src_b (adam)", 3)]
    fraction = np.mean([o["fraction_remaining"] for o in members])
    ious = [o["iou"] for o in members]
    assert line == (f"| src_a (sgd) vs src_b (adam) | 3 | {100 * fraction:.2f} | {np.mean(ious):.3f} ± {np.std(ious):.3f} "
                    f"| {fraction / (2 - fraction):.3f} | 0, 1 |")
    assert "- src_a (sgd) vs src_b (adam): fc/kernel" in table
    assert "tgt_x (sgd, own) vs tgt_y (sgd, own): " not in table


# --------------------------------------------------------------------------- figures and report


def test_figures_are_figures_that_save_as_pngs(study, tmp_path):
    rows = study["rows"]
    for name, fig in (("x", report.plot_target(rows, "tgt_x")), ("y", report.plot_target(rows, "tgt_y", target_optimizer="sgd")),
                      ("overlap", overlap.plot_overlaps(overlap.ticket_overlaps(rows)))):
        assert isinstance(fig, Figure)
        assert_png(plots.save(fig, tmp_path / f"{name}.png"))
    with pytest.raises(ValueError, match="no rows for target 'tgt_z'; targets: tgt_x, tgt_y"):
        report.plot_target(rows, "tgt_z")
    with pytest.raises(ValueError, match="optimizer 'adam'; its optimizers: sgd"):
        report.plot_target(rows, "tgt_x", target_optimizer="adam")
    with pytest.raises(ValueError, match="no mask overlaps"):
        overlap.plot_overlaps([])


def test_percent_pruned_labels_and_ticks():
    assert [plots.percent_pruned(f) for f in (1.0, 0.8, 0.1, 0.01, 0.001, 0.0005)] == ["0%", "20%", "90%", "99%", "99.9%", "99.95%"]
    ticks, end = plots._pruned_ticks(0.8**30)  # the paper's 30 levels end on the 99.9% tick
    assert [plots.percent_pruned(t) for t in ticks] == ["0%", "50%", "90%", "95%", "99%", "99.5%", "99.9%"] and end == 0.001
    ticks, end = plots._pruned_ticks(0.8**3)
    assert [plots.percent_pruned(t) for t in ticks] == ["0%", "20%", "50%"] and 0.47 < end < 0.5
    ax = plots.figure((4, 3)).subplots()
    plots.sparsity_axis(ax, [1.0, 0.8**30])
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()  # sparsity grows to the right
    assert [label.get_text() for label in ax.get_xticklabels()][-1] == "99.9%"


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
    assert "| ticket | tgt_x 50% | tgt_x 80% | tgt_x 90% | tgt_x 95% | tgt_x 99% |" in text
    assert "| src_a (sgd) vs src_b (adam) | 3 |" in text
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["accuracy_tgt_x_sgd.png", "accuracy_tgt_y_sgd.png", "overlap.csv", "overlap.png", "report.md", "transfer_table.csv"]
    table = list(csv.DictReader(open(path.parent / "transfer_table.csv")))  # every Markdown table is also CSV
    cell = next(r for r in table if r["ticket"] == "src_a (sgd)" and r["target"] == "tgt_x" and r["fraction_pruned"] == "0.5")
    assert f"{100 * float(cell['test_accuracy_mean']):.1f} ± {100 * float(cell['test_accuracy_std']):.1f}" in text
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
    proc = run_script("--workdirs=" + ",".join(str(w) for w in study["workdirs"]), "--sparsities=0.5,0.8")
    assert proc.returncode == 0, proc.stderr
    written = Path(study["workdirs"][0]) / "report" / "report.md"
    assert proc.stdout.strip() == f"wrote {written}"
    assert "| tgt_y 50% | tgt_y 80% |" in written.read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "error: workdir {empty} has no metrics.jsonl"),
        (["--sparsities=0.5,x"], "error: --sparsities=0.5,x is not a comma-separated list of numbers"),
        (["--sparsities=1.5"], "error: sparsity 1.5 is not a fraction pruned in [0, 1)"),
    ],
)
def test_bad_input_is_one_line(study, tmp_path, args, message):
    workdirs = [tmp_path] if not args else study["workdirs"]
    proc = run_script("--workdirs=" + ",".join(str(w) for w in workdirs), f"--out={tmp_path / 'out'}", *args)
    assert_one_line_error(proc, message.format(empty=tmp_path))
    assert not (tmp_path / "out").exists()

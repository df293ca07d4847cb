"""Figures as a notebook uses them: plot functions return Figures, importing lth_jax
leaves matplotlib's backend alone, a split ticket draws as separate networks."""

import numpy as np
from conftest import run_python
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from lth_jax import masks, plots
from lth_jax.structure import analyze


def test_importing_lth_jax_keeps_the_backend():
    proc = run_python("""
    import importlib, pkgutil
    import matplotlib
    matplotlib.use("svg")  # whatever a notebook chose
    import lth_jax
    for module in pkgutil.walk_packages(lth_jax.__path__, "lth_jax."):
        importlib.import_module(module.name)
    print("backend", matplotlib.get_backend())
    """)
    assert "backend svg" in proc.stdout


def interleaved_split():
    """Two tasks (inputs 0-1 → output 0, inputs 2-3 → output 1) through 6 + 6 hidden
    units, task 0 on the even units and task 1 on the odd ones: a split ticket whose
    index order interleaves the two subnetworks."""
    first, second, last = np.zeros((4, 6), bool), np.zeros((6, 6), bool), np.zeros((6, 2), bool)
    for unit in range(6):
        task = unit % 2
        first[2 * task : 2 * task + 2, unit] = True
        second[unit, [u for u in range(6) if u % 2 == task]] = True
        last[unit, task] = True
    return analyze([first, second, last], [0, 0, 1, 1], [0, 1])


def test_a_split_ticket_draws_each_subnetwork_as_a_block():
    report = interleaved_split()
    assert report.status == "split"
    for layer in (1, 2):
        order = plots.network_order(report)[layer]
        tasks = [report.component_tasks[report.node_components[layer][u]] for u in order]
        assert tasks == sorted(tasks) and tasks[:3] == [0, 0, 0] and tasks[3:] == [1, 1, 1], tasks  # contiguous blocks
    fig = plots.plot_networks([("split", report)], [0, 0, 1, 1], [0, 1], ["a", "b"])
    assert isinstance(fig, Figure)
    nodes = [c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets()) and np.all(c.get_offsets()[:, 0] == 1)]
    ys = nodes[0][:, 1]  # the first hidden layer's nodes (at x = 1)
    assert np.all(np.diff(ys[plots.network_order(report)[1]]) < 0)  # drawn top to bottom in that order


def level_rows(seed):
    return [{"seed": seed, "level": level, "accuracy": [0.9, 0.8], "weights_remaining": 100 // (level + 1), "active_weights": 50 // (level + 1),
             "status": "split" if level == 2 else "interconnected"} for level in range(3)]


def test_every_plot_function_returns_a_figure_and_seeds_have_their_own_colour():
    levels = plots.plot_levels({0: level_rows(0), 1: level_rows(1), 2: level_rows(2)}, ["a", "b"])
    colours = {line.get_label().split("(seed ")[1]: to_hex(line.get_color()) for line in levels.axes[0].get_lines() if "seed" in line.get_label()}
    assert len(set(colours.values())) == 3  # one colour per seed
    many = plots.plot_levels({s: level_rows(s) for s in range(32)}, ["a", "b"])  # the legends name the styles, not 128 lines
    assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in many.axes] == [["a", "b"], ["remaining", "active"]]
    assert many.axes[0].get_legend().get_title().get_text() == "32 seeds, a colour each"
    sweep = [{"x": x, "y": y, "category": c} for x, y, c in ((1, 31, "Separated"), (2, 31, "Degraded"), (1, 38, "Interconnected"))]
    params = {"fc": {"kernel": np.ones((4, 3))}, "conv": {"kernel": np.ones((3, 3, 2, 4))}}
    reports = [masks.sparsity_report(masks.global_magnitude_prune(params, masks.init_mask(params), fraction=f)) for f in (0.0, 0.2, 0.36)]
    rows = [{"level": i, "fraction_remaining": 0.8**i, "test_accuracy": 0.9 - 0.01 * i} for i in range(3)]
    figures = [
        levels,
        plots.plot_networks([("x", interleaved_split())], [0, 0, 1, 1], [0, 1], ["a", "b"]),
        plots.plot_categories(sweep),
        plots.plot_split_grid(sweep),
        plots.plot_input_degree([("level 0", np.arange(8.0))], (2, 2), ["a", "b"]),
        plots.plot_find_ticket(rows, reports, "toy"),
    ]
    assert all(isinstance(fig, Figure) for fig in figures)
    assert [line.get_label() for line in figures[-1].axes[1].get_lines()] == ["conv/kernel", "fc/kernel"]

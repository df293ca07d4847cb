"""Figures as a notebook uses them: plot functions return Figures, importing lth_jax
leaves matplotlib's backend alone, a split ticket draws as separate networks."""

import io

import matplotlib.image
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
    alone = plots.figure((4, 3))
    plots.draw_network(alone.subplots(), report, [0, 0, 1, 1], [0, 1], title="split")
    for fig in (plots.plot_networks([("split", report)], [0, 0, 1, 1], [0, 1], ["a", "b"]), alone):
        assert isinstance(fig, Figure)
        nodes = fig.axes[0].collections[-1].get_offsets()  # every node in one collection, drawn over the edges
        assert len(nodes) == 4 + 6 + 6 + 2
        hidden = nodes[nodes[:, 0] == np.unique(nodes[:, 0])[1]]  # the first hidden layer
        assert np.all(np.diff(hidden[:, 1][plots.network_order(report)[1]]) < 0)  # drawn top to bottom in that order


def test_many_networks_share_one_axes_and_a_collection_per_edge_style():
    report = interleaved_split()
    fig = plots.plot_networks([(f"seed {s}", report) for s in range(9)], [0, 0, 1, 1], [0, 1], ["a", "b"])
    (ax,) = fig.axes  # four a row, three rows: the figure's size, not an axes each
    assert tuple(fig.get_size_inches()) == (4 * plots.NETWORK_CELL[0], 3 * plots.NETWORK_CELL[1])
    assert [len(c.get_paths()) for c in ax.collections[:-1]] == [9 * int((report.edge_states[0] > 0).sum() + (report.edge_states[1] > 0).sum()
                                                                        + (report.edge_states[2] > 0).sum())]  # active edges only
    assert len(ax.collections[-1].get_offsets()) == 9 * 18
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("seed")] == [f"seed {s}" for s in range(9)]


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


def _tight_png(fig, **kwargs) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=plots.DPI, **kwargs)
    return matplotlib.image.imread(io.BytesIO(buffer.getvalue()))


def test_a_png_is_drawn_once_and_cropped_as_savefig_crops_it(tmp_path, monkeypatch):
    fig = plots.plot_find_ticket([{"level": i, "fraction_remaining": 0.8**i, "test_accuracy": 0.9 - 0.01 * i} for i in range(3)],
                                 [masks.sparsity_report({"fc": {"kernel": np.ones((4, 3))}})] * 3, "toy")
    canvas, draw, draws = fig.canvas, Figure.draw, []
    monkeypatch.setattr(Figure, "draw", lambda self, renderer: draws.append(renderer) or draw(self, renderer))
    ours = matplotlib.image.imread(plots.save(fig, tmp_path / "a.png"))
    assert len(draws) == 1  # savefig's tight box draws twice
    monkeypatch.undo()
    assert fig.canvas is canvas and fig.dpi == Figure().dpi  # a notebook still shows it as it was
    theirs = _tight_png(fig, bbox_inches="tight", pad_inches=plots.PAD_INCHES)
    assert abs(ours.shape[0] - theirs.shape[0]) <= 1 and abs(ours.shape[1] - theirs.shape[1]) <= 1, (ours.shape, theirs.shape)
    h, w = min(ours.shape[0], theirs.shape[0]), min(ours.shape[1], theirs.shape[1])
    assert np.mean(np.abs(ours[:h, :w] - theirs[:h, :w]).max(-1) > 0.25) < 0.02  # the same picture, up to a subpixel shift
    whole = matplotlib.image.imread(plots.save(fig, tmp_path / "b.png", crop=False))
    assert whole.shape[:2] == tuple(round(plots.DPI * v) for v in fig.get_size_inches()[::-1])
    spill = plots.figure((3, 2))
    ax = spill.subplots()
    ax.plot([0, 1], label="a legend beyond the canvas")
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0))
    wide = matplotlib.image.imread(plots.save(spill, tmp_path / "c.png"))
    assert wide.shape[1] > 3 * plots.DPI and wide.shape == _tight_png(spill, bbox_inches="tight").shape  # savefig's own crop

"""notebooks/ticket_tour.ipynb runs top to bottom and shows what it says it shows."""

import json

import matplotlib
from conftest import REPO

matplotlib.use("Agg")


def run_notebook(path):
    """Execute the code cells of a notebook in one namespace, in order (no kernel needed)."""
    namespace = {"__name__": "__main__"}
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, f"{path} has no code cell"
    for i, cell in enumerate(code):
        exec(compile("".join(cell["source"]), f"{path.name} code cell {i}", "exec"), namespace)
    return namespace


def test_ticket_tour_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
    ns = run_notebook(REPO / "notebooks" / "ticket_tour.ipynb")
    assert ns["level"] == 4 and ns["ticket"].info["dataset"] == "digits"
    assert ns["same_counts"] is True
    global_report = ns["masks"].sparsity_report(ns["global_mask"])
    layerwise_report = ns["masks"].sparsity_report(ns["layerwise_mask"])
    assert abs(global_report["remaining"] - layerwise_report["remaining"]) <= len(layerwise_report["layers"])  # same budget
    assert global_report["layers"][-1]["fraction_remaining"] > layerwise_report["layers"][-1]["fraction_remaining"]  # spares the head
    overlaps = ns["overlaps"]
    chance = ns["density"] / (2 - ns["density"])
    assert abs(overlaps["winning vs random"]["iou"] - chance) < 0.05
    assert overlaps["level 4 vs level 3"]["iou"] > 0.75  # nested masks
    assert (tmp_path / "run" / "per_layer_sparsity.png").stat().st_size > 5000

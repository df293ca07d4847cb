import itertools

import numpy as np
import pytest

from lth_jax.structure import ACTIVE, INACTIVE, PRUNED, ZOMBIE, analyze, run_category

INPUTS, OUTPUTS = [0, 0, 1, 1], [0, 1]


def masks_from_edges(sizes, edges):
    """``edges[l]`` lists (u, v) kept in layer l."""
    masks = [np.zeros((a, b), bool) for a, b in zip(sizes[:-1], sizes[1:])]
    for layer, pairs in enumerate(edges):
        for u, v in pairs:
            masks[layer][u, v] = True
    return masks


SEPARATE = [[(0, 0), (1, 0), (1, 1), (2, 2), (3, 2), (3, 3)], [(0, 0), (1, 0), (2, 1), (3, 1)]]


def test_two_disjoint_subnetworks_split():
    report = analyze(masks_from_edges([4, 5, 2], SEPARATE), INPUTS, OUTPUTS)
    assert report.status == "split" and report["status"] == "split"
    assert report.num_components == 2
    np.testing.assert_allclose(report.coverage, np.eye(2))
    assert report.component_tasks == [0, 1]
    assert report.active_edges == 10 and report.inactive_edges == 0 and report.zombie_edges == 0
    assert report.pruned_edges == 4 * 5 + 5 * 2 - 10
    assert report.untapped_potential == 0
    assert report.decided_output == [1.0] and report.decided_input == [1.0]
    assert report.input_out_degree.tolist() == [1, 2, 1, 2]


def test_one_crossing_edge_interconnects():
    edges = [SEPARATE[0], SEPARATE[1] + [(1, 1)]]
    report = analyze(masks_from_edges([4, 5, 2], edges), INPUTS, OUTPUTS)
    assert report.status == "interconnected" and report.num_components == 1
    assert report.component_tasks == [-1]
    assert report.decided_output == [0.75]  # hidden 1 feeds both tasks' outputs
    assert report.untapped_potential == -1


def test_a_task_cut_off_from_its_outputs_degrades():
    edges = [SEPARATE[0], [(0, 0), (1, 0)]]
    report = analyze(masks_from_edges([4, 5, 2], edges), INPUTS, OUTPUTS)
    assert report.status == "degraded" and report.num_components == 1
    np.testing.assert_allclose(report.task_coverage, [1.0, 0.0])
    # hidden 2 and 3 lost their path to an output: their incoming edges are inactive
    assert report.inactive_edges == 3
    assert report.edge_states[0][2, 2] == INACTIVE and report.edge_states[0][0, 0] == ACTIVE


def test_a_unit_without_a_path_to_an_output_has_inactive_edges():
    edges = [SEPARATE[0] + [(0, 4), (2, 4)], SEPARATE[1]]
    report = analyze(masks_from_edges([4, 5, 2], edges), INPUTS, OUTPUTS)
    assert report.status == "split"
    assert report.inactive_edges == 2 and report.edge_states[0][0, 4] == INACTIVE
    assert report.inactive_nodes == 1 and report.node_components[1][4] == -1


def test_a_unit_without_a_path_from_an_input_is_a_zombie():
    # two hidden layers: hidden-1 unit 4 has no inputs but feeds hidden-2 unit 0, which reaches output 0
    sizes = [4, 5, 3, 2]
    edges = [SEPARATE[0], [(0, 0), (1, 0), (2, 1), (3, 1), (4, 0)], [(0, 0), (1, 1)]]
    report = analyze(masks_from_edges(sizes, edges), INPUTS, OUTPUTS)
    assert report.zombie_edges == 1 and report.edge_states[1][4, 0] == ZOMBIE
    assert report.zombie_nodes == 1
    assert report.status == "split"
    # a zombie chain: hidden-2 unit 2 fed only by the zombie, feeding output 1
    edges[1].append((4, 2))
    edges[2].append((2, 1))
    report = analyze(masks_from_edges(sizes, edges), INPUTS, OUTPUTS)
    assert report.zombie_edges == 3 and report.zombie_nodes == 2
    assert report.edge_states[2][2, 1] == ZOMBIE


def test_more_components_than_tasks_with_every_task_covered_is_degraded():
    outputs = [0, 0, 1]  # task 0 has two outputs, served by two separate subnetworks
    edges = [[(0, 0), (1, 1), (2, 2), (3, 2)], [(0, 0), (1, 1), (2, 2)]]
    report = analyze(masks_from_edges([4, 3, 3], edges), INPUTS, outputs)
    assert report.num_components == 3
    np.testing.assert_allclose(report.task_coverage, [1.0, 1.0])
    assert report.status == "degraded" and report.untapped_potential == 1
    output_view = analyze(masks_from_edges([4, 3, 3], edges), INPUTS, outputs, coverage="output")
    np.testing.assert_allclose(output_view.coverage, [[0.5, 0], [0.5, 0], [0, 1]])


def test_output_coverage_ignores_disconnected_inputs():
    edges = [[(0, 0), (1, 0), (3, 2)], [(0, 0), (2, 1)]]  # input 2 (task 1) lost all edges
    masks = masks_from_edges([4, 5, 2], edges)
    assert analyze(masks, INPUTS, OUTPUTS).status == "degraded"
    assert analyze(masks, INPUTS, OUTPUTS, coverage="output").status == "split"


def reference_edge_states(masks):
    """Explicit graph search: is u reachable from an input, does v reach an output?"""
    sizes = [masks[0].shape[0]] + [m.shape[1] for m in masks]
    forward = [set(range(sizes[0]))]
    for m in masks:
        forward.append({v for u in forward[-1] for v in range(m.shape[1]) if m[u, v]})
    backward = [set(range(sizes[-1]))]
    for m in reversed(masks):
        backward.insert(0, {u for u in range(m.shape[0]) for v in backward[0] if m[u, v]})
    states = []
    for layer, m in enumerate(masks):
        s = np.full(m.shape, PRUNED)
        for u, v in itertools.product(range(m.shape[0]), range(m.shape[1])):
            if m[u, v]:
                s[u, v] = INACTIVE if v not in backward[layer + 1] else (ZOMBIE if u not in forward[layer] else ACTIVE)
        states.append(s)
    return states


def reference_components(states):
    parent = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for layer, s in enumerate(states):
        for u, v in zip(*np.nonzero(s == ACTIVE)):
            parent[find((layer, u))] = find((layer + 1, v))
    return len({find(node) for node in list(parent)})


@pytest.mark.parametrize("seed", range(8))
def test_random_masks_match_a_graph_search(seed):
    rng = np.random.default_rng(seed)
    sizes = [4, 7, 6, 2]
    masks = [rng.random((a, b)) < 0.3 for a, b in zip(sizes[:-1], sizes[1:])]
    report = analyze(masks, INPUTS, OUTPUTS)
    expected = reference_edge_states(masks)
    for got, want in zip(report.edge_states, expected):
        np.testing.assert_array_equal(got, want)
    assert report.num_components == reference_components(expected)
    assert report.active_edges + report.inactive_edges + report.zombie_edges + report.pruned_edges == report.total_edges


def test_bad_input():
    masks = masks_from_edges([4, 5, 2], SEPARATE)
    with pytest.raises(ValueError, match="input_tasks has 3 entries for 4 inputs"):
        analyze(masks, [0, 0, 1], OUTPUTS)
    with pytest.raises(ValueError, match="kernel_masks\\[1\\] has fan_in 3 but kernel_masks\\[0\\] has fan_out 5"):
        analyze([masks[0], np.ones((3, 2), bool)], INPUTS, OUTPUTS)
    with pytest.raises(ValueError, match="coverage='inputs'"):
        analyze(masks, INPUTS, OUTPUTS, coverage="inputs")


def test_run_categories():
    assert run_category(["interconnected", "interconnected", "split", "split"]) == {
        "split_level": 2, "degradation_level": None, "category": "Separated"}
    assert run_category(["interconnected", "split", "degraded"])["category"] == "Separated-Degraded"
    assert run_category(["interconnected", "degraded", "split"]) == {
        "split_level": 2, "degradation_level": 1, "category": "Degraded"}
    assert run_category(["interconnected"] * 3)["category"] == "Interconnected"
    with pytest.raises(ValueError, match="status 'merged'"):
        run_category(["merged"])

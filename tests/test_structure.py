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
    assert report.untapped_potential == 0.0 and isinstance(report.untapped_potential, float)
    np.testing.assert_allclose(report.task_coverage, [1.0, 1.0])
    assert report.decided_output == [1.0] and report.decided_input == [1.0]
    assert report.input_out_degree.tolist() == [1, 2, 1, 2]


def test_one_crossing_edge_interconnects():
    edges = [SEPARATE[0], SEPARATE[1] + [(1, 1)]]
    report = analyze(masks_from_edges([4, 5, 2], edges), INPUTS, OUTPUTS)
    assert report.status == "interconnected" and report.num_components == 1
    assert report.component_tasks == [-1]
    assert report.decided_output == [0.75]  # hidden 1 feeds both tasks' outputs
    np.testing.assert_allclose(report.task_coverage, [1.0, 1.0])
    assert report.untapped_potential == 1.0  # T - K = 2 - 1


def test_a_task_cut_off_from_its_outputs_degrades():
    edges = [SEPARATE[0], [(0, 0), (1, 0)]]
    report = analyze(masks_from_edges([4, 5, 2], edges), INPUTS, OUTPUTS)
    assert report.status == "degraded" and report.num_components == 1
    np.testing.assert_allclose(report.task_coverage, [1.0, 0.0])
    assert report.untapped_potential == pytest.approx(-0.5)
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


def test_more_components_than_tasks_is_degraded():
    # Task 0 has two outputs, served by two separate subnetworks: it lies in no single component.
    outputs = [0, 0, 1]
    edges = [[(0, 0), (1, 1), (2, 2), (3, 2)], [(0, 0), (1, 1), (2, 2)]]
    report = analyze(masks_from_edges([4, 3, 3], edges), INPUTS, outputs)
    assert report.num_components == 3
    np.testing.assert_allclose(report.coverage, [[0.25, 0], [0.25, 0], [0, 1]])
    np.testing.assert_allclose(report.task_coverage, [0.5, 1.0])  # column sums
    assert report.status == "degraded" and report.untapped_potential == pytest.approx(1.5 / 2 - 1)
    output_view = analyze(masks_from_edges([4, 3, 3], edges), INPUTS, outputs, coverage="output")
    np.testing.assert_allclose(output_view.coverage, [[0.5, 0], [0.5, 0], [0, 1]])
    np.testing.assert_allclose(output_view.task_coverage, [0.5, 1.0])  # largest entry of each column
    assert output_view.status == "degraded" and output_view.untapped_potential == pytest.approx(-0.25)


def test_a_task_spread_over_two_components_is_degraded():
    # Component 0 holds all of task 0 and input 2 of task 1; component 1 holds the rest of task 1.
    edges = [[(0, 0), (1, 0), (2, 0), (3, 1)], [(0, 0), (1, 1)]]
    masks = masks_from_edges([4, 2, 2], edges)
    report = analyze(masks, INPUTS, OUTPUTS)
    assert report.num_components == 2
    np.testing.assert_allclose(report.coverage, [[1.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(report.task_coverage, [1.0, 0.5])
    assert report.status == "degraded" and report.untapped_potential == pytest.approx(-0.25)
    assert report.component_tasks == [0, 1]
    # Output coverage looks at outputs only: each task's output lies in its own component.
    output_view = analyze(masks, INPUTS, OUTPUTS, coverage="output")
    assert output_view.status == "split" and output_view.untapped_potential == 0.0


def test_output_coverage_of_multi_output_tasks_split_across_components_is_degraded():
    # Two tasks with two outputs each; each component holds one output of each task.
    outputs = [0, 0, 1, 1]
    edges = [[(0, 0), (2, 0), (1, 1), (3, 1)], [(0, 0), (0, 2), (1, 1), (1, 3)]]
    masks = masks_from_edges([4, 2, 4], edges)
    report = analyze(masks, INPUTS, outputs, coverage="output")
    assert report.num_components == 2
    np.testing.assert_allclose(report.coverage, [[0.5, 0.5], [0.5, 0.5]])  # column sums are 1
    np.testing.assert_allclose(report.task_coverage, [0.5, 0.5])
    assert report.status == "degraded" and report.untapped_potential == pytest.approx(-0.5)
    assert report.component_tasks == [-1, -1]
    total_view = analyze(masks, INPUTS, outputs)
    np.testing.assert_allclose(total_view.task_coverage, [0.5, 0.5])
    assert total_view.status == "degraded" and total_view.untapped_potential == pytest.approx(-0.5)


def test_output_coverage_of_multi_output_tasks_each_in_one_component_splits():
    outputs = [0, 0, 1, 1]
    edges = [[(0, 0), (1, 0), (2, 1), (3, 1)], [(0, 0), (0, 1), (1, 2), (1, 3)]]
    report = analyze(masks_from_edges([4, 2, 4], edges), INPUTS, outputs, coverage="output")
    np.testing.assert_allclose(report.coverage, np.eye(2))
    assert report.status == "split" and report.untapped_potential == 0.0
    assert report.component_tasks == [0, 1]


def test_crossed_tasks_are_degraded():
    # Task 0's inputs reach only task 1's output, and task 1's inputs only task 0's output.
    edges = [[(0, 0), (1, 0), (2, 1), (3, 1)], [(0, 1), (1, 0)]]
    masks = masks_from_edges([4, 2, 2], edges)
    report = analyze(masks, INPUTS, OUTPUTS)
    assert report.num_components == 2
    np.testing.assert_allclose(report.coverage, np.zeros((2, 2)))
    np.testing.assert_allclose(report.task_coverage, [0.0, 0.0])
    assert report.status == "degraded" and report.untapped_potential == pytest.approx(-1.0)
    assert report.component_tasks == [-1, -1]
    # Output coverage ignores inputs: each output has a component of its own.
    output_view = analyze(masks, INPUTS, OUTPUTS, coverage="output")
    assert output_view.status == "split" and output_view.component_tasks == [1, 0]


def test_output_coverage_ignores_disconnected_inputs():
    edges = [[(0, 0), (1, 0), (3, 2)], [(0, 0), (2, 1)]]  # input 2 (task 1) lost all edges
    masks = masks_from_edges([4, 5, 2], edges)
    report = analyze(masks, INPUTS, OUTPUTS)
    assert report.status == "degraded"
    np.testing.assert_allclose(report.task_coverage, [1.0, 0.5])
    assert report.untapped_potential == pytest.approx(-0.25)
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


def union_find(states):
    """``find`` and the nodes of the active edges' components, by union-find."""
    parent = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for layer, s in enumerate(states):
        for u, v in zip(*np.nonzero(s == ACTIVE)):
            parent[find((layer, u))] = find((layer + 1, v))
    return find, list(parent)


def reference_components(states):
    find, nodes = union_find(states)
    return len({find(node) for node in nodes})


def reference_structure(masks, input_tasks, output_tasks, coverage):
    """Status and U by the strict rule, from the reference graph search and union-find."""
    states = reference_edge_states(masks)
    find, members = union_find(states)
    members = set(members)
    roots = sorted({find(node) for node in members})
    num_tasks, last = max(output_tasks) + 1, len(masks)

    def component(node):
        return find(node) if node in members else None

    ins = [[component((0, i)) for i, t in enumerate(input_tasks) if t == k] for k in range(num_tasks)]
    outs = [[component((last, o)) for o, t in enumerate(output_tasks) if t == k] for k in range(num_tasks)]
    if coverage == "total":
        cov = [sum(ins[k].count(r) / len(ins[k]) * outs[k].count(r) / len(outs[k]) for r in roots) for k in range(num_tasks)]
        nodes = [ins[k] + outs[k] for k in range(num_tasks)]
    else:
        cov = [max([outs[k].count(r) / len(outs[k]) for r in roots], default=0.0) for k in range(num_tasks)]
        nodes = outs
    wholly_inside = [len(set(n)) == 1 and n[0] is not None for n in nodes]
    assert wholly_inside == [bool(np.isclose(c, 1.0)) for c in cov]
    if not all(wholly_inside):
        return "degraded", sum(cov) / num_tasks - 1
    touched = [{k for k in range(num_tasks) if r in nodes[k]} for r in roots]
    if len(roots) > num_tasks:
        status = "degraded"
    elif len(roots) == num_tasks:
        status = "split" if all(len(t) == 1 for t in touched) else "degraded"
    else:
        status = "interconnected"
    return status, float(num_tasks - len(roots))


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


def random_ticket(rng, sizes, index):
    """A random sparse mask; every other one mostly block-diagonal (task 0 on top, task 1 below) so splits occur."""
    density = rng.uniform(0.2, 0.7)
    masks = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        m = rng.random((a, b)) < density
        if index % 2:
            blocks = np.zeros((a, b), bool)
            blocks[: a // 2, : b // 2] = blocks[a // 2 :, b // 2 :] = True
            m &= blocks | (rng.random((a, b)) < 0.03)
        masks.append(m)
    return masks


@pytest.mark.parametrize("coverage", ["total", "output"])
def test_untapped_potential_is_negative_exactly_when_degraded(coverage):
    rng = np.random.default_rng(0)
    sizes = [4, 6, 6, 2]
    seen = set()
    for index in range(300):
        masks = random_ticket(rng, sizes, index)
        report = analyze(masks, INPUTS, OUTPUTS, coverage=coverage)
        u = report.untapped_potential
        assert isinstance(u, float)
        assert (u < 0) == (report.status == "degraded")
        assert (u == 0) == (report.status == "split")
        assert (u > 0) == (report.status == "interconnected")
        status, expected_u = reference_structure(masks, INPUTS, OUTPUTS, coverage)
        assert report.status == status and u == pytest.approx(expected_u)
        seen.add(report.status)
    assert seen == {"split", "interconnected", "degraded"}


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


@pytest.mark.parametrize("seed", range(6))
def test_connected_labels_partition_like_scipy(seed):
    """The numpy components (hooking and pointer jumping) against scipy's, on random
    sparse graphs: chains, many components, isolated nodes, repeated edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from lth_jax.structure import _connected_labels

    rng = np.random.default_rng(seed)
    total = int(rng.integers(2, 400))
    edges = int(rng.integers(0, 2 * total))
    rows, cols = rng.integers(0, total, edges), rng.integers(0, total, edges)
    if seed == 0:  # a long chain in reverse order: the most rounds
        rows, cols = np.arange(total - 1, 0, -1), np.arange(total - 2, -1, -1)
    labels = _connected_labels(rows, cols, total)
    _, expected = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(total, total)), directed=False)
    # the same partition: a label of ours names exactly one of scipy's components, and back
    pairs = set(zip(labels.tolist(), expected.tolist()))
    assert len(pairs) == len(set(labels.tolist())) == len(set(expected.tolist()))

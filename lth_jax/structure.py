"""Structure of MLP tickets on parallel tasks.

The graph has one node per (layer, unit) and one directed edge per weight, from
the input layer to the output layer; only the masks matter. For an unpruned
edge ``u → v``:

- *inactive* if ``v`` has no path to any output through unpruned edges;
- otherwise *zombie* if ``u`` has no path from any input (it can act only through
  its bias);
- otherwise *active*: ``u`` is reachable from an input and ``v`` reaches an output.

Reachability is boolean propagation layer by layer, forward and backward.
Subnetworks are the connected components of the active edges (undirected);
nodes without active edges belong to none. Every component holds at least one
input and one output (an active edge lies on an input-to-output path of active
edges).

The coverage matrix ``C`` (components × tasks) is ``C[j, k] = (task-k inputs in
j / task-k inputs) · (task-k outputs in j / task-k outputs)`` ("total") or the
output factor alone ("output"). The coverage ``c_k`` of task ``k`` is the sum of
its column under "total" coverage: a sum of products of fractions, it is 1
exactly when one component holds all of the task's inputs and outputs. Under
"output" coverage it is the largest entry of the column, the share of the
task's outputs held by its largest component (the column sum would be 1 for a
task whose outputs are spread over several components). A task is *covered*
when ``c_k`` is 1, i.e. it lies wholly inside one component.

Status:

- some task not covered → ``degraded`` (e.g. a task split between two
  components, a task whose inputs are wired only to another task's outputs, a
  task cut off from its outputs);
- else more components than tasks → ``degraded``;
- else as many components as tasks → ``split`` when each component touches
  exactly one task (holds an input or output of one task only, outputs only
  under "output" coverage), ``degraded`` otherwise;
- else (fewer components than tasks) → ``interconnected``.

Once every task is covered the second and third rules are safeguards that
never fire: each task then lies in one component and every component (holding
an input and an output) touches at least one task, so there are at most as
many components as tasks, and as many only when components and tasks pair off
one to one.

The untapped potential ``U`` is ``T − K`` (tasks minus components) when every
task is covered, else the mean task coverage minus one, ``sum_k c_k / T − 1``.
So ``U > 0`` for an interconnected ticket, ``U = 0`` for a split one and
``U < 0`` exactly when it is degraded.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from lth_jax.errors import UserError

__all__ = [
    "PRUNED",
    "INACTIVE",
    "ZOMBIE",
    "ACTIVE",
    "StructureReport",
    "analyze",
    "run_category",
    "CATEGORIES",
]

PRUNED, INACTIVE, ZOMBIE, ACTIVE = 0, 1, 2, 3
STATUSES = ("interconnected", "split", "degraded")
CATEGORIES = ("Separated", "Separated-Degraded", "Degraded", "Interconnected")


@dataclasses.dataclass
class StructureReport:
    """The structure of one ticket. Index it like a dict too (``report["status"]``).

    Attributes:
      status: ``"interconnected"``, ``"split"`` or ``"degraded"``.
      num_components: subnetworks (components of the active edges).
      coverage: ``[num_components, num_tasks]`` coverage matrix.
      task_coverage: ``[num_tasks]`` coverage ``c_k`` of each task: its column sum
        of ``coverage`` ("total"), its largest entry ("output"); 1 when the task
        lies wholly inside one component.
      untapped_potential: the thesis's ``U``, a float: ``T − K`` (tasks minus
        components) when every task is covered, else ``sum(task_coverage) / T − 1``.
        Positive: interconnected; zero: split; negative: degraded.
      active_edges, inactive_edges, zombie_edges, pruned_edges, total_edges: edge counts.
      active_nodes, inactive_nodes, zombie_nodes: hidden units by state.
      edge_states: per layer, an int8 matrix ``(fan_in, fan_out)`` of
        ``PRUNED / INACTIVE / ZOMBIE / ACTIVE``.
      node_components: per layer, each unit's component id (-1: none).
      component_tasks: per component, the one task it covers (-1: several or none).
      decided_output, decided_input: per hidden layer, the fraction of units with
        active edges that are ancestors of one task's outputs only / descendants
        of one task's inputs only (through active edges); ``nan`` without such units.
      input_out_degree: active out-degree of every input feature.
    """

    status: str
    num_components: int
    coverage: np.ndarray
    task_coverage: np.ndarray
    untapped_potential: float
    active_edges: int
    inactive_edges: int
    zombie_edges: int
    pruned_edges: int
    total_edges: int
    active_nodes: int
    inactive_nodes: int
    zombie_nodes: int
    edge_states: list
    node_components: list
    component_tasks: list
    decided_output: list
    decided_input: list
    input_out_degree: np.ndarray

    def __getitem__(self, key: str):
        return getattr(self, key)

    def summary(self) -> dict:
        """The scalar and small fields, JSON-ready."""
        unpruned = self.total_edges - self.pruned_edges
        return {
            "status": self.status,
            "num_components": self.num_components,
            "coverage": self.coverage.round(6).tolist(),
            "task_coverage": self.task_coverage.round(6).tolist(),
            "untapped_potential": self.untapped_potential,
            "active_edges": self.active_edges,
            "inactive_edges": self.inactive_edges,
            "zombie_edges": self.zombie_edges,
            "pruned_edges": self.pruned_edges,
            "total_edges": self.total_edges,
            "active_fraction_of_unpruned": self.active_edges / unpruned if unpruned else 0.0,
            "active_nodes": self.active_nodes,
            "inactive_nodes": self.inactive_nodes,
            "zombie_nodes": self.zombie_nodes,
            "component_tasks": list(self.component_tasks),
            "decided_output": [None if np.isnan(r) else float(r) for r in self.decided_output],
            "decided_input": [None if np.isnan(r) else float(r) for r in self.decided_input],
        }


def _check(kernel_masks, input_tasks, output_tasks, coverage):
    masks = [np.asarray(m, dtype=bool) for m in kernel_masks]
    if not masks:
        raise UserError("kernel_masks is empty")
    for i, m in enumerate(masks):
        if m.ndim != 2:
            raise UserError(f"kernel_masks[{i}] has shape {m.shape}; expected (fan_in, fan_out)")
        if i and m.shape[0] != masks[i - 1].shape[1]:
            raise UserError(
                f"kernel_masks[{i}] has fan_in {m.shape[0]} but kernel_masks[{i - 1}] has fan_out {masks[i - 1].shape[1]}"
            )
    input_tasks, output_tasks = np.asarray(input_tasks, int), np.asarray(output_tasks, int)
    if len(input_tasks) != masks[0].shape[0]:
        raise UserError(f"input_tasks has {len(input_tasks)} entries for {masks[0].shape[0]} inputs")
    if len(output_tasks) != masks[-1].shape[1]:
        raise UserError(f"output_tasks has {len(output_tasks)} entries for {masks[-1].shape[1]} outputs")
    if coverage not in ("total", "output"):
        raise UserError(f"coverage={coverage!r} is not one of 'total', 'output'")
    tasks = sorted(set(input_tasks.tolist()) | set(output_tasks.tolist()))
    if tasks != list(range(len(tasks))):
        raise UserError(f"task ids must be 0..T-1, got {tasks}")
    if set(output_tasks.tolist()) != set(tasks):
        raise UserError("every task needs at least one output")
    return masks, input_tasks, output_tasks, len(tasks)


def _forward(masks: list[np.ndarray], start: np.ndarray) -> list[np.ndarray]:
    """Per layer, the nodes reachable from ``start`` (input-layer nodes) along ``masks``."""
    reach = [start]
    for m in masks:
        reach.append(m[reach[-1]].any(axis=0))
    return reach


def _backward(masks: list[np.ndarray], end: np.ndarray) -> list[np.ndarray]:
    """Per layer, the nodes that reach ``end`` (output-layer nodes) along ``masks``."""
    reach = [end]
    for m in reversed(masks):
        reach.insert(0, m[:, reach[0]].any(axis=1))
    return reach


def _connected_labels(rows: np.ndarray, cols: np.ndarray, total: int) -> np.ndarray:
    """A label per node, equal exactly for the nodes that the edges ``rows[i]-cols[i]``
    connect: min-label hooking and pointer jumping in numpy (a few rounds; no
    scipy import, which costs more than the analysis of a small network)."""
    labels = np.arange(total)
    while True:
        lu, lv = labels[rows], labels[cols]
        low = np.minimum(lu, lv)
        hooked = labels.copy()
        np.minimum.at(hooked, lu, low)  # every root takes the smallest root it is joined to
        np.minimum.at(hooked, lv, low)
        while True:  # every node points at its root
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, labels):
            return labels
        labels = hooked


def _components(active: list[np.ndarray], sizes: list[int]) -> tuple[int, list[np.ndarray]]:
    """Connected components of the active edges; node labels per layer (-1: no active edge)."""
    offsets = np.cumsum([0] + sizes)
    rows, cols = [], []
    for layer, a in enumerate(active):
        u, v = np.nonzero(a)
        rows.append(u + offsets[layer])
        cols.append(v + offsets[layer + 1])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    total = int(offsets[-1])
    incident = np.zeros(total, bool)
    incident[rows] = True
    incident[cols] = True
    labels = _connected_labels(rows, cols, total)
    # Renumber the components that have active edges 0..K-1 in node order.
    ids = np.full(total, -1)
    order = {}
    for node in np.flatnonzero(incident):
        ids[node] = order.setdefault(labels[node], len(order))
    return len(order), [ids[offsets[i] : offsets[i + 1]] for i in range(len(sizes))]


def _decided(active: list[np.ndarray], input_tasks, output_tasks, num_tasks, node_components) -> tuple[list, list]:
    """Per hidden layer: fraction of units (with active edges) serving one task only, output and input views."""
    reach_out = [_backward(active, output_tasks == t) for t in range(num_tasks)]
    reach_in = [_forward(active, input_tasks == t) for t in range(num_tasks)]
    out_ratios, in_ratios = [], []
    for layer in range(1, len(active)):
        present = node_components[layer] >= 0
        n = int(present.sum())
        n_out = sum(r[layer].astype(int) for r in reach_out)
        n_in = sum(r[layer].astype(int) for r in reach_in)
        out_ratios.append(float(np.sum(present & (n_out == 1)) / n) if n else float("nan"))
        in_ratios.append(float(np.sum(present & (n_in == 1)) / n) if n else float("nan"))
    return out_ratios, in_ratios


def analyze(
    kernel_masks: Sequence, input_tasks: Sequence[int], output_tasks: Sequence[int], coverage: str = "total"
) -> StructureReport:
    """The structure of an MLP ticket.

    ``kernel_masks[l]`` is the boolean kernel mask of dense layer ``l`` in Flax
    layout ``(fan_in, fan_out)``, input layer first; ``input_tasks`` /
    ``output_tasks`` give the task id of every input feature / output unit.
    """
    masks, input_tasks, output_tasks, num_tasks = _check(kernel_masks, input_tasks, output_tasks, coverage)
    sizes = [masks[0].shape[0]] + [m.shape[1] for m in masks]
    from_input = _forward(masks, np.ones(sizes[0], bool))
    to_output = _backward(masks, np.ones(sizes[-1], bool))

    edge_states, active = [], []
    for layer, m in enumerate(masks):
        reaches = to_output[layer + 1][None, :]
        reached = from_input[layer][:, None]
        state = np.where(~m, PRUNED, np.where(~reaches, INACTIVE, np.where(~reached, ZOMBIE, ACTIVE))).astype(np.int8)
        edge_states.append(state)
        active.append(state == ACTIVE)
    counts = {s: int(sum(np.count_nonzero(e == s) for e in edge_states)) for s in (PRUNED, INACTIVE, ZOMBIE, ACTIVE)}

    hidden = range(1, len(sizes) - 1)
    active_nodes = sum(int(np.sum(from_input[i] & to_output[i])) for i in hidden)
    inactive_nodes = sum(int(np.sum(~to_output[i])) for i in hidden)
    zombie_nodes = sum(int(np.sum(to_output[i] & ~from_input[i])) for i in hidden)

    num_components, node_components = _components(active, sizes)
    in_ids, out_ids = node_components[0], node_components[-1]
    in_frac = np.zeros((num_components, num_tasks))
    out_frac = np.zeros((num_components, num_tasks))
    for t in range(num_tasks):
        ins, outs = input_tasks == t, output_tasks == t
        for j in range(num_components):
            in_frac[j, t] = np.sum(in_ids[ins] == j) / max(int(ins.sum()), 1)
            out_frac[j, t] = np.sum(out_ids[outs] == j) / max(int(outs.sum()), 1)
    if coverage == "total":
        matrix = in_frac * out_frac
        task_coverage = matrix.sum(axis=0)  # 1 iff one component holds all of the task's inputs and outputs
        touches = (in_frac > 0) | (out_frac > 0)
    else:
        matrix = out_frac
        task_coverage = matrix.max(axis=0) if num_components else np.zeros(num_tasks)
        touches = out_frac > 0
    covered = np.isclose(task_coverage, 1.0)
    if not covered.all():
        status, untapped = "degraded", float(task_coverage.sum() / num_tasks - 1.0)
    else:
        untapped = float(num_tasks - num_components)
        if num_components > num_tasks:
            status = "degraded"
        elif num_components == num_tasks:
            one_each = bool(np.all(touches.sum(axis=1) == 1) and np.all(touches.sum(axis=0) == 1))
            status = "split" if one_each else "degraded"
        else:
            status = "interconnected"
    component_tasks = [int(np.flatnonzero(row > 0)[0]) if np.count_nonzero(row > 0) == 1 else -1 for row in matrix]
    decided_output, decided_input = _decided(active, input_tasks, output_tasks, num_tasks, node_components)

    return StructureReport(
        status=status,
        num_components=num_components,
        coverage=matrix,
        task_coverage=task_coverage,
        untapped_potential=untapped,
        active_edges=counts[ACTIVE],
        inactive_edges=counts[INACTIVE],
        zombie_edges=counts[ZOMBIE],
        pruned_edges=counts[PRUNED],
        total_edges=sum(m.size for m in masks),
        active_nodes=active_nodes,
        inactive_nodes=inactive_nodes,
        zombie_nodes=zombie_nodes,
        edge_states=edge_states,
        node_components=node_components,
        component_tasks=component_tasks,
        decided_output=decided_output,
        decided_input=decided_input,
        input_out_degree=active[0].sum(axis=1),
    )


def run_category(statuses: Sequence[str]) -> dict:
    """First split and first degradation level of a run's per-level statuses, and its category.

    ``Separated``: splits and does not degrade afterwards; ``Separated-Degraded``:
    splits, then degrades; ``Degraded``: degrades before any split;
    ``Interconnected``: neither.
    """
    for s in statuses:
        if s not in STATUSES:
            raise UserError(f"status {s!r} is not one of {', '.join(STATUSES)}")
    split = next((i for i, s in enumerate(statuses) if s == "split"), None)
    degraded = next((i for i, s in enumerate(statuses) if s == "degraded"), None)
    if split is None:
        category = "Interconnected" if degraded is None else "Degraded"
    elif degraded is not None and degraded < split:
        category = "Degraded"
    else:
        category = "Separated" if degraded is None else "Separated-Degraded"
    return {"split_level": split, "degradation_level": degraded, "category": category}

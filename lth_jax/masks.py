"""Mask algebra over parameter pytrees.

A *mask* has exactly the structure of the params pytree: one boolean array per
leaf, of the leaf's shape, ``True`` where the weight is kept. Leaves that are not
prunable (biases, normalization parameters) carry an all-``True`` mask.

Which leaves are prunable is decided by a predicate ``prunable(path, leaf) -> bool``
where ``path`` is the tuple of string keys (``('Dense_0', 'kernel')``). ``None``
means :func:`default_prunable`: kernels of dense and conv layers, including the
first and the output layer; never biases, normalization scales/offsets or batch
statistics. :func:`prunable_rule` builds a predicate that excludes some paths.

Pruning is count-exact and deterministic. Global pruning ranks all prunable,
still-unpruned weights of all layers together by ``|w|`` and removes the smallest;
ties are broken by the position in the *pool* (the prunable leaves in jax's leaf
order, each flattened in C order): the lower index is pruned first. Selection runs
in numpy on the host (``np.partition``, linear time), so a ResNet-50-sized tree is
pruned in a fraction of a second.

Counts from fractions use Python's ``round`` (nearest integer, ties to even).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.errors import UserError
from lth_jax.pytree import named_leaves

Prunable = Callable[[tuple[str, ...], Any], bool]

__all__ = [
    "Prunable",
    "default_prunable",
    "prunable_rule",
    "prunable_paths",
    "check_mask",
    "init_mask",
    "apply_mask",
    "global_magnitude_prune",
    "layerwise_magnitude_prune",
    "random_mask",
    "count_remaining",
    "count_prunable",
    "sparsity_report",
    "format_sparsity_report",
    "mask_overlap",
]


# --------------------------------------------------------------------------- rules


def default_prunable(path: tuple[str, ...], leaf: Any) -> bool:
    """Kernels of dense and conv layers (a leaf named ``kernel`` with ndim >= 2).

    Works on parameter leaves and on mask leaves alike (it looks only at the name
    and the number of dimensions), so the same rule selects the same leaves of a
    params tree and of its mask.
    """
    return bool(path) and path[-1] == "kernel" and np.ndim(leaf) >= 2


def prunable_rule(exclude: Sequence[str] = (), base: Prunable | None = None) -> Prunable:
    """A prunable predicate: ``base`` (default rule when None) minus excluded paths.

    ``exclude`` holds regular expressions searched (``re.search``) in the
    '/'-joined path, e.g. ``prunable_rule(exclude=["^output/"])`` keeps the
    output layer of :class:`lth_jax.models.mlp.MLP` dense.
    """
    base = base or default_prunable
    if isinstance(exclude, str):
        exclude = [exclude]
    compiled = []
    for pattern in exclude:
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise UserError(f"exclude pattern {pattern!r} is not a valid regular expression: {e}") from None

    def rule(path: tuple[str, ...], leaf: Any) -> bool:
        if not base(path, leaf):
            return False
        name = "/".join(path)
        return not any(c.search(name) for c in compiled)

    rule.exclude = tuple(exclude)  # for error messages and configs
    return rule


def _rule(prunable: Prunable | None) -> Prunable:
    if prunable is None:
        return default_prunable
    if not callable(prunable):
        raise UserError(f"prunable must be None or a predicate (path, leaf) -> bool, got {prunable!r}")
    return prunable


def prunable_paths(tree: Any, prunable: Prunable | None = None) -> list[str]:
    """The '/'-joined paths of the prunable leaves of ``tree``, in pool order."""
    rule = _rule(prunable)
    return ["/".join(p) for p, leaf in named_leaves(tree)[0] if rule(p, leaf)]


def check_exclude_patterns(params: Any, exclude: Sequence[str]) -> None:
    """Raise ``UserError`` if an exclude pattern matches no prunable leaf (a typo)."""
    candidates = prunable_paths(params)
    for pattern in exclude:
        if not any(re.search(pattern, c) for c in candidates):
            raise UserError(
                f"exclude pattern {pattern!r} matches no prunable parameter; prunable paths are: "
                + ", ".join(candidates)
            )


# --------------------------------------------------------------------------- structure


def check_mask(params: Any, mask: Any) -> None:
    """Raise ``ValueError`` naming the first path where ``mask`` does not mirror ``params``."""
    p_leaves, p_def = named_leaves(params)
    m_leaves, m_def = named_leaves(mask)
    if p_def != m_def:
        p_paths = ["/".join(p) for p, _ in p_leaves]
        m_paths = ["/".join(p) for p, _ in m_leaves]
        only_p = [p for p in p_paths if p not in set(m_paths)]
        only_m = [p for p in m_paths if p not in set(p_paths)]
        if only_p:
            detail = f"path {only_p[0]!r} is in the params but not in the mask"
        elif only_m:
            detail = f"path {only_m[0]!r} is in the mask but not in the params"
        else:
            detail = f"params tree {p_def} vs mask tree {m_def}"
        raise ValueError(f"mask structure differs from the params: {detail}")
    for (path, p), (_, m) in zip(p_leaves, m_leaves):
        if np.shape(p) != np.shape(m):
            raise ValueError(
                f"mask leaf {'/'.join(path)!r} has shape {tuple(np.shape(m))}; "
                f"the params leaf has shape {tuple(np.shape(p))}"
            )


def init_mask(params: Any, prunable: Prunable | None = None) -> Any:
    """The dense mask: all ``True``, one boolean array per leaf of ``params``.

    ``prunable`` does not change the result (every leaf starts all-True: prunable
    leaves because nothing is pruned yet, the others by the mask contract); it is
    accepted so that every mask function takes the same arguments.
    """
    _rule(prunable)
    return jax.tree.map(lambda x: np.ones(np.shape(x), dtype=bool), params)  # host arrays: nothing to compile


def apply_mask(params: Any, mask: Any) -> Any:
    """``params ⊙ mask``: pruned positions become exactly zero (works inside jit;
    host arrays in, host arrays out)."""
    check_mask(params, mask)
    if all(isinstance(x, np.ndarray) for x in jax.tree.leaves((params, mask))):
        return jax.tree.map(lambda p, m: np.where(m, p, np.zeros((), p.dtype)), params, mask)
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros((), jnp.result_type(p))), params, mask)


# --------------------------------------------------------------------------- counting


def _pool(tree: Any, prunable: Prunable | None) -> list[int]:
    """Indices (in leaf order) of the prunable leaves of ``tree``."""
    rule = _rule(prunable)
    return [i for i, (path, leaf) in enumerate(named_leaves(tree)[0]) if rule(path, leaf)]


def count_remaining(mask: Any, prunable: Prunable | None = None) -> int:
    """Number of kept (``True``) entries over the prunable leaves of ``mask``."""
    leaves = jax.tree.leaves(mask)
    return int(sum(np.count_nonzero(np.asarray(leaves[i])) for i in _pool(mask, prunable)))


def count_prunable(tree: Any, prunable: Prunable | None = None) -> int:
    """Total number of entries in the prunable leaves (params or mask)."""
    leaves = jax.tree.leaves(tree)
    return int(sum(np.size(leaves[i]) for i in _pool(tree, prunable)))


def _resolve_count(count: int | None, fraction: float | None, remaining: int) -> int:
    if (count is None) == (fraction is None):
        raise UserError(f"give exactly one of count and fraction (got count={count!r}, fraction={fraction!r})")
    if fraction is not None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise UserError(f"fraction={fraction!r} is outside [0, 1]")
        return int(round(float(fraction) * remaining))
    if isinstance(count, bool) or int(count) != count:
        raise UserError(f"count={count!r} is not an integer")
    count = int(count)
    if count < 0:
        raise UserError(f"count={count} is negative")
    if count > remaining:
        raise UserError(f"count={count} exceeds the {remaining} unpruned prunable weights")
    return count


# --------------------------------------------------------------------------- pruning


def _smallest(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean selector of the ``k`` smallest scores; ties go to the lower index."""
    selected = np.zeros(scores.shape, dtype=bool)
    if k == 0:
        return selected
    kth = np.partition(scores, k - 1)[k - 1]
    np.less(scores, kth, out=selected)
    need = k - int(np.count_nonzero(selected))
    if need:
        selected[np.flatnonzero(scores == kth)[:need]] = True
    return selected


def _magnitudes_into(out: np.ndarray, p_leaf: Any, m_leaf: Any) -> np.ndarray:
    """Write ``|w|`` (pruned entries: +inf) of a leaf into the flat ``out``; return the flat mask."""
    w = np.asarray(p_leaf).reshape(-1)
    if w.dtype != out.dtype:
        w = w.astype(out.dtype)
    np.abs(w, out=out)
    m = np.asarray(m_leaf, dtype=bool).reshape(-1)
    np.copyto(out, np.inf, where=~m)
    return m


def _check_finite_order(scores: np.ndarray, paths: list[tuple[str, ...]], sizes: list[int]) -> None:
    """Raise if a score is NaN (one reduction; the leaf is searched only on error)."""
    if not np.isnan(scores.sum()):
        return
    offsets = np.cumsum([0] + sizes)
    for path, lo, hi in zip(paths, offsets[:-1], offsets[1:]):
        if np.isnan(scores[lo:hi]).any():
            raise UserError(
                f"params leaf {'/'.join(path)!r} holds NaN at unpruned positions; cannot rank by magnitude "
                "(did training diverge?)"
            )


def _score_pool(p_named, m_leaves, pool) -> tuple[np.ndarray, list[np.ndarray]]:
    """All pool magnitudes in one flat array (pool order) and the flat masks."""
    sizes = [int(np.size(m_leaves[i])) for i in pool]
    dtype = np.float64 if any(np.asarray(p_named[i][1]).dtype == np.float64 for i in pool) else np.float32
    scores = np.empty(sum(sizes), dtype)
    flat_masks, offset = [], 0
    for i, size in zip(pool, sizes):
        flat_masks.append(_magnitudes_into(scores[offset : offset + size], p_named[i][1], m_leaves[i]))
        offset += size
    _check_finite_order(scores, [p_named[i][0] for i in pool], sizes)
    return scores, flat_masks


def _pruning_inputs(params: Any, mask: Any, prunable: Prunable | None):
    """Checked ``(named param leaves, treedef, mask leaves, pool indices)``."""
    check_mask(params, mask)
    p_named, treedef = named_leaves(params)
    pool = _pool(params, prunable)
    if not pool:
        raise UserError("no prunable parameters (the prunable rule selects no leaf)")
    return p_named, treedef, jax.tree.leaves(mask), pool


def global_magnitude_prune(
    params: Any,
    mask: Any,
    *,
    count: int | None = None,
    fraction: float | None = None,
    prunable: Prunable | None = None,
) -> Any:
    """Remove the ``count`` (or ``round(fraction × remaining)``) smallest-``|w|``
    unpruned prunable weights, ranked globally over all prunable leaves.

    The result is nested in ``mask`` (pruned weights stay pruned) and has exactly
    ``count_remaining(mask) - count`` kept prunable weights. Ties are broken
    deterministically: the lower index in the path-ordered pool is pruned first.
    """
    p_named, treedef, m_leaves, pool = _pruning_inputs(params, mask, prunable)
    remaining = sum(int(np.count_nonzero(np.asarray(m_leaves[i]))) for i in pool)
    k = _resolve_count(count, fraction, remaining)
    if k == 0:
        return mask
    scores, flat_masks = _score_pool(p_named, m_leaves, pool)
    selected = _smallest(scores, k)
    new_leaves = list(m_leaves)
    offset = 0
    for i, m in zip(pool, flat_masks):
        chosen = selected[offset : offset + m.size]
        offset += m.size
        new_leaves[i] = (m & ~chosen).reshape(np.shape(m_leaves[i]))
    return jax.tree.unflatten(treedef, new_leaves)


def layerwise_magnitude_prune(
    params: Any, mask: Any, *, fraction: float, prunable: Prunable | None = None
) -> Any:
    """Remove ``round(fraction × remaining_in_leaf)`` smallest-``|w|`` weights from
    every prunable leaf separately (ties: lower flat index first)."""
    p_named, treedef, m_leaves, pool = _pruning_inputs(params, mask, prunable)
    new_leaves = list(m_leaves)
    for i in pool:
        scores, (m,) = _score_pool(p_named, m_leaves, [i])
        k = _resolve_count(None, fraction, int(np.count_nonzero(m)))
        if k:
            new_leaves[i] = jnp.asarray((m & ~_smallest(scores, k)).reshape(np.shape(m_leaves[i])))
    return jax.tree.unflatten(treedef, new_leaves)


def random_mask(mask: Any, key: jax.Array, *, scope: str = "layer", prunable: Prunable | None = None) -> Any:
    """A random mask with the sparsity of ``mask``.

    ``scope="layer"`` permutes each prunable leaf's mask within the leaf (every
    layer keeps its count of kept weights: the random-ticket default);
    ``scope="global"`` permutes all prunable entries together (only the total is
    kept). Leaves the rule does not select are returned unchanged.

    In layer scope the permutation of a leaf is drawn with ``fold_in(key, n)``,
    ``n`` its index among the kernels of the tree (and any other leaf the rule
    selects), so keeping some layers dense does not change the others' draws.
    """
    if scope not in ("layer", "global"):
        raise UserError(f"scope={scope!r} is not one of 'layer', 'global'")
    rule = _rule(prunable)
    named, treedef = named_leaves(mask)
    leaves = [leaf for _, leaf in named]
    pool = [i for i, (path, leaf) in enumerate(named) if rule(path, leaf)]
    if not pool:
        raise UserError("no prunable parameters (the prunable rule selects no leaf)")
    new_leaves = list(leaves)
    if scope == "layer":
        in_pool = set(pool)
        indexed = [i for i, (path, leaf) in enumerate(named) if i in in_pool or default_prunable(path, leaf)]
        for n, i in enumerate(indexed):
            if i in in_pool:
                flat = jnp.ravel(jnp.asarray(leaves[i], dtype=bool))
                new_leaves[i] = jax.random.permutation(jax.random.fold_in(key, n), flat).reshape(jnp.shape(leaves[i]))
    else:
        flat = jnp.concatenate([jnp.ravel(jnp.asarray(leaves[i], dtype=bool)) for i in pool])
        flat = jax.random.permutation(key, flat)
        offset = 0
        for i in pool:
            size = int(np.size(leaves[i]))
            new_leaves[i] = flat[offset : offset + size].reshape(jnp.shape(leaves[i]))
            offset += size
    return jax.tree.unflatten(treedef, new_leaves)


# --------------------------------------------------------------------------- reports


def sparsity_report(mask: Any, prunable: Prunable | None = None) -> dict:
    """Per prunable layer: path, shape, total, remaining, fraction_remaining; and totals."""
    named, _ = named_leaves(mask)
    layers = []
    for i in _pool(mask, prunable):
        path, leaf = named[i]
        total = int(np.size(leaf))
        remaining = int(np.count_nonzero(np.asarray(leaf)))
        layers.append(
            {
                "path": "/".join(path),
                "shape": list(np.shape(leaf)),
                "total": total,
                "remaining": remaining,
                "fraction_remaining": remaining / total if total else 1.0,
            }
        )
    total = sum(layer["total"] for layer in layers)
    remaining = sum(layer["remaining"] for layer in layers)
    return {
        "layers": layers,
        "total": total,
        "remaining": remaining,
        "fraction_remaining": remaining / total if total else 1.0,
    }


def format_sparsity_report(report: dict) -> str:
    """A fixed-width text table of :func:`sparsity_report`."""
    width = max([len("layer")] + [len(layer["path"]) for layer in report["layers"]])
    lines = [f"{'layer':<{width}}  {'shape':>18}  {'remaining':>11}  {'total':>11}  {'kept %':>7}"]
    rows = report["layers"] + [
        {"path": "all prunable", "shape": [], **{k: report[k] for k in ("total", "remaining", "fraction_remaining")}}
    ]
    for layer in rows:
        shape = "x".join(str(s) for s in layer["shape"])
        lines.append(
            f"{layer['path']:<{width}}  {shape:>18}  {layer['remaining']:>11d}  {layer['total']:>11d}  "
            f"{100 * layer['fraction_remaining']:>6.2f}%"
        )
    return "\n".join(lines)


def mask_overlap(mask_a: Any, mask_b: Any, prunable: Prunable | None = None) -> dict:
    """Intersection over union of the kept weights of two masks, per prunable layer
    and overall. A layer where both masks keep nothing has IoU 1 (identical)."""
    check_mask(mask_a, mask_b)
    named_a, _ = named_leaves(mask_a)
    leaves_b = jax.tree.leaves(mask_b)
    layers = []
    for i in _pool(mask_a, prunable):
        a = np.asarray(named_a[i][1], dtype=bool)
        b = np.asarray(leaves_b[i], dtype=bool)
        inter = int(np.count_nonzero(a & b))
        union = int(np.count_nonzero(a | b))
        layers.append(
            {"path": "/".join(named_a[i][0]), "intersection": inter, "union": union, "iou": inter / union if union else 1.0}
        )
    inter = sum(layer["intersection"] for layer in layers)
    union = sum(layer["union"] for layer in layers)
    return {"layers": layers, "intersection": inter, "union": union, "iou": inter / union if union else 1.0}

"""Small helpers for naming the leaves of parameter pytrees."""

from __future__ import annotations

from typing import Any

import jax


def path_names(path) -> tuple[str, ...]:
    """A jax key path as a tuple of strings: ``(DictKey('Dense_0'), DictKey('kernel'))``
    becomes ``('Dense_0', 'kernel')``; sequence indices become their decimal string."""
    names = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                names.append(str(getattr(entry, attr)))
                break
        else:
            names.append(str(entry))
    return tuple(names)


def named_leaves(tree: Any) -> tuple[list[tuple[tuple[str, ...], Any]], Any]:
    """Flattened ``[(names, leaf), ...]`` in jax's canonical leaf order, and the treedef."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(path_names(p), leaf) for p, leaf in pairs], treedef

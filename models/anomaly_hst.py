"""River's Half-Space Trees as arrays: many keys' samples scored and learned at once.

River grows the trees (its seeded random splits, :func:`river.tree.padded.make_padded_tree`)
and defines the persisted state (:func:`models.anomaly_fitted.hst_state`); this module holds
the same trees as arrays, and writes that state from them, so that a batch of samples of
many keys is walked by a few numpy operations instead of one Python walk per sample, tree
and key, and a key's trees are a few arrays rather than a thousand Python objects. Scores
and masses equal River's ``score_one``/``learn_one`` exactly: the masses are integers and
a score is an integer sum divided once, as River does.

A tree is complete to ``height`` (River pads it); node ``i``'s children are ``2i + 1`` and
``2i + 2`` (breadth first). A sample goes left where its value is below the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from river.anomaly import HalfSpaceTrees

from .anomaly_fitted import HstShape, _hst_nodes, hst_fingerprint, pack_hst_state


@dataclass(slots=True)
class CompiledHST:
    """One key's Half-Space Trees: splits, masses (trees x nodes) and window position.

    It keeps no River objects: a key's trees as River nodes were about 1,270 Python
    objects that every full garbage collection of the worker walked (200 keys: 254,000),
    and 86 KB. Its checkpoint (:meth:`state`) is the bytes River's model would give.
    """

    shape: HstShape
    feature: np.ndarray
    threshold: np.ndarray
    l_mass: np.ndarray
    r_mass: np.ndarray
    counter: int
    first_window: bool
    dfs: np.ndarray
    """Per tree and breadth-first node, its position in River's node order."""

    @property
    def window_size(self) -> int:
        return self.shape.window_size

    @property
    def max_score(self) -> int:
        """River's ``_max_score``: the largest potential anomaly score."""
        s = self.shape
        return s.n_trees * s.window_size * (2 ** (s.height + 1) - 1)

    @classmethod
    def grow(cls, model: HalfSpaceTrees, names: Sequence[str]) -> CompiledHST:
        """The trees of a fresh ``model`` grown on features ``names`` (columns in that
        order), with nothing learned."""
        if not model.trees:
            model.learn_one(dict.fromkeys(names, 0.0))
            for node in _hst_nodes(model):
                node.l_mass = node.r_mass = 0
            model.counter = 0
        return cls.of(model, names)

    @classmethod
    def of(cls, model: HalfSpaceTrees, names: Sequence[str]) -> CompiledHST:
        """The arrays of a River model whose trees are grown (its masses included); the
        model is not kept."""
        height = model.height
        inner, total = 2**height - 1, 2 ** (height + 1) - 1
        trees = len(model.trees)
        feature = np.zeros((trees, inner), dtype=np.int64)
        threshold = np.zeros((trees, inner))
        l_mass = np.zeros((trees, total), dtype=np.int64)
        r_mass = np.zeros((trees, total), dtype=np.int64)
        dfs = np.zeros((trees, total), dtype=np.int64)
        column = {name: k for k, name in enumerate(names)}
        offset = 0
        for t, (root, nodes) in enumerate(zip(model.trees, model._tree_nodes, strict=True)):
            where = {id(node): i for i, node in enumerate(nodes)}
            queue = [(root, 0)]
            for node, i in queue:
                dfs[t, i] = offset + where[id(node)]
                l_mass[t, i], r_mass[t, i] = node.l_mass, node.r_mass
                if i < inner:
                    feature[t, i] = column[node.feature]
                    threshold[t, i] = node.threshold
                    queue += [(node.children[0], 2 * i + 1), (node.children[1], 2 * i + 2)]
            if len(queue) != total:
                msg = f"Half-Space Tree {t} is not complete to height {height}"
                raise ValueError(msg)
            offset += len(nodes)
        shape = HstShape(model.n_trees, height, model.window_size, hst_fingerprint(model))
        return cls(
            shape, feature, threshold, l_mass, r_mass, model.counter, model._first_window, dfs
        )

    def state(self) -> bytes:
        """The checkpoint: :func:`models.anomaly_fitted.hst_state` of the River model
        these trees came from, with this state's masses and window position."""
        masses = np.zeros((self.dfs.size, 2), dtype=np.int64)
        order = self.dfs.ravel()
        masses[order, 0] = self.l_mass.ravel()
        masses[order, 1] = self.r_mass.ravel()
        return pack_hst_state(self.shape, self.counter, self.first_window, masses)


def score_and_learn(
    hsts: Sequence[CompiledHST], x: np.ndarray, key_of_row: np.ndarray
) -> np.ndarray:
    """Each row's score before it is learned (River's ``score_one`` then ``learn_one``),
    rows of one key in order; ``key_of_row`` indexes ``hsts``. Updates the trees."""
    n = len(x)
    out = np.zeros(n)
    if not n:
        return out
    first = hsts[0]
    trees, inner = first.feature.shape
    height = int(np.log2(inner + 1))
    window = first.window_size
    limit = 0.1 * window
    max_score = first.max_score
    feature = np.stack([h.feature for h in hsts])
    threshold = np.stack([h.threshold for h in hsts])
    l_mass = np.stack([h.l_mass for h in hsts])
    r_mass = np.stack([h.r_mass for h in hsts])
    first_window = np.array([h.first_window for h in hsts])
    counter = np.array([h.counter for h in hsts], dtype=np.int64)
    rows_of = np.bincount(key_of_row, minlength=len(hsts))
    # a row's place in its key's run (rows of a key are contiguous and in order)
    starts = np.r_[0, np.cumsum(rows_of)[:-1]]
    j = np.arange(n) - starts[key_of_row]
    segment = (counter[key_of_row] + j) // window
    kk = key_of_row[:, None]
    tt = np.arange(trees)[None, :]
    path = np.zeros((n, trees, height + 1), dtype=np.int64)
    node = np.zeros((n, trees), dtype=np.int64)
    rows = np.arange(n)[:, None]
    for level in range(height):
        path[:, :, level] = node
        value = x[rows, feature[kk, tt, node]]
        node = 2 * node + 1 + (value >= threshold[kk, tt, node])
    path[:, :, height] = node
    weight = 2 ** np.arange(height + 1, dtype=np.int64)
    kk3, tt3 = kk[:, :, None], tt[:, :, None]
    for s in range(int(segment.max()) + 1):
        now = np.flatnonzero(segment == s)
        if len(now):
            r = r_mass[kk3[now], tt3, path[now]]
            # River stops a walk after the first node lighter than the limit
            reached = np.cumprod(
                np.concatenate([np.ones_like(r[..., :1]), r[..., :-1] >= limit], axis=-1), axis=-1
            )
            total = (r * weight * reached).sum(axis=(1, 2))
            score = 1.0 - total.astype(np.float64) / max_score
            out[now] = np.where(first_window[key_of_row[now]], 0.0, score)
            np.add.at(l_mass, (kk3[now], tt3, path[now]), 1)
        pivot = counter + rows_of >= (s + 1) * window
        pivot &= counter + rows_of > s * window  # the key has rows in this segment
        if pivot.any():
            r_mass[pivot] = l_mass[pivot]
            l_mass[pivot] = 0
            first_window[pivot] = False
    counter = (counter + rows_of) % window
    for k, h in enumerate(hsts):
        if rows_of[k]:
            h.l_mass, h.r_mass = l_mass[k], r_mass[k]
            h.counter, h.first_window = int(counter[k]), bool(first_window[k])
    return out

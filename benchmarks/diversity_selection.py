"""Diversity selection at scale: alkit's CoreSet and BADGE, time and peak memory, 10k -> 100k pool samples.

BADGE as usually written builds the ``N x C*d`` gradient-embedding matrix and runs k-means++ on it; alkit computes
the same distances in factorised form (``alkit.active.diversity``), so its memory is ``O(N (C + d))``. Side by side,
on the same synthetic embeddings and probabilities:

* alkit ``BADGE`` and ``CoreSet`` (``B`` picks, labelled centres for CoreSet) at each pool size;
* the materialised way for BADGE: ``g = (p - onehot) (x) h`` as a float32 matrix, then the same D^2 sampling on it
  (at the sizes where it fits, ``--explicit-max``).

Peak memory is measured with ``tracemalloc`` (NumPy reports its allocations to it), the inputs excluded. The printed
ratios: alkit's 10k -> 100k growth (linear in N means about 10x), and materialised / alkit.

Run: ``python benchmarks/diversity_selection.py`` (under a minute on 2 CPU cores); ``--help`` for the knobs.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from functools import partial

import numpy as np

from alkit.active.diversity import _badge_select, k_center_greedy


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """Seconds and peak traced MiB of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn()
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak / 2**20


def materialised_badge(probabilities: np.ndarray, embeddings: np.ndarray, count: int, seed: int) -> list[int]:
    """BADGE the usual way: the N x C*d gradient embeddings in memory, then k-means++ (D^2) seeding on them."""
    factors = probabilities.copy()
    factors[np.arange(len(factors)), probabilities.argmax(axis=1)] -= 1.0
    gradients = (factors[:, :, None] * embeddings[:, None, :]).reshape(len(factors), -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    norms = np.einsum("ij,ij->i", gradients, gradients)
    picks = [int(np.argmax(norms))]
    nearest = np.maximum(norms + norms[picks[0]] - 2.0 * (gradients @ gradients[picks[0]]), 0.0)
    while len(picks) < count:
        weights = nearest.astype(np.float64)
        weights[picks] = 0.0
        pick = int(rng.choice(len(weights), p=weights / weights.sum()))
        picks.append(pick)
        nearest = np.minimum(nearest, np.maximum(norms + norms[pick] - 2.0 * (gradients @ gradients[pick]), 0.0))
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=256, help="embedding size d")
    parser.add_argument("--classes", type=int, default=10, help="number of classes C")
    parser.add_argument("--picks", type=int, default=100, help="samples selected, B")
    parser.add_argument("--labelled", type=int, default=100, help="labelled samples (CoreSet's initial centres)")
    parser.add_argument("--explicit-max", type=int, default=10_000, help="largest N for the materialised BADGE")
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        rng = np.random.default_rng(0)
        embeddings = rng.normal(size=(n, args.dim))
        logits = rng.normal(size=(n, args.classes)) * 2
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        labelled = rng.normal(size=(args.labelled, args.dim))
        badge = measure(partial(_badge_select, probabilities, embeddings, args.picks, np.random.default_rng(0)))
        coreset = measure(partial(k_center_greedy, embeddings, labelled, args.picks))
        explicit = (
            measure(partial(materialised_badge, probabilities, embeddings, args.picks, 0))
            if n <= args.explicit_max
            else None
        )
        rows.append((n, badge, coreset, explicit))

    print(f"d={args.dim} C={args.classes} B={args.picks}; time in s, peak traced memory in MiB (inputs excluded)")
    print(f"{'N':>8} {'alkit BADGE':>22} {'materialised BADGE':>22} {'alkit CoreSet':>22} {'BADGE mat./alkit':>18}")
    for n, badge, coreset, explicit in rows:
        explicit_text = f"{explicit[0]:8.2f} s {explicit[1]:8.1f} MiB" if explicit else f"{'(skipped)':>22}"
        ratio = f"{explicit[0] / badge[0]:5.1f}x t {explicit[1] / badge[1]:6.1f}x m" if explicit else ""
        print(
            f"{n:>8} {badge[0]:8.2f} s {badge[1]:8.1f} MiB {explicit_text} "
            f"{coreset[0]:8.2f} s {coreset[1]:8.1f} MiB {ratio:>18}"
        )
    if len(rows) >= 2:
        (n0, b0, c0, _), (n1, b1, c1, _) = rows[0], rows[-1]
        print(
            f"growth {n0} -> {n1} ({n1 / n0:.0f}x samples): BADGE memory {b1[1] / b0[1]:.1f}x, time "
            f"{b1[0] / b0[0]:.1f}x; CoreSet memory {c1[1] / c0[1]:.1f}x, time {c1[0] / c0[0]:.1f}x"
        )


if __name__ == "__main__":
    main()

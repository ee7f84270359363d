"""Diversity selection at scale: alkit's CoreSet and BADGE against scikit-activeml's, time and peak memory.

BADGE as usually written builds the ``N x C*d`` gradient-embedding matrix and runs k-means++ on it; alkit computes
the same distances in factorised form (``alkit.active.diversity``), so its memory is ``O(N (C + d))``. Side by side,
in one run, on the same synthetic float32 embeddings and probabilities (the same seed in every process):

* alkit ``BADGE`` and ``CoreSet`` (``B`` picks; ``L`` labelled samples as CoreSet's initial centres);
* scikit-activeml's ``skactiveml.pool.Badge`` and ``skactiveml.pool.CoreSet`` on the same arrays, asked for the same
  ``B`` (Badge gets the probabilities and embeddings through a classifier that returns them, ``fit_clf=False``);
  these columns run when ``skactiveml`` is importable and are skipped, with the reason printed, otherwise
  (alkit does not depend on it; install it beside alkit in a separate environment to compare);
* the materialised way for BADGE written with NumPy: ``g = (p - onehot) (x) h`` as a float32 matrix, then the same
  D^2 sampling on it (at the sizes where it fits, ``--explicit-max``).

Each measurement runs in a fresh process: wall seconds of the selection call, and its peak memory as the peak-RSS
increase over the RSS once the inputs exist (Linux ``VmHWM`` reset via ``/proc/self/clear_refs``; ``ru_maxrss``
elsewhere, which includes the inputs). A process that runs past ``--timeout`` is stopped and reported as such; one
killed by the system (out of memory) is reported with its signal. The printed ratios: alkit / scikit-activeml speed
at the largest N, and each method's memory growth from the smallest to the largest N (linear in N means ``10x`` for
10k -> 100k). The defining properties both implementations must share are checked on the picks: CoreSet's first pick
is the pool sample farthest from the labelled set (and, without ties, the whole greedy batch is the same); BADGE's
first pick is the sample with the largest gradient-embedding norm.

Run: ``python benchmarks/diversity_selection.py`` (alkit alone: under a minute on 2 CPU cores; with
scikit-activeml several minutes, its BADGE at 100k holding an ``N x C*d`` float64 matrix, 2 GB at d=256);
``--help`` for the knobs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peak_memory import PeakRSS  # noqa: E402

ALKIT = ("alkit CoreSet", "alkit BADGE")
SKACTIVEML = ("skactiveml CoreSet", "skactiveml Badge")
MATERIALISED = "materialised BADGE"


def skactiveml_missing() -> str | None:
    """Why the scikit-activeml columns cannot run here, or None when they can."""
    try:
        import skactiveml  # noqa: F401
        from skactiveml.pool import Badge, CoreSet  # noqa: F401
    except Exception as error:  # not installed, or an incompatible version
        return f"{type(error).__name__}: {error}"
    return None


def make_inputs(n: int, dim: int, classes: int, labelled: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The same pool in every process: float32 embeddings (what ``compute_embeddings`` returns), probabilities."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, dim)).astype(np.float32)
    logits = rng.normal(size=(n, classes)) * 2
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return {
        "embeddings": embeddings,
        "probabilities": probabilities,
        "labelled": rng.normal(size=(labelled, dim)).astype(np.float32),
    }


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


def selection_call(method: str, inputs: dict[str, np.ndarray], picks: int) -> Callable[[], list[int]]:
    """The call that is timed, the inputs already in the form each library takes; it returns pool positions."""
    embeddings, probabilities, labelled = inputs["embeddings"], inputs["probabilities"], inputs["labelled"]
    if method == "alkit CoreSet":
        from alkit.active.diversity import k_center_greedy

        return lambda: k_center_greedy(embeddings, labelled, picks).positions.tolist()
    if method == "alkit BADGE":
        from alkit.active.diversity import _badge_select

        return lambda: _badge_select(probabilities, embeddings, picks, np.random.default_rng(0)).positions.tolist()
    if method == MATERIALISED:
        return lambda: materialised_badge(probabilities, embeddings, picks, 0)
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge, CoreSet
    from skactiveml.utils import MISSING_LABEL

    if method == "skactiveml CoreSet":
        # scikit-activeml takes one X holding labelled and unlabelled samples, the latter marked MISSING_LABEL in y
        everything = np.concatenate([labelled, embeddings])
        targets = np.concatenate([np.zeros(len(labelled)), np.full(len(embeddings), MISSING_LABEL)])
        strategy = CoreSet(random_state=0)
        offset = len(labelled)
        return lambda: [int(i) - offset for i in strategy.query(everything, targets, batch_size=picks)]

    class GivenOutputs(SkactivemlClassifier):
        """Returns the pool's probabilities and embeddings as they are: Badge then sees what alkit's BADGE sees."""

        def __init__(self, outputs=None, classes=None, missing_label=MISSING_LABEL):
            super().__init__(classes=classes, missing_label=missing_label)
            self.outputs = outputs

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X):
            if len(X) != len(self.outputs):
                raise ValueError(f"{len(X)} samples asked for, {len(self.outputs)} probability rows held")
            return self.outputs, X

    classifier = GivenOutputs(probabilities, classes=np.arange(probabilities.shape[1]))
    targets = np.full(len(embeddings), MISSING_LABEL)
    strategy = Badge(random_state=0)
    return lambda: [int(i) for i in strategy.query(embeddings, targets, classifier, fit_clf=False, batch_size=picks)]


def child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    method, n = args.child, args.child_n
    small = make_inputs(64, args.dim, args.classes, 4, seed=1)
    selection_call(method, small, 4)()  # warm-up: imports, lazy allocations, BLAS threads
    inputs = make_inputs(n, args.dim, args.classes, args.labelled)
    call = selection_call(method, inputs, args.picks)
    with PeakRSS() as peak:
        start = time.perf_counter()
        picks = call()
        seconds = time.perf_counter() - start
    peak_mib = peak.increase_mib
    extra = {}
    if method.endswith("CoreSet"):  # the farthest pool sample from the labelled set, for the property check
        embeddings, labelled = inputs["embeddings"].astype(np.float64), inputs["labelled"].astype(np.float64)
        squared = np.einsum("ij,ij->i", embeddings, embeddings)[:, None] + np.einsum("ij,ij->i", labelled, labelled)
        extra["farthest"] = int(np.argmax((squared - 2.0 * embeddings @ labelled.T).min(axis=1)))
    else:
        factors = inputs["probabilities"].copy()
        factors[np.arange(n), factors.argmax(axis=1)] -= 1.0
        norms = np.einsum("ij,ij->i", factors, factors) * np.einsum(
            "ij,ij->i", inputs["embeddings"].astype(np.float64), inputs["embeddings"].astype(np.float64)
        )
        extra["largest_norm"] = int(np.argmax(norms))
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "exact_peak": peak.exact, "picks": picks, **extra}))


def measure(args: argparse.Namespace, method: str, n: int) -> dict:
    """Run one measurement in a fresh process; a failure is returned as ``{"failed": reason}``."""
    command = [sys.executable, os.path.abspath(__file__), "--child", method, "--child-n", str(n)]
    command += ["--dim", str(args.dim), "--classes", str(args.classes), "--picks", str(args.picks)]
    command += ["--labelled", str(args.labelled)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"did not finish in {args.timeout:.0f} s"}
    if done.returncode != 0:
        if done.returncode < 0:
            return {"failed": f"killed by signal {-done.returncode} (9: out of memory?)"}
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"failed": f"exit {done.returncode}: {last[:80]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(result: dict | None) -> str:
    if result is None:
        return f"{'(not run)':>22}"
    if "failed" in result:
        return f"{result['failed']:>22}"
    return f"{result['seconds']:8.2f} s {result['peak_mib']:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=256, help="embedding size d")
    parser.add_argument("--classes", type=int, default=10, help="number of classes C")
    parser.add_argument("--picks", type=int, default=100, help="samples selected, B")
    parser.add_argument("--labelled", type=int, default=100, help="labelled samples (CoreSet's initial centres)")
    parser.add_argument("--explicit-max", type=int, default=10_000, help="largest N for the materialised BADGE")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a measurement is stopped")
    parser.add_argument("--no-skactiveml", action="store_true", help="skip the scikit-activeml columns")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    reason = "--no-skactiveml" if args.no_skactiveml else skactiveml_missing()
    methods = list(ALKIT) + ([] if reason else list(SKACTIVEML)) + [MATERIALISED]
    if reason:
        print(f"scikit-activeml columns skipped: {reason}")
    results: dict[tuple[str, int], dict] = {}
    for n in args.sizes:
        for method in methods:
            if method == MATERIALISED and n > args.explicit_max:
                continue
            results[(method, n)] = measure(args, method, n)

    print(
        f"\nd={args.dim} C={args.classes} B={args.picks} L={args.labelled}; wall seconds of the selection call and "
        "its peak-RSS increase (MiB, inputs excluded), each in a fresh process"
    )
    header = [*ALKIT, *SKACTIVEML, MATERIALISED]
    print(f"{'N':>8} " + " ".join(f"{name:>22}" for name in header))
    for n in args.sizes:
        print(f"{n:>8} " + " ".join(_cell(results.get((name, n))) for name in header))

    def ok(method: str, n: int) -> dict | None:
        result = results.get((method, n))
        return result if result is not None and "failed" not in result else None

    low, high = min(args.sizes), max(args.sizes)
    if low != high:
        print(
            f"\nmemory growth {low} -> {high} ({high / low:.0f}x samples; linear in N = {high / low:.0f}x, less where "
            "a fixed part dominates; the bytes per added sample are the O(N) part):"
        )
        for method in header:
            a, b = ok(method, low), ok(method, high)
            if a and b:
                print(
                    f"  {method:<20} memory {b['peak_mib'] / max(a['peak_mib'], 1e-9):6.1f}x, "
                    f"time {b['seconds'] / a['seconds']:6.1f}x; memory per added pool sample "
                    f"{(b['peak_mib'] - a['peak_mib']) * 2**20 / (high - low):9.0f} bytes"
                )
    if not reason:
        for ours, theirs in zip(ALKIT, SKACTIVEML):
            for n in args.sizes:
                a, b = ok(ours, n), results.get((theirs, n))
                if a is None:
                    continue
                if b is None or "failed" in b:
                    print(f"{ours} vs {theirs} at N={n}: {theirs} {b['failed'] if b else 'not run'}")
                    continue
                print(
                    f"{ours} vs {theirs} at N={n}: alkit {b['seconds'] / a['seconds']:.1f}x faster, "
                    f"peak memory skactiveml / alkit {b['peak_mib'] / max(a['peak_mib'], 1e-9):.1f}x"
                    + ("  (target at the largest N: >= 5x faster)" if n == high else "")
                )
        print("\ndefining properties, checked on the picks:")
        for n in args.sizes:
            a, b = ok("alkit CoreSet", n), ok("skactiveml CoreSet", n)
            if a and b:
                same = sum(x == y for x, y in zip(a["picks"], b["picks"]))
                agree = "agree" if a["picks"][0] == b["picks"][0] == a["farthest"] else "DIFFER"
                print(
                    f"  CoreSet N={n}: first pick alkit {a['picks'][0]}, skactiveml {b['picks'][0]}, farthest "
                    f"from the labelled set {a['farthest']} -> {agree}; same greedy pick at {same}/"
                    f"{len(a['picks'])} positions"
                )
            a, b = ok("alkit BADGE", n), ok("skactiveml Badge", n)
            if a and b:
                first = a["picks"][0] == b["picks"][0] == a["largest_norm"]
                print(
                    f"  BADGE   N={n}: first pick alkit {a['picks'][0]}, skactiveml {b['picks'][0]}, largest "
                    f"gradient-embedding norm {a['largest_norm']} -> {'agree' if first else 'DIFFER'} (later picks "
                    "are D^2 draws from different generators)"
                )


if __name__ == "__main__":
    main()

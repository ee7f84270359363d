"""Pool scoring cost: alkit's MC-dropout scorer against the straightforward way, side by side.

Two measurements. Flash's scoring re-ran the whole frozen backbone for each of the I MC iterations, so its cost
grew linearly with I (about 0.75 s + 4.6 s x I per round for 239 images, ResNet-18 at 196 px, 2 threads):

1. **Time**, frozen-backbone image classifier (alkit's ``ImageClassifier``: torchvision ResNet-18 + dropout/linear
   head, the demo's ``strategy="freeze"`` shape), synthetic images, for I in {2, 20} MC iterations:
   * alkit ``score_pool`` (backbone once per batch, head I times on replicated features, BALD streamed);
   * the straightforward way, as Flash and BaaL do it: BaaL's ``ModelWrapper.predict_on_dataset`` on the
     ``patch_module``-ed model (I full forward passes per sample), then BALD on the ``[N, C, I]`` array;
   * one deterministic forward pass over the pool (the yardstick; target: alkit at I=20 <= 1.5x of it).
2. **Peak memory** for a large synthetic pool (>= 200k samples, tiny feature model), I=2 vs I=20, each measured in
   a fresh subprocess as the peak-RSS increase during scoring (Linux ``VmHWM`` reset via ``/proc/self/clear_refs``;
   ``ru_maxrss`` elsewhere). Target: alkit's peak does not grow with I for per-sample heuristics.

Run: ``python benchmarks/pool_scoring.py`` (about a minute on 2 CPU cores); ``--help`` for the knobs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from baal.active.heuristics import BALD
from baal.bayesian.dropout import patch_module
from baal.modelwrapper import ModelWrapper, TrainingArgs
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.active.scoring import mc_dropout, score_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peak_memory import PeakRSS  # noqa: E402


def _quiet_baal_logs() -> None:
    try:
        import logging

        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except Exception:  # structlog is BaaL's logger; silencing it is cosmetic
        pass


# ----------------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------------
def image_classifier() -> nn.Module:
    from alkit.vision import ImageClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ImageClassifier(backbone="resnet18", pretrained=False, num_classes=2, dropout=0.1)
    for parameter in model.backbone.parameters():  # strategy="freeze"
        parameter.requires_grad = False
    return model.eval()


class TinyFeatureModel(nn.Module):
    """A frozen feature layer and a dropout head: cheap enough to score 200k samples in seconds."""

    def __init__(self, features: int = 32, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


# ----------------------------------------------------------------------------------------------------------------
# the three ways of scoring
# ----------------------------------------------------------------------------------------------------------------
def deterministic_pass(model: nn.Module, loader: DataLoader) -> None:
    with torch.no_grad(), mc_dropout(model, enabled=False):
        for x, _ in loader:
            torch.softmax(model(x), dim=1)


def alkit_scores(model: nn.Module, loader: DataLoader, iterations: int, masks: str = "fast") -> np.ndarray:
    return score_pool(model, loader, BALD(), mc_iterations=iterations, dropout_masks=masks).scores


def straightforward_scores(model: nn.Module, dataset: TensorDataset, batch_size: int, iterations: int) -> np.ndarray:
    """BaaL's documented recipe: patch dropout to stay on, predict I times per sample, BALD on [N, C, I]."""
    wrapper = ModelWrapper(
        patch_module(copy.deepcopy(model)),
        TrainingArgs(batch_size=batch_size, use_cuda=False, workers=0, replicate_in_memory=False),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = wrapper.predict_on_dataset(dataset, iterations=iterations, verbose=False)
    probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    return BALD().get_uncertainties(probabilities)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds over ``repeats`` runs.

    CPU time (all threads of this process) is reported beside wall time because on a shared 2-core machine other
    processes stretch wall time by bursts; the CPU time a method needs is what it costs.
    """
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def time_comparison(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = image_classifier()
    images = torch.randn(args.pool, 3, args.image_size, args.image_size)
    dataset = TensorDataset(images, torch.zeros(args.pool, dtype=torch.long))
    loader = DataLoader(dataset, batch_size=args.batch_size)
    deterministic_pass(model, loader)  # warm-up (allocator, kernels)

    # interleaved repeats (best of each), so that load from other processes hits every method alike
    inf = (float("inf"), float("inf"))
    base, ours = inf, dict.fromkeys(args.iterations, inf)
    naive = dict.fromkeys(args.iterations, inf)
    for repeat in range(args.repeats):
        base = tuple(map(min, base, timed(lambda: deterministic_pass(model, loader), 1)))
        for i in args.iterations:
            ours[i] = tuple(map(min, ours[i], timed(partial(alkit_scores, model, loader, i), 1)))
            if repeat == 0 or i == min(args.iterations):  # the slow baseline: the largest I is run once
                run = timed(partial(straightforward_scores, model, dataset, args.batch_size, i), 1)
                naive[i] = tuple(map(min, naive[i], run))
    print(
        f"\n== Time: ResNet-18 (frozen) + Dropout/Linear head, {args.pool} images {args.image_size}px, "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads; wall / CPU seconds, best of {args.repeats} "
        "interleaved runs (the straightforward way at the largest I: one run) =="
    )
    print(f"one deterministic forward pass over the pool: {base[0]:6.2f} s wall, {base[1]:6.2f} s CPU")
    print(f"{'I':>4} {'alkit score_pool':>20} {'straightforward':>20} {'speed-up':>15} {'alkit / 1 pass':>15}")
    for i in args.iterations:
        verdict = "  (target <= 1.5)" if i == max(args.iterations) else ""
        print(
            f"{i:>4} {ours[i][0]:>9.2f} / {ours[i][1]:>6.2f} {naive[i][0]:>9.2f} / {naive[i][1]:>6.2f} "
            f"{naive[i][0] / ours[i][0]:>6.1f}x / {naive[i][1] / ours[i][1]:>5.1f}x "
            f"{ours[i][0] / base[0]:>6.2f}x / {ours[i][1] / base[1]:>4.2f}x{verdict}"
        )
    torch.manual_seed(1)
    a = alkit_scores(model, loader, 20)
    torch.manual_seed(1)
    b = straightforward_scores(model, dataset, args.batch_size, 20)
    agreement = np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
    print(f"rank correlation of the two BALD score vectors at I=20 (independent MC draws): {agreement:.2f}")


# ----------------------------------------------------------------------------------------------------------------
# memory (each measurement in a fresh process)
# ----------------------------------------------------------------------------------------------------------------
#: alkit as shipped, alkit with ``dropout_masks="torch"`` (nn.Dropout's own mask draws), BaaL's recipe.
METHODS = ("alkit", "alkit-torch-masks", "straightforward")


def memory_child(method: str, iterations: int, pool: int, batch_size: int) -> None:
    torch.manual_seed(0)
    model = TinyFeatureModel().eval()
    dataset = TensorDataset(torch.randn(pool, 32), torch.zeros(pool, dtype=torch.long))
    loader = DataLoader(dataset, batch_size=batch_size)
    alkit_scores(model, DataLoader(TensorDataset(torch.randn(64, 32), torch.zeros(64)), batch_size=32), 2)  # warm

    def run() -> np.ndarray:
        if method == "alkit":
            return alkit_scores(model, loader, iterations)
        if method == "alkit-torch-masks":  # where the time goes: the same scorer with nn.Dropout's own draws
            return alkit_scores(model, loader, iterations, masks="torch")
        return straightforward_scores(model, dataset, batch_size, iterations)

    with PeakRSS() as peak:
        scores = run()
    assert scores.shape == (pool,)
    # time: best of three further runs (a single run in a fresh process moved by +-20 % on a shared VM)
    seconds, cpu = timed(run, 3)
    print(json.dumps({"peak_increase_mib": peak.increase_mib, "seconds": seconds, "cpu_seconds": cpu}))


def memory_comparison(args: argparse.Namespace) -> None:
    print(
        f"\n== Peak memory: {args.memory_pool} samples x 32 features, Linear-ReLU backbone + Dropout/Linear head "
        f"(10 classes), BALD, batch {args.memory_batch_size}; peak RSS increase during a first scoring in a fresh "
        "process, then wall / CPU seconds, best of 3 more runs =="
    )
    print(f"{'method':<18} {'I':>3} {'peak increase':>14} {'wall / CPU time':>18}")
    results: dict[tuple[str, int], float] = {}
    times: dict[tuple[str, int], tuple[float, float]] = {}
    for method in METHODS:
        for iterations in args.iterations:
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--memory-child",
                method,
                "--iterations",
                str(iterations),
                "--memory-pool",
                str(args.memory_pool),
                "--memory-batch-size",
                str(args.memory_batch_size),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            measured = json.loads(output.strip().splitlines()[-1])
            results[(method, iterations)] = measured["peak_increase_mib"]
            times[(method, iterations)] = (measured["seconds"], measured["cpu_seconds"])
            print(
                f"{method:<18} {iterations:>3} {measured['peak_increase_mib']:>10.1f} MiB "
                f"{measured['seconds']:>7.1f} / {measured['cpu_seconds']:>6.1f} s"
            )
    low, high = min(args.iterations), max(args.iterations)
    for iterations in args.iterations:
        (wall, cpu), (wall_ref, cpu_ref) = times[("alkit", iterations)], times[("straightforward", iterations)]
        (masks_wall, masks_cpu) = times[("alkit-torch-masks", iterations)]
        print(
            f"I={iterations}: straightforward / alkit time = {wall_ref / wall:.2f}x wall, {cpu_ref / cpu:.2f}x CPU "
            f"(target >= 1); with nn.Dropout's own masks {wall_ref / masks_wall:.2f}x wall, "
            f"{cpu_ref / masks_cpu:.2f}x CPU"
        )
    for method in METHODS:
        print(
            f"{method}: peak at I={high} / peak at I={low} = "
            f"{results[(method, high)] / max(results[(method, low)], 1e-9):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=64, help="images in the timed pool")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iterations", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs for the fast paths")
    parser.add_argument("--memory-pool", type=int, default=200_000)
    parser.add_argument("--memory-batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _quiet_baal_logs()
    if args.memory_child:
        memory_child(args.memory_child, args.iterations[0], args.memory_pool, args.memory_batch_size)
        return
    if not args.skip_time:
        time_comparison(args)
    if not args.skip_memory:
        memory_comparison(args)


if __name__ == "__main__":
    main()

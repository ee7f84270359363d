"""Score an unlabelled pool with Monte-Carlo dropout and pick the samples to label.

The plain-Python procedure this module implements::

    scores = []
    for x in pool_loader:                                # in pool order, every sample, any batch size
        p = stack([softmax(model_with_dropout_on(x)) for _ in range(I)], -1)   # [B, C, I] probabilities
        scores.append(heuristic.get_uncertainties(p))   # per-sample heuristics: keep the scores only
    positions = select_query(concat(scores), query_size, heuristic)

and avoids four traps Lightning Flash's active learning (on BaaL) fell into:

1. *Identical MC samples.* Flash swapped ``Dropout`` for BaaL's consistent dropout, which reuses one mask in eval
   mode, so every "MC sample" was the same and BALD was exactly 0. Here the model is put in eval mode (batch norm
   uses its running statistics) and only the dropout modules are switched to training mode for the duration of the
   scoring (what BaaL's ``MCDropoutModule`` achieves by patching), so each pass and each replicated row draws a
   fresh mask; the original per-module modes are restored afterwards. A model without dropout and a heuristic
   that needs MC samples is a clear error.
2. *Half the pool scored.* Flash kept only the first item of each prediction batch and read its position in that
   shorter list as a pool index, labelling the wrong sample. Scores are computed for every sample of every batch and
   returned in pool order; the count is checked against the dataset length.
3. *Logits given to heuristics* (BaaL silently softmaxed them). The scorer softmaxes the model's logits itself;
   heuristics get probabilities.
4. *Cost linear in I.* When the model is a deterministic ``backbone`` followed by a ``head`` that holds all the
   dropout (the frozen-backbone fine-tuning case), the backbone runs once per batch and only the head runs on the
   features replicated ``I`` times in memory; otherwise ``I`` full passes are made. On a CPU the masks of plain
   ``nn.Dropout`` layers are drawn from random bytes (:mod:`alkit.active.dropout_masks`): for a cheap head, drawing
   masks was most of the scoring time.

Per-sample heuristics (BALD, entropy, ...) are streamed: memory holds one batch of ``[B, C, I]`` probabilities and
the ``N`` scores, never ``[N, C, I]``. Joint heuristics (BatchBALD) need the whole array and get it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from baal.active.heuristics import EPIG, AbstractHeuristic, BatchBALD
from baal.active.heuristics.stochastics import StochasticHeuristic
from torch import nn
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.data import DataLoader, SequentialSampler

from alkit.active.diversity import DiversityStrategy
from alkit.active.dropout_masks import fast_dropout_masks
from alkit.active.embeddings import EmbeddingTap, compute_embeddings
from alkit.active.heuristics import (
    SampledTargetEPIG,
    _base_heuristic,
    needs_model_outputs,
    requires_mc_samples,
    resolve_heuristic,
    scores_independently,
)

__all__ = ["PoolScores", "dropout_modules", "mc_dropout", "score_pool", "select_query"]

#: Feature elements (samples x MC iterations x features per sample) fed to the head at once on the feature-cache
#: path (16 MiB of float32): caps the working memory whatever I is. Counted in elements rather than rows so that a
#: cheap head on small features gets large chunks: per-chunk costs (dropout mask set-up, the heuristic's NumPy
#: reductions) made 2,048-row chunks 1.4x slower than BaaL's I full passes on a 64-feature head.
_MAX_REPLICATED_ELEMENTS = 2**22

#: Probabilities (float32 elements) a streamed heuristic scores per call: one call per batch cost a cheap head ~10 %
#: of its scoring time in the heuristic's per-call NumPy work; 1 MiB blocks stay cache-sized and bound the memory.
_SCORE_BLOCK_ELEMENTS = 2**18


class PoolScores(NamedTuple):
    """What :func:`score_pool` returns.

    Attributes:
        scores: ``[N]`` uncertainty per pool position, in the order of the pool dataloader.
        probabilities: ``[N, C, ..., I]`` MC probabilities when requested (or needed by a joint heuristic), else None.
        feature_cache: True when the backbone ran once per batch and only the head ran ``I`` times.
        embeddings: ``[N, d]`` float32 embeddings (see :mod:`alkit.active.embeddings`) when requested or needed by
            a diversity strategy, else None; taken in the same pass over the pool as the scores.
        mean_probabilities: ``[N, C, ...]`` probabilities averaged over the MC passes, for diversity strategies.
    """

    scores: np.ndarray
    probabilities: np.ndarray | None
    feature_cache: bool
    embeddings: np.ndarray | None = None
    mean_probabilities: np.ndarray | None = None


def dropout_modules(module: nn.Module) -> list[nn.Module]:
    """Dropout modules of ``module`` that actually drop something (``p > 0``), including BaaL's MC dropout layers."""
    return [m for m in module.modules() if isinstance(m, _DropoutNd) and m.p > 0]


@contextmanager
def mc_dropout(model: nn.Module, enabled: bool = True) -> Iterator[list[nn.Module]]:
    """Evaluation mode with the dropout modules active (a fresh mask on every call), restored on exit.

    Every module's own ``training`` flag is restored afterwards, so a backbone frozen in eval mode by a fine-tuning
    strategy stays as it was. With ``enabled=False`` the model is simply in evaluation mode (deterministic).
    """
    previous = [(m, m.training) for m in model.modules()]
    dropouts = dropout_modules(model)
    try:
        model.eval()
        if enabled:
            for module in dropouts:
                module.train()
        yield dropouts
    finally:
        for module, training in previous:
            module.training = training


def _batch_input(batch: Any) -> Any:
    """The model input of a pool batch: a tensor, the first element of a tuple/list, or ``batch["input"]``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0]
    if isinstance(batch, Mapping):
        for key in ("input", "inputs", "x", "image"):
            if key in batch:
                return batch[key]
    raise TypeError(
        "Cannot find the model input in a pool batch of type "
        f"{type(batch).__name__}: expected a tensor, a (input, target) tuple/list, or a dict with key 'input'."
    )


def _to_device(data: Any, device: torch.device) -> Any:
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, Mapping):
        return {k: _to_device(v, device) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(_to_device(v, device) for v in data)
    return data


def _batch_size_of(data: Any) -> int:
    if isinstance(data, torch.Tensor):
        return data.shape[0]
    if isinstance(data, Mapping):
        return _batch_size_of(next(iter(data.values())))
    if isinstance(data, (tuple, list)):
        return _batch_size_of(data[0])
    raise TypeError(f"Cannot read the batch size of a model input of type {type(data).__name__}.")


class _FeatureSplit(NamedTuple):
    features: Callable[[Any], torch.Tensor]
    head: Callable[[torch.Tensor], torch.Tensor]


def _find_feature_split(model: nn.Module) -> _FeatureSplit | None:
    """A ``backbone``/``head`` split whose backbone is deterministic and whose head holds all of the dropout.

    The features are ``model.forward_features(x)`` if the model defines it (e.g. to pool between backbone and
    head), else ``model.backbone(x)``; the head is ``model.forward_head(f)`` if defined, else ``model.head(f)``.
    The split is verified against ``model(x)`` on the first batch before it is trusted.
    """
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    if not isinstance(backbone, nn.Module) or not isinstance(head, nn.Module):
        return None
    head_modules = {id(m) for m in head.modules()}
    if dropout_modules(backbone) or any(id(m) not in head_modules for m in dropout_modules(model)):
        return None
    features = getattr(model, "forward_features", None)
    head_fn = getattr(model, "forward_head", None)
    return _FeatureSplit(features if callable(features) else backbone, head_fn if callable(head_fn) else head)


def _split_matches_model(model: nn.Module, split: _FeatureSplit, inputs: Any) -> bool:
    """With dropout off, does ``head(features(x))`` reproduce ``model(x)``? (A forward may do more in between.)"""
    with mc_dropout(model, enabled=False):
        full = model(inputs)
        parts = split.head(split.features(inputs))
    return (
        isinstance(full, torch.Tensor)
        and isinstance(parts, torch.Tensor)
        and full.shape == parts.shape
        and torch.allclose(full, parts, rtol=1e-4, atol=1e-5)
    )


def _check_logits(logits: Any, batch_size: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.ndim < 2 or logits.shape[0] != batch_size:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            "Pool scoring expects the model's forward to return class logits of shape [batch, num_classes, ...]; "
            f"got {shape} for a batch of {batch_size}."
        )
    return logits


def _to_probabilities(outputs: torch.Tensor, model_outputs: str) -> torch.Tensor:
    outputs = outputs.float()
    if model_outputs == "logits":
        return torch.softmax(outputs, dim=1)
    sums = outputs.sum(dim=1)
    if outputs.min() < 0 or outputs.max() > 1 or not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise ValueError(
            "`model_outputs='probabilities'` but the model's outputs are not probabilities over dim 1 "
            "(values outside [0, 1] or not summing to 1). Use `model_outputs='logits'`."
        )
    return outputs


def _mc_probabilities(
    model: nn.Module,
    inputs: Any,
    iterations: int,
    split: _FeatureSplit | None,
    model_outputs: str,
    features: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """``[b, C, ..., I]`` probabilities for consecutive chunks of one batch; the caller set up :func:`mc_dropout`.

    On the feature-cache path the backbone runs once for the whole batch; the head then runs on chunks of samples
    whose features are replicated ``I`` times, at most ``_MAX_REPLICATED_ELEMENTS`` elements at a time, so the working
    memory is capped whatever ``I`` is. Otherwise the whole batch goes through the model ``I`` times. ``features``:
    the backbone's output for ``inputs`` when the caller already has it.
    """
    batch_size = _batch_size_of(inputs)
    # The softmax runs once on the [b, C, ..., I] array, not on each [b, C] pass: over the class dimension with the
    # I passes innermost it is several times faster on CPU than over a short last dimension (C = 10: 7x), and for a
    # cheap head it was the largest cost after dropout.
    if split is None:
        passes = [_check_logits(model(inputs), batch_size) for _ in range(iterations)]
        yield _to_probabilities(torch.stack(passes, dim=-1), model_outputs)  # [B, C, ..., I]
        return
    features = split.features(inputs) if features is None else features
    per_sample = features[0].numel() if batch_size else 1
    per_chunk = max(1, _MAX_REPLICATED_ELEMENTS // (iterations * max(1, per_sample)))
    for start in range(0, batch_size, per_chunk):
        chunk = features[start : start + per_chunk]
        rows = chunk.shape[0]
        replicated = chunk.repeat(iterations, *([1] * (chunk.ndim - 1)))  # [I * b, ...], iteration-major
        outputs = _check_logits(split.head(replicated), iterations * rows)
        outputs = outputs.reshape(iterations, rows, *outputs.shape[1:]).movedim(0, -1)  # [b, C, ..., I]
        yield _to_probabilities(outputs, model_outputs)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_pool_loader(dataloader: Any) -> int | None:
    """Refuse loaders that would lose samples or scramble the order; return the expected number of samples."""
    if isinstance(dataloader, DataLoader):
        sampler = getattr(dataloader.batch_sampler, "sampler", dataloader.sampler)
        if not isinstance(sampler, SequentialSampler):
            raise ValueError(
                "The pool dataloader must iterate in dataset order (no shuffling, no custom sampler): scores are "
                "returned by pool position. Build it with `shuffle=False`."
            )
        if dataloader.drop_last:
            raise ValueError("The pool dataloader has `drop_last=True`: every pool sample must be scored.")
    dataset = getattr(dataloader, "dataset", None)
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


def score_pool(
    model: nn.Module,
    dataloader: DataLoader | Sequence[Any],
    heuristic: str | AbstractHeuristic = "bald",
    mc_iterations: int = 2,
    device: torch.device | str | None = None,
    return_probabilities: bool = False,
    model_outputs: Literal["logits", "probabilities"] = "logits",
    feature_cache: bool = True,
    return_embeddings: bool = False,
    dropout_masks: Literal["fast", "torch"] = "fast",
) -> PoolScores:
    """Uncertainty of every pool sample under ``heuristic``, from ``mc_iterations`` MC-dropout passes.

    Args:
        model: the classifier; ``model(x)`` returns logits ``[B, C, ...]`` (see ``model_outputs``).
        dataloader: the pool in a fixed order with deterministic (evaluation) transforms; batches are tensors,
            ``(input, target)`` tuples or dicts with an ``"input"`` key.
        heuristic: a BaaL heuristic or its name (see :func:`alkit.active.heuristics.resolve_heuristic`).
        mc_iterations: stochastic forward passes per sample (BaaL's ``iterations``). A model without dropout is
            evaluated once: its passes would all be identical.
        device: where to run; defaults to the model's device.
        return_probabilities: also return the ``[N, C, ..., I]`` probabilities (memory grows with ``N * I``).
        model_outputs: ``"logits"`` (softmaxed here) or ``"probabilities"`` (checked, then used as they are).
        feature_cache: allow the backbone-once / head-``I``-times path when the model qualifies.
        return_embeddings: also return the ``[N, d]`` embeddings (always done for a diversity strategy, with the
            mean probabilities). They come from the same pass: on the feature-cache path the head runs once more,
            dropout off, on the features already computed; a model without dropout gives them in its single pass;
            otherwise (full MC passes) one more deterministic pass is made. ``model.embed(x)``, when defined, is
            called as it is.
        dropout_masks: ``"fast"`` draws the MC-dropout masks of plain ``nn.Dropout`` layers on a CPU from fewer
            random bits (the same Bernoulli(p) distribution, 2-4x cheaper; see :mod:`alkit.active.dropout_masks`);
            ``"torch"`` keeps ``nn.Dropout``'s own draws (the random stream of earlier alkit versions and of BaaL).

    Returns:
        :class:`PoolScores` with ``scores[k]`` the uncertainty of the ``k``-th sample the dataloader yields.

    Raises:
        ValueError: ``mc_iterations < 1``; fewer than 2 iterations or a model without dropout for a heuristic
            that needs MC samples; a shuffling or ``drop_last`` loader; outputs that are not class scores.
    """
    if model_outputs not in ("logits", "probabilities"):
        raise ValueError(f"`model_outputs` must be 'logits' or 'probabilities', got {model_outputs!r}.")
    if dropout_masks not in ("fast", "torch"):
        raise ValueError(f"`dropout_masks` must be 'fast' or 'torch', got {dropout_masks!r}.")
    if isinstance(mc_iterations, bool) or not isinstance(mc_iterations, (int, np.integer)) or mc_iterations < 1:
        raise ValueError(f"`mc_iterations` must be an integer >= 1, got {mc_iterations!r}.")
    heuristic = resolve_heuristic(heuristic)
    if isinstance(_base_heuristic(heuristic), EPIG) and not isinstance(heuristic, SampledTargetEPIG):
        raise ValueError(
            "BaaL's EPIG needs predictions on target inputs, which pool scoring does not have; use heuristic='epig' "
            "(alkit.active.heuristics.SampledTargetEPIG: the targets are a random sample of the pool)."
        )
    expected = _check_pool_loader(dataloader)
    strategy = heuristic if isinstance(heuristic, DiversityStrategy) else None
    tap = EmbeddingTap(model) if (return_embeddings or strategy is not None) else None  # refused before any work

    if not needs_model_outputs(heuristic):  # Random: the scores do not depend on the model
        if expected is None:
            expected = sum(_batch_size_of(_batch_input(b)) for b in dataloader)
        random_scores = _base_heuristic(heuristic).get_uncertainties(np.zeros((expected, 1)))
        embedded = compute_embeddings(model, dataloader, device) if tap is not None else None
        return PoolScores(random_scores, None, False, embedded)

    needs_mc = requires_mc_samples(heuristic)
    has_dropout = bool(dropout_modules(model))
    name = type(_base_heuristic(heuristic)).__name__
    if needs_mc and not has_dropout:
        raise ValueError(
            f"The heuristic {name} needs Monte-Carlo dropout samples, but the model "
            f"{type(model).__name__} has no dropout layer (torch.nn.Dropout* with p > 0): every pass would be "
            "identical and every score equal. Add dropout to the model (e.g. to its head) or use a single-pass "
            "heuristic: 'entropy', 'margin', 'certainty' or 'random'."
        )
    if needs_mc and mc_iterations < 2:
        raise ValueError(
            f"The heuristic {name} compares MC samples: `mc_iterations` must be >= 2, got {mc_iterations}."
        )
    iterations = int(mc_iterations) if has_dropout else 1

    streaming = scores_independently(heuristic) and not return_probabilities
    scorer = strategy.uncertainty if strategy is not None else _base_heuristic(heuristic)
    device = torch.device(device) if device is not None else _model_device(model)
    split = _find_feature_split(model) if (feature_cache and has_dropout and iterations > 1) else None
    split_checked = split is None
    # served for the whole call: a layer draws its fast masks only while `mc_dropout` has it in training mode
    masks = fast_dropout_masks(dropout_modules(model)) if dropout_masks == "fast" else nullcontext()

    scores: list[np.ndarray] = []
    pending: list[np.ndarray] = []  # streamed chunks not scored yet (see `_SCORE_BLOCK_ELEMENTS`)
    pending_elements = 0
    probabilities: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    means: list[np.ndarray] = []
    seen = 0
    # inference mode (as Lightning's own predict loop): no autograd bookkeeping at all, which also makes the loader's
    # per-sample indexing of tensor datasets ~15 % cheaper than under `no_grad`; the results leave as NumPy arrays
    with torch.inference_mode(), masks:
        for batch in dataloader:
            inputs = _to_device(_batch_input(batch), device)
            if not split_checked:
                split_checked = True
                probe = inputs[:2] if isinstance(inputs, torch.Tensor) else inputs  # eval mode: rows independent
                if not _split_matches_model(model, split, probe):
                    warnings.warn(
                        f"{type(model).__name__} has `backbone` and `head`, but `head(backbone(x))` does not "
                        "reproduce `model(x)`; scoring with full forward passes. Define `forward_features(x)` and "
                        "`forward_head(features)` on the model to let alkit run the backbone once per batch.",
                        UserWarning,
                        stacklevel=2,
                    )
                    split = None
            # a deterministic model's single pass gives the embeddings too (the hook reads the last layer's input)
            in_pass = tap is not None and tap.embed is None and split is None and not has_dropout
            with mc_dropout(model, enabled=has_dropout):
                features = split.features(inputs) if split is not None else None
                with tap.capture() if in_pass else nullcontext([]) as captured:
                    for chunk in _mc_probabilities(model, inputs, iterations, split, model_outputs, features):
                        # float32, as the model computed them (and as BaaL's own predictions are): a float64 copy
                        # doubled the heuristic's NumPy work, the largest serial cost after dropout on a cheap head
                        array = chunk.cpu().numpy()
                        seen += array.shape[0]
                        if strategy is not None:
                            means.append(array.mean(axis=-1))
                        if streaming:
                            pending.append(array)
                            pending_elements += array.size
                            if pending_elements >= _SCORE_BLOCK_ELEMENTS:
                                scores.append(_score_block(scorer, pending))
                                pending_elements = 0
                        else:
                            probabilities.append(array)
            if tap is not None:
                batch_size = _batch_size_of(inputs)
                if in_pass:
                    embedded = tap.from_capture(captured, batch_size)
                else:
                    embedded = _deterministic_embeddings(model, tap, inputs, batch_size, split, features)
                embeddings.append(embedded.cpu().numpy())

    if expected is not None and seen != expected:
        raise RuntimeError(f"The pool dataloader yielded {seen} samples but its dataset has {expected}.")
    all_probabilities = np.concatenate(probabilities) if probabilities else None
    if pending:
        scores.append(_score_block(scorer, pending))
    if streaming:
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
    elif all_probabilities is None:
        all_scores = np.zeros(0)
    else:
        all_scores = np.asarray(scorer.get_uncertainties(all_probabilities), dtype=np.float64).reshape(-1)
    return PoolScores(
        all_scores,
        all_probabilities,
        split is not None,
        np.concatenate(embeddings) if embeddings else (np.zeros((0, 0), np.float32) if tap is not None else None),
        np.concatenate(means) if means else None,
    )


def _score_block(scorer: AbstractHeuristic, chunks: list[np.ndarray]) -> np.ndarray:
    """Score the streamed chunks in one call (the heuristic's NumPy work per call is what a cheap head pays for)."""
    block = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    chunks.clear()
    return np.asarray(scorer.get_uncertainties(block), dtype=np.float64).reshape(-1)


def _deterministic_embeddings(
    model: nn.Module,
    tap: EmbeddingTap,
    inputs: Any,
    batch_size: int,
    split: _FeatureSplit | None,
    features: torch.Tensor | None,
) -> torch.Tensor:
    """Embeddings of one batch, dropout off; on the feature-cache path only the head runs again."""
    with mc_dropout(model, enabled=False):
        if split is not None and features is not None and tap.embed is None:
            with tap.capture() as captured:
                split.head(features)
            if len(captured) == 1:  # the last Linear is in the head: no second backbone pass
                return tap.from_capture(captured, batch_size)
        return tap.forward(inputs, batch_size)


def select_query(
    scores: np.ndarray,
    query_size: int,
    heuristic: str | AbstractHeuristic,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Positions (into ``scores``) of the ``query_size`` samples to label, most informative first.

    Deterministic heuristics use BaaL's own ranking (``reorder_indices``: descending score when the heuristic is
    ``reverse``, ascending otherwise, e.g. Margin and Certainty); BatchBALD keeps its greedy order. Stochastic ones
    (PowerBALD, ...) sample ``query_size`` distinct positions from their distribution over scores, with ``rng`` so
    runs are reproducible.
    Returns ``min(query_size, len(scores))`` distinct positions.
    """
    if isinstance(query_size, bool) or not isinstance(query_size, (int, np.integer)) or query_size < 1:
        raise ValueError(f"`query_size` must be an integer >= 1, got {query_size!r}.")
    heuristic = resolve_heuristic(heuristic, query_size=int(query_size))
    if isinstance(heuristic, DiversityStrategy):
        raise ValueError(
            f"{type(heuristic).__name__} selects a set from embeddings, not by ranking scores: use "
            "`ActiveLearningDataModule.select/query(scores, embeddings=..., labelled_embeddings=...)` or "
            "`strategy.select(query_size, pool_embeddings, labelled_embeddings, scores, probabilities)`."
        )
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    count = min(int(query_size), scores.shape[0])
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if isinstance(heuristic, StochasticHeuristic):
        rng = rng if rng is not None else np.random.default_rng()
        return _sample_stochastic(heuristic, np.clip(np.nan_to_num(scores, nan=0.0), 0.0, None), count, rng)
    if isinstance(heuristic, BatchBALD):
        return _batch_bald_order(scores)[:count].copy()
    ranks = np.asarray(heuristic.reorder_indices(scores), dtype=np.int64)
    return ranks[:count].copy()


class _GivenScores(AbstractHeuristic):
    """A BaaL heuristic whose uncertainty of an array is the array itself.

    A stochastic heuristic (PowerBALD, ...) samples from the uncertainties of its base heuristic. alkit has those
    scores already (computed once over the pool); with this base the heuristic's own public ``get_ranks`` samples
    from them, so its distribution (temperature, ranks, ...) stays BaaL's.
    """

    def __init__(self) -> None:
        super().__init__(reverse=True)

    def get_uncertainties(self, predictions: Any) -> np.ndarray:
        return np.asarray(predictions, dtype=np.float64)


def _sample_stochastic(
    heuristic: StochasticHeuristic, scores: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` distinct positions drawn by ``heuristic`` from ``scores``, reproducibly from ``rng``."""
    # the same class and settings (`temperature`, ...: its constructor's arguments, public attributes) on the scores
    settings = {}
    for name, parameter in inspect.signature(type(heuristic)).parameters.items():
        if name in ("base_heuristic", "query_size") or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            continue
        if hasattr(heuristic, name):
            settings[name] = getattr(heuristic, name)
    sampler = type(heuristic)(base_heuristic=_GivenScores(), query_size=count, **settings)
    # `get_ranks` gives BaaL's normalised distribution (uniform when fewer positive values than picks) beside its own
    # draw, made with NumPy's global generator: that draw is discarded and the global state left as it was. The
    # picks come from `rng`, so a run (and one resumed from a checkpoint) draws the same samples for the same seed.
    saved = np.random.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BaaL's "not enough values, return random": the documented fallback
            _, distribution = sampler.get_ranks(scores)
    finally:
        np.random.set_state(saved)
    distribution = np.asarray(distribution, dtype=np.float64)
    positions = rng.choice(scores.shape[0], size=count, replace=False, p=distribution / distribution.sum())
    return np.asarray(positions, dtype=np.int64)


def _batch_bald_order(scores: np.ndarray) -> np.ndarray:
    """BaaL's BatchBALD greedy order, recovered from its scores.

    BaaL's ``BatchBALD.compute_score`` picks the best BALD sample first, then greedily adds ``num_samples`` more
    (one more than asked), scoring each pick with the joint mutual information of the batch so far, a quantity
    that grows along the greedy order. Ranking those scores in descending order, as BaaL's ``get_ranks`` does,
    puts the *last* picks first and drops the first, most informative one. The greedy order is the ascending order
    of the non-zero scores; samples never picked (score 0) follow in index order.
    """
    picked = np.flatnonzero(scores > 0)
    picked = picked[np.argsort(scores[picked], kind="stable")]
    rest = np.flatnonzero(~(scores > 0))
    return np.concatenate([picked, rest]).astype(np.int64)

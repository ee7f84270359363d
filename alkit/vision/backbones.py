"""Registry of torchvision feature extractors: name -> constructor, feature size, and how to load weights.

A backbone is the torchvision model with its classification layer replaced by ``nn.Identity``, so it maps images to
pooled features of ``num_features`` and its state-dict keys are torchvision's own (``layer1.0.conv1.weight``,
``features.0.0.weight``, ...). That is what lets a plain torchvision checkpoint, or a features-only file such as the
shared MobileNetV2 weights, load without renaming.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models

__all__ = [
    "BackboneSpec",
    "PretrainedWeightsWarning",
    "available_backbones",
    "backbone_spec",
    "build_backbone",
    "load_backbone_state_dict",
    "read_state_dict",
    "register_backbone",
]


class PretrainedWeightsWarning(UserWarning):
    """Pretrained weights were requested but could not be had; the backbone is randomly initialised."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    Attributes:
        constructor: torchvision-style builder accepting ``weights=`` (``None`` or ``"DEFAULT"``).
        num_features: size of the pooled feature vector the head receives.
        classifier_attribute: the model's final layer (``"fc"``, ``"classifier"``), replaced by ``nn.Identity``;
            keys under it are dropped when loading a full-model state dict.
    """

    constructor: Callable[..., nn.Module]
    num_features: int
    classifier_attribute: str


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(name: str, constructor: Callable[..., nn.Module], num_features: int, classifier_attribute: str):
    """Make ``ImageClassifier(backbone=name)`` available (overwrites an existing entry of that name)."""
    if not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
    _REGISTRY[name] = BackboneSpec(constructor, num_features, classifier_attribute)


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def backbone_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        raise ValueError(f"backbone={name!r} is not registered; available backbones: {available_backbones()}")
    return _REGISTRY[name]


for _name, _features in [
    ("resnet18", 512),
    ("resnet34", 512),
    ("resnet50", 2048),
    ("resnet101", 2048),
    ("resnet152", 2048),
    ("resnext50_32x4d", 2048),
    ("resnext101_32x8d", 2048),
    ("wide_resnet50_2", 2048),
    ("wide_resnet101_2", 2048),
]:
    register_backbone(_name, getattr(models, _name), _features, "fc")
register_backbone("mobilenet_v2", models.mobilenet_v2, 1280, "classifier")
register_backbone("mobilenet_v3_small", models.mobilenet_v3_small, 576, "classifier")
register_backbone("mobilenet_v3_large", models.mobilenet_v3_large, 960, "classifier")


def _strip_classifier(model: nn.Module, spec: BackboneSpec) -> nn.Module:
    setattr(model, spec.classifier_attribute, nn.Identity())
    return model


def read_state_dict(path: str | os.PathLike, argument: str = "pretrained") -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a plain state dict, or the ``state_dict`` entry of a Lightning checkpoint."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{argument}={os.fspath(path)!r}: no such weights file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors have many types; the message names the file either way
        raise ValueError(
            f"{argument}={os.fspath(path)!r} could not be read as a weights-only state dict: {error}"
        ) from error
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{argument}={os.fspath(path)!r} does not hold a state dict (name -> tensor)")
    return dict(loaded)


def load_backbone_state_dict(
    backbone: nn.Module, state_dict: Mapping[str, torch.Tensor], classifier_attribute: str, source: str
) -> None:
    """Load torchvision-layout weights into ``backbone``; every backbone tensor must be provided, none left over.

    Keys of the original classifier (``fc.*`` / ``classifier.*``) are ignored, so both a full torchvision model
    state dict and a features-only one are accepted. Anything else that does not fit is an error naming ``source``:
    silently keeping a random layer would make "pretrained" results meaningless.
    """
    prefix = classifier_attribute + "."
    weights = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    expected = set(backbone.state_dict())
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match the backbone: {len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}"
        )
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source} does not match the backbone: {error}") from error


def build_backbone(
    name: str, pretrained: bool | str | os.PathLike = True, strict_pretrained: bool = False
) -> tuple[nn.Module, int]:
    """Build backbone ``name`` and return ``(module, num_features)``.

    ``pretrained=True`` asks torchvision for its default ImageNet weights (from the torch hub cache, else the
    network). Without network or cache this warns with :class:`PretrainedWeightsWarning` and keeps a random
    initialisation, or raises when ``strict_pretrained``. A path loads that file instead (always strict): a
    torchvision state dict (full model or backbone only) or an alkit ``ImageClassifier`` state dict / checkpoint, of
    which only the ``backbone.*`` tensors are used.
    """
    spec = backbone_spec(name)
    if pretrained is True:
        try:
            model = spec.constructor(weights="DEFAULT")
        except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError; bad cache -> RuntimeError
            message = (
                f"could not get torchvision's pretrained weights for backbone={name!r} ({type(error).__name__}: "
                f"{error}); no network and no cached copy in {torch.hub.get_dir()}/checkpoints?"
            )
            if strict_pretrained:
                raise RuntimeError(
                    message + " Pass pretrained=<path to a state dict> or strict_pretrained=False."
                ) from error
            warnings.warn(
                message + " Using a RANDOMLY initialised backbone; pass pretrained=<path to a state dict> to load "
                "local weights, or pretrained=False to silence this warning.",
                PretrainedWeightsWarning,
                stacklevel=3,
            )
            model = spec.constructor(weights=None)
        return _strip_classifier(model, spec), spec.num_features
    model = _strip_classifier(spec.constructor(weights=None), spec)
    if pretrained is False or pretrained is None:
        return model, spec.num_features
    if isinstance(pretrained, (str, os.PathLike)):
        state_dict = read_state_dict(pretrained)
        if any(key.startswith("backbone.") for key in state_dict):  # an alkit ImageClassifier: take its backbone
            state_dict = {k[len("backbone.") :]: v for k, v in state_dict.items() if k.startswith("backbone.")}
        load_backbone_state_dict(model, state_dict, spec.classifier_attribute, f"pretrained={os.fspath(pretrained)!r}")
        return model, spec.num_features
    raise ValueError(f"pretrained must be True, False or a path to a state dict file, got {pretrained!r}")
